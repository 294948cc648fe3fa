//! Maintenance: trimming history by age (heads kept), and expiring idempotency keys and
//! sessions.

use super::{AppendReply, keyed, queue_append, queue_session, run_writer};
use crate::error::now_ms;
use crate::writer::maintenance;
use crate::{reads, schema};
use std::sync::mpsc;
use switchboard_conformance::RecordingSink;
use switchboard_proto::Conv;

#[test]
fn maintenance_trims_by_age_and_expires_keys_and_sessions() {
    let dir = tempfile::tempdir().expect("tempdir");
    let conv = Conv::room("old");
    let sink = RecordingSink::new();
    let (jobs, rx) = mpsc::channel();
    let first = queue_append(&jobs, keyed(&conv, Some("c1")));
    for _ in 0..2 {
        queue_append(&jobs, keyed(&conv, None));
    }
    let expired = queue_session(&jobs, [2; 32], 1);
    let live = queue_session(&jobs, [3; 32], u64::MAX / 2);
    run_writer(dir.path(), jobs, rx, &sink);
    let first = first.blocking_recv().expect("answered").expect("append");
    expired.blocking_recv().expect("answered").expect("session");
    live.blocking_recv().expect("answered").expect("session");

    let (conn, _) = schema::open_writer(dir.path()).expect("open");
    let soon = now_ms() + 10_000;
    assert!(!maintenance(&conn, 1_000, soon, i64::MAX).expect("maintenance"));
    assert_eq!(
        reads::position(&conn, &crate::tail::Tail::default(), &conv).expect("position"),
        (3, None),
        "all trimmed; head kept"
    );
    assert!(
        reads::session(&conn, &[2; 32]).expect("session").is_none(),
        "expired session purged"
    );
    assert!(reads::session(&conn, &[3; 32]).expect("session").is_some());

    // Keys outlive the history they point to...
    let (jobs, rx) = mpsc::channel();
    let retry = queue_append(&jobs, keyed(&conv, Some("c1")));
    let next = queue_append(&jobs, keyed(&conv, None));
    drop(conn);
    run_writer(dir.path(), jobs, rx, &sink);
    let retry = retry.blocking_recv().expect("answered").expect("retry");
    assert_eq!(retry.receipt, first.receipt);
    assert_eq!(
        next.blocking_recv()
            .expect("answered")
            .expect("append")
            .receipt
            .seq,
        4
    );

    // ...for a week at least.
    let (conn, _) = schema::open_writer(dir.path()).expect("open");
    let later = now_ms() + crate::writer::IDEMPOTENCY_MIN_RETENTION_MS + 10_000;
    maintenance(&conn, 1_000, later, i64::MAX).expect("maintenance");
    let keys: i64 = conn
        .query_row("SELECT count(*) FROM idempotency", [], |r| r.get(0))
        .expect("count");
    assert_eq!(keys, 0, "old idempotency keys expire");
}

/// Age trimming deletes only what expired, and a conversation keeps its head when its newest
/// messages go (heads are not rewritten by appends; the trim raises them first).
#[test]
fn age_trimming_deletes_a_prefix_and_keeps_heads() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (a, b) = (Conv::room("a"), Conv::room("b"));
    let sink = RecordingSink::new();
    // Two commits, so that `b`'s row in `convs` says 1 while its head is 2.
    let mut old_ts = 0;
    for convs in [vec![&a, &a, &b], vec![&b]] {
        let (jobs, rx) = mpsc::channel();
        let old: Vec<_> = convs
            .into_iter()
            .map(|c| queue_append(&jobs, keyed(c, None)))
            .collect();
        run_writer(dir.path(), jobs, rx, &sink);
        for r in old {
            let ts = r
                .blocking_recv()
                .expect("answered")
                .expect("append")
                .receipt
                .ts;
            old_ts = old_ts.max(ts);
        }
    }
    // Later messages get later timestamps (they never go backwards, and the clock moves on).
    std::thread::sleep(std::time::Duration::from_millis(5));
    let (jobs, rx) = mpsc::channel();
    let new = queue_append(&jobs, keyed(&a, None));
    run_writer(dir.path(), jobs, rx, &sink);
    let new = new
        .blocking_recv()
        .expect("answered")
        .expect("append")
        .receipt;
    assert!(new.ts > old_ts);

    let (conn, _) = schema::open_writer(dir.path()).expect("open");
    assert!(!maintenance(&conn, 1_000, old_ts + 1 + 1_000, i64::MAX).expect("maintenance"));
    assert_eq!(
        reads::position(&conn, &crate::tail::Tail::default(), &a).expect("position"),
        (3, Some(3))
    );
    assert_eq!(
        reads::position(&conn, &crate::tail::Tail::default(), &b).expect("position"),
        (2, None),
        "the head outlives the conversation's last message"
    );
    drop(conn);

    let (jobs, rx) = mpsc::channel();
    let (next_a, next_b) = (
        queue_append(&jobs, keyed(&a, None)),
        queue_append(&jobs, keyed(&b, None)),
    );
    run_writer(dir.path(), jobs, rx, &sink);
    let seq = |r: AppendReply| {
        r.blocking_recv()
            .expect("answered")
            .expect("append")
            .receipt
            .seq
    };
    assert_eq!(
        (seq(next_a), seq(next_b)),
        (4, 3),
        "seqs go on after the trim"
    );
}

/// A key on a stored message answers for its retention, then no longer: the same key is then
/// a new message, and the newer one answers.
#[test]
fn a_key_stops_answering_after_its_retention() {
    let dir = tempfile::tempdir().expect("tempdir");
    let conv = Conv::room("keys");
    let sink = RecordingSink::new();
    let append = |keys: &[&str]| {
        let (jobs, rx) = mpsc::channel();
        let replies: Vec<_> = keys
            .iter()
            .map(|k| queue_append(&jobs, keyed(&conv, Some(k))))
            .collect();
        run_writer(dir.path(), jobs, rx, &sink);
        replies
            .into_iter()
            .map(|r| r.blocking_recv().expect("answered").expect("append"))
            .collect::<Vec<_>>()
    };
    let first = append(&["old", "new"]);
    // Make `old` older than the retention.
    let (conn, _) = schema::open_writer(dir.path()).expect("open");
    conn.execute(
        "UPDATE messages SET ts = ts - ?1 WHERE client_msg_id = 'old'",
        [crate::writer::IDEMPOTENCY_MIN_RETENTION_MS as i64 + 1_000],
    )
    .expect("age a key");
    drop(conn);
    let retries = append(&["new", "old", "old"]);
    assert_eq!(retries[0].receipt, first[1].receipt, "a live key answers");
    assert!(retries[0].stored.is_empty());
    assert_eq!(
        (retries[1].receipt.seq, retries[1].stored.len()),
        (3, 1),
        "an expired key is a new message"
    );
    assert_eq!(
        retries[2].receipt, retries[1].receipt,
        "and the new message answers for it"
    );
}

/// Keys moved to the `idempotency` table (their message was trimmed) expire oldest first, and
/// a live key there stops the prefix: a newer key still answers with its receipt.
#[test]
fn spilled_keys_expire_as_a_prefix() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (conn, _) = schema::open_writer(dir.path()).expect("open");
    let now = now_ms();
    let day = 24 * 3600 * 1000;
    // By `id`: expired, live, expired (moved later, from an older message).
    for (key, age) in [("a", 8 * day), ("b", day), ("c", 9 * day)] {
        conn.execute(
            "INSERT INTO idempotency (owner, client_msg_id, conv, seq, message_id, ts)
             VALUES ('u_1', ?1, 'room:k', 1, 'm_1', ?2)",
            rusqlite::params![key, (now - age) as i64],
        )
        .expect("a key");
    }
    drop(conn);
    let (conn, _) = schema::open_writer(dir.path()).expect("open");
    assert!(!maintenance(&conn, 0, now, i64::MAX).expect("maintenance"));
    let keys: Vec<String> = conn
        .prepare("SELECT client_msg_id FROM idempotency ORDER BY id")
        .and_then(|mut s| s.query_map([], |r| r.get(0))?.collect())
        .expect("keys");
    assert_eq!(keys, vec!["b".to_owned(), "c".to_owned()]);
    assert!(!maintenance(&conn, 0, now + 7 * day, i64::MAX).expect("maintenance"));
    let left: i64 = conn
        .query_row("SELECT count(*) FROM idempotency", [], |r| r.get(0))
        .expect("count");
    assert_eq!(left, 0, "once the live key expired, the rest go too");
}
