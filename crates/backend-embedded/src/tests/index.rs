//! The deferred stream index (schema version 5): reads that find entries in the tail, in
//! `entries` or in both; the count limit, at once for reads and at the step for storage; a DM
//! row kept while its other stream's step is still to come; and what opening the database
//! writes after a crash.

use super::{AppendReply, LIMITS, queue_append};
use crate::tail::{PARTITIONS, Tail, partition};
use crate::writer::{Writer, WriterLimits};
use crate::{EmbeddedBackend, EmbeddedConfig, reads, schema};
use rusqlite::Connection;
use std::sync::atomic::AtomicBool;
use std::sync::{Arc, mpsc};
use std::time::Duration;
use switchboard_conformance::RecordingSink;
use switchboard_core::backend::{AppendRequest, Backend, HistoryQuery};
use switchboard_proto::{Conv, MessageBody};

/// Long enough that no step runs during a test: entries stay in the tail until close.
const NO_STEP: Duration = Duration::from_secs(3600);

fn msg(conv: &Conv, from: &str, copy: Option<&Conv>) -> AppendRequest {
    AppendRequest {
        conv: conv.clone(),
        from: Some(from.into()),
        to: copy.map(|_| conv.id().to_owned()),
        body: MessageBody::from_json(r#"{"t":1}"#.into()).expect("json"),
        client_msg_id: None,
        idempotency_owner: from.into(),
        copy_to: copy.cloned(),
    }
}

fn open(dir: &std::path::Path, limit: u64) -> (Arc<EmbeddedBackend>, Backend) {
    open_with(dir, limit, None)
}

fn open_with(
    dir: &std::path::Path,
    limit: u64,
    metrics: Option<switchboard_core::metrics::CommitMetrics>,
) -> (Arc<EmbeddedBackend>, Backend) {
    let mut config = EmbeddedConfig::new(dir);
    config.history_max_messages = limit;
    config.index_cycle = NO_STEP;
    config.commit_metrics = metrics;
    let b = EmbeddedBackend::open(config, RecordingSink::new().as_sink()).expect("open");
    let backend = b.backend();
    (b, backend)
}

fn q(after: Option<u64>, before: Option<u64>, limit: u32) -> HistoryQuery {
    HistoryQuery {
        after,
        before,
        limit,
    }
}

async fn seqs(b: &Backend, conv: &Conv, query: HistoryQuery) -> Vec<u64> {
    let page = b.broker.history(conv, query).await.expect("history");
    page.iter().map(|m| m.seq).collect()
}

fn count(dir: &std::path::Path, sql: &str) -> i64 {
    let conn = Connection::open(dir.join(schema::DB_FILE)).expect("db");
    conn.query_row(sql, [], |r| r.get(0)).expect("count")
}

fn range(a: u64, b: u64) -> Vec<u64> {
    (a..=b).collect()
}

#[tokio::test]
async fn reads_find_what_no_step_has_written_and_close_writes_it() {
    let dir = tempfile::tempdir().expect("tempdir");
    let node_metrics = switchboard_core::metrics::Metrics::new();
    let (embedded, b) = open_with(dir.path(), 0, Some(node_metrics.commits.clone()));
    let room = Conv::room("r");
    let (u1, u2) = (Conv::user("u_1"), Conv::user("u_2"));
    for _ in 0..30 {
        b.broker
            .append(msg(&room, "u_1", None))
            .await
            .expect("append");
    }
    for _ in 0..10 {
        b.broker
            .append(msg(&u2, "u_1", Some(&u1)))
            .await
            .expect("dm");
    }
    assert_eq!(count(dir.path(), "SELECT count(*) FROM messages"), 40);
    assert_eq!(
        count(dir.path(), "SELECT count(*) FROM entries"),
        0,
        "no step ran: every entry is in the tail"
    );
    assert_eq!(seqs(&b, &room, q(None, None, 10)).await, range(21, 30));
    assert_eq!(seqs(&b, &room, q(Some(5), None, 3)).await, range(6, 8));
    assert_eq!(seqs(&b, &room, q(None, Some(10), 3)).await, range(7, 9));
    assert_eq!(seqs(&b, &room, q(Some(5), Some(9), 50)).await, range(6, 8));
    assert_eq!(seqs(&b, &u2, q(Some(0), None, 50)).await, range(1, 10));
    assert_eq!(seqs(&b, &u1, q(None, None, 50)).await, range(1, 10));
    let p = b.broker.position(&room).await.expect("position");
    assert_eq!((p.head_seq, p.oldest_seq), (30, 1));
    // Seqs go on from the tail's heads.
    let next = b
        .broker
        .append(msg(&u1, "u_2", Some(&u2)))
        .await
        .expect("dm");
    assert_eq!(next.receipt.seq, 11);

    b.lifecycle.close().await;
    drop(embedded);
    assert_eq!(count(dir.path(), "SELECT count(*) FROM entries"), 30 + 22);
    let rendered = node_metrics.render();
    let metric = |name: &str| -> f64 {
        rendered
            .lines()
            .find_map(|l| l.strip_prefix(name))
            .and_then(|v| v.trim().parse().ok())
            .unwrap_or_else(|| panic!("{name} is exported"))
    };
    let parts: std::collections::HashSet<usize> = [&room, &u1, &u2]
        .iter()
        .map(|c| partition(c.as_str(), PARTITIONS))
        .collect();
    assert_eq!(
        metric("switchboard_index_step_seconds_count "),
        parts.len() as f64,
        "one step per partition with entries, on close"
    );
    assert_eq!(metric("switchboard_index_pending "), 0.0);
    let (_embedded, b) = open(dir.path(), 0);
    assert_eq!(seqs(&b, &u2, q(None, None, 50)).await, range(1, 11));
    assert_eq!(seqs(&b, &room, q(Some(28), None, 50)).await, range(29, 30));
    b.lifecycle.close().await;
}

#[tokio::test]
async fn the_count_limit_holds_for_reads_at_once_and_for_storage_at_the_step() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (embedded, b) = open(dir.path(), 3);
    let room = Conv::room("r");
    for _ in 0..10 {
        b.broker
            .append(msg(&room, "u_1", None))
            .await
            .expect("append");
    }
    assert_eq!(count(dir.path(), "SELECT count(*) FROM messages"), 10);
    assert_eq!(seqs(&b, &room, q(None, None, 50)).await, range(8, 10));
    assert_eq!(seqs(&b, &room, q(Some(0), None, 2)).await, range(8, 9));
    assert_eq!(seqs(&b, &room, q(None, Some(9), 50)).await, [8]);
    let p = b.broker.position(&room).await.expect("position");
    assert_eq!((p.head_seq, p.oldest_seq), (10, 8));
    b.lifecycle.close().await;
    drop(embedded);
    assert_eq!(count(dir.path(), "SELECT count(*) FROM messages"), 3);
    assert_eq!(count(dir.path(), "SELECT count(*) FROM entries"), 3);
    let (_embedded, b) = open(dir.path(), 3);
    assert_eq!(seqs(&b, &room, q(None, None, 50)).await, range(8, 10));
    let p = b.broker.position(&room).await.expect("position");
    assert_eq!((p.head_seq, p.oldest_seq), (10, 8));
    b.lifecycle.close().await;
}

/// A user whose stream's partition comes after `than`'s.
fn user_after(than: &Conv) -> Conv {
    let p = partition(than.as_str(), PARTITIONS);
    (0..)
        .map(|i| Conv::user(&format!("r{i}")))
        .find(|c| partition(c.as_str(), PARTITIONS) > p)
        .expect("a later partition")
}

#[tokio::test]
async fn a_dm_row_stays_while_its_other_streams_step_is_to_come() {
    let dir = tempfile::tempdir().expect("tempdir");
    // The sender's stream is in partition 0, written first on close; its limit of 1 trims the
    // copy of the first DM before the recipient's partition is written.
    let sender = (0..)
        .map(|i| Conv::user(&format!("s{i}")))
        .find(|c| partition(c.as_str(), PARTITIONS) == 0)
        .expect("a name in partition 0");
    let first = user_after(&sender);
    let (embedded, b) = open(dir.path(), 1);
    b.broker
        .append(msg(&first, sender.id(), Some(&sender)))
        .await
        .expect("dm");
    b.broker
        .append(msg(&Conv::user("other"), sender.id(), Some(&sender)))
        .await
        .expect("dm");
    b.lifecycle.close().await;
    drop(embedded);
    let (_embedded, b) = open(dir.path(), 1);
    assert_eq!(seqs(&b, &sender, q(None, None, 50)).await, [2]);
    assert_eq!(
        seqs(&b, &first, q(None, None, 50)).await,
        [1],
        "the recipient's copy outlived the sender's trimmed one"
    );
    b.lifecycle.close().await;
}

/// Runs a writer over `dir` until its job channel is dropped: the crash path (no close, no last
/// step).
fn crash_after(dir: &std::path::Path, limits: WriterLimits, requests: Vec<AppendRequest>) {
    super::run_appends(dir, limits, requests, false);
}

#[test]
fn opening_after_a_crash_writes_the_entries_left_in_the_tail() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (u1, u2, room) = (Conv::user("u_1"), Conv::user("u_2"), Conv::room("r"));
    let limits = WriterLimits {
        index_cycle: NO_STEP,
        ..LIMITS
    };
    let mut requests: Vec<AppendRequest> = (0..5).map(|_| msg(&room, "u_1", None)).collect();
    requests.extend((0..4).map(|_| msg(&u2, "u_1", Some(&u1))));
    crash_after(dir.path(), limits, requests);
    assert_eq!(count(dir.path(), "SELECT count(*) FROM entries"), 0);

    let (conn, _) = schema::open_writer(dir.path()).expect("reopen");
    let all = |c: &Conv| -> Vec<u64> {
        reads::history(&conn, &Tail::default(), c, q(None, None, 50))
            .expect("history")
            .iter()
            .map(|m| m.seq)
            .collect()
    };
    assert_eq!(all(&room), range(1, 5));
    assert_eq!(all(&u2), range(1, 4));
    assert_eq!(all(&u1), range(1, 4));
    let marks: Vec<i64> = conn
        .prepare("SELECT id FROM index_marks ORDER BY part")
        .and_then(|mut s| s.query_map([], |r| r.get(0))?.collect())
        .expect("marks");
    assert_eq!(
        marks,
        vec![9; PARTITIONS],
        "every partition indexed to the newest row"
    );
    drop(conn);

    // And again: what the next crash leaves is written too, after what the first left.
    crash_after(dir.path(), limits, vec![msg(&room, "u_2", None)]);
    let (conn, _) = schema::open_writer(dir.path()).expect("reopen");
    let seqs: Vec<u64> = reads::history(&conn, &Tail::default(), &room, q(Some(3), None, 50))
        .expect("history")
        .iter()
        .map(|m| m.seq)
        .collect();
    assert_eq!(seqs, range(4, 6));
}

#[test]
fn a_page_merges_the_tail_with_entries_and_counts_an_entry_in_both_once() {
    let dir = tempfile::tempdir().expect("tempdir");
    let room = Conv::room("r");
    let limits = WriterLimits {
        index_cycle: NO_STEP,
        ..LIMITS
    };
    crash_after(
        dir.path(),
        limits,
        (0..10).map(|_| msg(&room, "u_1", None)).collect(),
    );
    // Rows 1..=10 are seqs 1..=10. Entries hold 1..=6 and the tail 5..=10, as between a step's
    // commit and the tail forgetting what it wrote.
    let (conn, _) = schema::open_writer(dir.path()).expect("reopen");
    conn.execute("DELETE FROM entries WHERE seq > 6", [])
        .expect("entries");
    let tail = Tail::default();
    tail.add(&crate::tail::entries_of(&room, 5..11));
    let page = |query| -> Vec<u64> {
        reads::history(&conn, &tail, &room, query)
            .expect("history")
            .iter()
            .map(|m| m.seq)
            .collect()
    };
    assert_eq!(page(q(None, None, 50)), range(1, 10));
    assert_eq!(page(q(None, None, 3)), range(8, 10));
    assert_eq!(page(q(Some(4), None, 4)), range(5, 8));
    assert_eq!(page(q(None, Some(7), 3)), range(4, 6));
    assert_eq!(page(q(Some(2), Some(9), 50)), range(3, 8));
    assert_eq!(
        reads::position(&conn, &tail, &room).expect("position"),
        (10, Some(1))
    );
}

/// Two messages to `room`, committed and written by a closed writer, then a moment for them to
/// age.
fn two_old_messages(dir: &std::path::Path, room: &Conv) {
    let (jobs, rx) = mpsc::channel();
    for _ in 0..2 {
        queue_append(&jobs, msg(room, "u_1", None));
    }
    super::run_writer(dir, jobs, rx, &RecordingSink::new());
    std::thread::sleep(Duration::from_millis(30));
}

/// Runs a writer over `dir` whose first maintenance pass empties `messages` (the age limit);
/// appends `requests` after it; returns their seqs; then closes, or crashes (drops the writer's
/// channel without a close).
fn after_emptying(
    dir: &std::path::Path,
    limits: WriterLimits,
    requests: Vec<AppendRequest>,
    close: bool,
) -> Vec<u64> {
    let (conn, _) = schema::open_writer(dir).expect("open");
    let (jobs, rx) = mpsc::channel();
    let writer = Writer::new(conn, rx, RecordingSink::new().as_sink(), limits).expect("writer");
    let thread = std::thread::spawn(move || writer.run(Arc::new(AtomicBool::new(true))));
    let start = std::time::Instant::now();
    while count(dir, "SELECT count(*) FROM messages") > 0 {
        assert!(
            start.elapsed() < Duration::from_secs(10),
            "no maintenance pass"
        );
        std::thread::sleep(Duration::from_millis(5));
    }
    let replies: Vec<AppendReply> = requests
        .into_iter()
        .map(|r| queue_append(&jobs, r))
        .collect();
    let seqs = super::answered_seqs(replies);
    if close {
        let (reply, _closed) = tokio::sync::oneshot::channel();
        jobs.send(crate::writer::Job::Close { reply })
            .expect("close");
    }
    drop(jobs);
    thread.join().expect("writer thread");
    seqs
}

/// Once the age limit has emptied `messages`, SQLite would give the next row id 1 again, below
/// the index's marks: a crash then lost the answered message and gave its seq again (found by
/// a review). The writer gives ids itself, above every mark.
#[test]
fn row_ids_stay_above_the_marks_after_the_age_limit_empties_the_table() {
    let dir = tempfile::tempdir().expect("tempdir");
    let room = Conv::room("r");
    two_old_messages(dir.path(), &room);
    let limits = WriterLimits {
        history_max_age_ms: 10,
        index_cycle: NO_STEP,
        ..LIMITS
    };
    let got = after_emptying(dir.path(), limits, vec![msg(&room, "u_1", None)], false);
    assert_eq!(got, [3]);
    assert_eq!(
        count(dir.path(), "SELECT max(id) FROM messages"),
        3,
        "not id 1 again"
    );
    let (conn, _) = schema::open_writer(dir.path()).expect("reopen");
    let seqs: Vec<u64> = reads::history(&conn, &Tail::default(), &room, q(None, None, 50))
        .expect("history")
        .iter()
        .map(|m| m.seq)
        .collect();
    assert_eq!(seqs, [3], "the answered message survived the crash");
    drop(conn);
    let (jobs, rx) = mpsc::channel();
    let next = queue_append(&jobs, msg(&room, "u_1", None));
    super::run_writer(dir.path(), jobs, rx, &RecordingSink::new());
    let next = next.blocking_recv().expect("answered").expect("append");
    assert_eq!(next.receipt.seq, 4, "and seq goes on");
}

/// The same reuse without a crash defeated the DM guard: the sender's trim deleted a row whose
/// recipient entry was still in the tail (found by a review).
#[test]
fn the_dm_guard_holds_after_the_age_limit_empties_the_table() {
    let dir = tempfile::tempdir().expect("tempdir");
    two_old_messages(dir.path(), &Conv::room("r"));
    let sender = (0..)
        .map(|i| Conv::user(&format!("s{i}")))
        .find(|c| partition(c.as_str(), PARTITIONS) == 0)
        .expect("a name in partition 0");
    let first = user_after(&sender);
    let limits = WriterLimits {
        history_max_messages: 1,
        history_max_age_ms: 10,
        index_cycle: NO_STEP,
        ..LIMITS
    };
    let requests = vec![
        msg(&first, sender.id(), Some(&sender)),
        msg(&Conv::user("other"), sender.id(), Some(&sender)),
    ];
    after_emptying(dir.path(), limits, requests, true);
    let (conn, _) = schema::open_writer(dir.path()).expect("reopen");
    let seqs = |c: &Conv| -> Vec<u64> {
        reads::history(&conn, &Tail::default(), c, q(None, None, 50))
            .expect("history")
            .iter()
            .map(|m| m.seq)
            .collect()
    };
    assert_eq!(seqs(&sender), [2]);
    assert_eq!(seqs(&first), [1], "the recipient keeps its only message");
}

/// Opening after a crash trims what it writes to the count limit, as the step would have: a
/// page never shows more than the limit (found by a review: recovery showed all ten).
#[tokio::test]
async fn opening_after_a_crash_applies_the_count_limit() {
    let dir = tempfile::tempdir().expect("tempdir");
    let limits = WriterLimits {
        history_max_messages: 3,
        index_cycle: NO_STEP,
        ..LIMITS
    };
    let path = dir.path().to_owned();
    tokio::task::spawn_blocking(move || {
        let room = Conv::room("r");
        crash_after(
            &path,
            limits,
            (0..10).map(|_| msg(&room, "u_1", None)).collect(),
        );
    })
    .await
    .expect("crash");
    assert_eq!(count(dir.path(), "SELECT count(*) FROM messages"), 10);
    let (_embedded, b) = open(dir.path(), 3);
    let room = Conv::room("r");
    assert_eq!(seqs(&b, &room, q(None, None, 50)).await, range(8, 10));
    let p = b.broker.position(&room).await.expect("position");
    assert_eq!((p.head_seq, p.oldest_seq), (10, 8));
    assert_eq!(
        count(dir.path(), "SELECT count(*) FROM messages"),
        3,
        "trimmed on open"
    );
    b.lifecycle.close().await;
}

/// A step that keeps failing (a full disk, here a trigger) is retried after a pause, not in a
/// loop (found by a review: an idle writer retried a full partition's step thousands of times
/// a second).
#[test]
fn a_failing_step_is_retried_after_a_pause() {
    use std::sync::atomic::{AtomicUsize, Ordering};
    let dir = tempfile::tempdir().expect("tempdir");
    let (mut conn, _) = schema::open_writer(dir.path()).expect("open");
    conn.execute_batch(
        "CREATE TRIGGER full_disk BEFORE INSERT ON entries
         BEGIN SELECT RAISE(ABORT, 'database or disk is full'); END;",
    )
    .expect("trigger");
    let rollbacks = Arc::new(AtomicUsize::new(0));
    let counted = rollbacks.clone();
    conn.rollback_hook(Some(move || {
        counted.fetch_add(1, Ordering::SeqCst);
    }))
    .expect("hook");
    let (jobs, rx) = mpsc::channel();
    let room = Conv::room("busy");
    let replies: Vec<AppendReply> = (0..1100)
        .map(|_| queue_append(&jobs, msg(&room, "u_1", None)))
        .collect();
    let writer = Writer::new(conn, rx, RecordingSink::new().as_sink(), LIMITS).expect("writer");
    let thread = std::thread::spawn(move || writer.run(Arc::new(AtomicBool::new(true))));
    super::answered_seqs(replies);
    std::thread::sleep(Duration::from_millis(200));
    let before = rollbacks.load(Ordering::SeqCst);
    std::thread::sleep(Duration::from_millis(500));
    let attempts = rollbacks.load(Ordering::SeqCst) - before;
    drop(jobs);
    thread.join().expect("writer thread");
    assert!(
        attempts <= 20,
        "{attempts} failed steps in 500 ms of an idle writer: it spins"
    );
    assert!(attempts >= 1, "the step is retried");
}
