//! Unit tests of the writer: batches (one transaction, savepoint isolation, in-batch dedup) and
//! maintenance (age-based trimming, key and session expiry).

use crate::error::now_ms;
use crate::writer::{Job, TypedJob, Writer, WriterLimits, maintenance};
use crate::{reads, schema, writes};
use std::sync::atomic::AtomicBool;
use std::sync::{Arc, mpsc};
use switchboard_conformance::RecordingSink;
use switchboard_core::backend::{AppendRequest, Appended, AuthSession, BackendError, HistoryQuery};
use switchboard_proto::{Conv, MessageBody};
use tokio::sync::oneshot;

pub(crate) const LIMITS: WriterLimits = WriterLimits {
    history_max_messages: 0,
    history_max_age_ms: 0,
    max_batch: 512,
    commit_delay: std::time::Duration::ZERO,
};

pub(crate) fn keyed(conv: &Conv, cmid: Option<&str>) -> AppendRequest {
    AppendRequest {
        conv: conv.clone(),
        from: Some("u_1".into()),
        to: None,
        body: MessageBody::from_json(r#"{"t":1}"#.into()).expect("json"),
        client_msg_id: cmid.map(str::to_owned),
        idempotency_owner: "u_1".into(),
        copy_to: None,
    }
}

pub(crate) type AppendReply = oneshot::Receiver<Result<Appended, BackendError>>;

pub(crate) fn queue_append(jobs: &mpsc::Sender<Job>, request: AppendRequest) -> AppendReply {
    let (reply, rx) = oneshot::channel();
    jobs.send(Job::Append { request, reply }).expect("queue");
    rx
}

/// A job that makes SQLite roll the batch's transaction back by itself, as a full disk would.
fn queue_rollback(jobs: &mpsc::Sender<Job>) -> oneshot::Receiver<Result<(), BackendError>> {
    let (reply, rolled) = oneshot::channel();
    let job = TypedJob::boxed(
        |c: &rusqlite::Connection| -> Result<(), BackendError> {
            c.execute_batch("ROLLBACK")
                .map_err(|e| BackendError::Internal(e.to_string()))?;
            Err(BackendError::Internal("disk full (simulated)".into()))
        },
        reply,
    );
    jobs.send(Job::Write(job)).expect("queue");
    rolled
}

pub(crate) fn queue_session(
    jobs: &mpsc::Sender<Job>,
    token: [u8; 32],
    expires_at_ms: u64,
) -> oneshot::Receiver<Result<(), BackendError>> {
    let session = AuthSession {
        session_id: "s_1".into(),
        user_id: "u_1".into(),
        expires_at_ms,
    };
    let (reply, rx) = oneshot::channel();
    let job = TypedJob::boxed(
        move |c: &rusqlite::Connection| writes::create_session(c, &token, &session),
        reply,
    );
    jobs.send(Job::Write(job)).expect("queue");
    rx
}

/// Queues `Close`, then runs a writer over `dir` until it has done everything queued.
pub(crate) fn run_writer(
    dir: &std::path::Path,
    jobs: mpsc::Sender<Job>,
    rx: mpsc::Receiver<Job>,
    sink: &Arc<RecordingSink>,
) {
    let (conn, _epoch) = schema::open_writer(dir).expect("open");
    let (reply, _closed) = oneshot::channel();
    jobs.send(Job::Close { reply }).expect("queue close");
    let writer = Writer::new(conn, rx, sink.as_sink(), LIMITS).expect("writer");
    std::thread::spawn(move || writer.run(Arc::new(AtomicBool::new(true))))
        .join()
        .expect("writer thread");
}

/// SQLite can roll a whole transaction back by itself (disk full, I/O error). A job simulates
/// that with `ROLLBACK`; the jobs after it must not commit on their own while the batch is
/// answered as failed: nothing of the batch is stored, and every job says so.
#[test]
fn a_transaction_rolled_back_by_the_database_fails_the_whole_batch() {
    let dir = tempfile::tempdir().expect("tempdir");
    let conv = Conv::room("rolled");
    let sink = RecordingSink::new();
    let (jobs, rx) = mpsc::channel();
    let a1 = queue_append(&jobs, keyed(&conv, None));
    let rolled = queue_rollback(&jobs);
    let a2 = queue_append(&jobs, keyed(&conv, None));
    let s1 = queue_session(&jobs, [2; 32], u64::MAX / 2);
    run_writer(dir.path(), jobs, rx, &sink);

    assert!(a1.blocking_recv().expect("answered").is_err());
    assert!(rolled.blocking_recv().expect("answered").is_err());
    assert!(a2.blocking_recv().expect("answered").is_err());
    assert!(s1.blocking_recv().expect("answered").is_err());
    assert!(sink.messages().is_empty(), "nothing published");
    let conn = schema::open_reader(dir.path()).expect("reader");
    let q = HistoryQuery {
        limit: 10,
        ..HistoryQuery::default()
    };
    assert!(
        reads::history(&conn, &conv, q).expect("history").is_empty(),
        "nothing of the batch is stored"
    );
    assert!(reads::session(&conn, &[2; 32]).expect("session").is_none());
    assert_eq!(
        reads::position(&conn, &conv).expect("position"),
        (0, None),
        "no head was committed for the lost message"
    );
}

#[test]
fn a_failing_job_does_not_undo_its_batch() {
    let dir = tempfile::tempdir().expect("tempdir");
    let conv = Conv::room("batch");
    let sink = RecordingSink::new();
    let (jobs, rx) = mpsc::channel();
    // All queued before the writer starts: one batch, one transaction.
    let a1 = queue_append(&jobs, keyed(&conv, Some("c1")));
    let s1 = queue_session(&jobs, [1; 32], u64::MAX / 2);
    let s2 = queue_session(&jobs, [1; 32], u64::MAX / 2); // same token: fails
    let a2 = queue_append(&jobs, keyed(&conv, Some("c1"))); // repeat within the batch
    let a3 = queue_append(&jobs, keyed(&conv, None));
    run_writer(dir.path(), jobs, rx, &sink);

    let a1 = a1.blocking_recv().expect("answered").expect("append 1");
    assert_eq!((a1.receipt.seq, a1.stored.len()), (1, 1));
    s1.blocking_recv()
        .expect("answered")
        .expect("first session");
    assert!(matches!(
        s2.blocking_recv(),
        Ok(Err(BackendError::Internal(_)))
    ));
    let a2 = a2.blocking_recv().expect("answered").expect("repeat");
    assert_eq!(a2.receipt, a1.receipt, "deduplicated within the batch");
    assert!(a2.stored.is_empty());
    let a3 = a3.blocking_recv().expect("answered").expect("append 3");
    assert_eq!(a3.receipt.seq, 2);
    let delivered: Vec<u64> = sink.messages().iter().map(|m| m.seq).collect();
    assert_eq!(
        delivered,
        vec![1, 2],
        "published after commit, in seq order"
    );

    let conn = schema::open_reader(dir.path()).expect("reader");
    let q = HistoryQuery {
        limit: 10,
        ..HistoryQuery::default()
    };
    let stored: Vec<u64> = reads::history(&conn, &conv, q)
        .expect("history")
        .iter()
        .map(|m| m.seq)
        .collect();
    assert_eq!(
        stored,
        vec![1, 2],
        "the failed job's neighbours are committed"
    );
    assert!(reads::session(&conn, &[1; 32]).expect("session").is_some());
}

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

    let (mut conn, _) = schema::open_writer(dir.path()).expect("open");
    let soon = now_ms() + 10_000;
    assert!(!maintenance(&mut conn, 1_000, soon).expect("maintenance"));
    assert_eq!(
        reads::position(&conn, &conv).expect("position"),
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
    let (mut conn, _) = schema::open_writer(dir.path()).expect("open");
    let later = now_ms() + crate::writer::IDEMPOTENCY_MIN_RETENTION_MS + 10_000;
    maintenance(&mut conn, 1_000, later).expect("maintenance");
    let keys: i64 = conn
        .query_row("SELECT count(*) FROM idempotency", [], |r| r.get(0))
        .expect("count");
    assert_eq!(keys, 0, "old idempotency keys expire");
}

#[test]
fn the_database_is_wal_with_full_sync_and_a_stable_epoch() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (conn, epoch) = schema::open_writer(dir.path()).expect("open");
    let mode: String = conn
        .query_row("PRAGMA journal_mode", [], |r| r.get(0))
        .expect("journal_mode");
    assert_eq!(mode, "wal");
    let sync: i64 = conn
        .query_row("PRAGMA synchronous", [], |r| r.get(0))
        .expect("synchronous");
    assert_eq!(sync, 2, "synchronous=FULL");
    let cache: i64 = conn
        .query_row("PRAGMA cache_size", [], |r| r.get(0))
        .expect("cache_size");
    assert_eq!(cache, -8 * 1024, "the writer caches up to 8 MiB of pages");
    let limit: i64 = conn
        .query_row("PRAGMA journal_size_limit", [], |r| r.get(0))
        .expect("journal_size_limit");
    assert_eq!(
        limit,
        64 << 20,
        "the log file is cut back to 64 MiB when it starts over"
    );
    drop(conn);
    let (_conn, again) = schema::open_writer(dir.path()).expect("reopen");
    assert_eq!(epoch, again, "the epoch is made once");
    let other = tempfile::tempdir().expect("tempdir");
    let (_conn, fresh) = schema::open_writer(other.path()).expect("open");
    assert_ne!(epoch, fresh, "a new database gets a new epoch");
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

    let (mut conn, _) = schema::open_writer(dir.path()).expect("open");
    assert!(!maintenance(&mut conn, 1_000, old_ts + 1 + 1_000).expect("maintenance"));
    assert_eq!(reads::position(&conn, &a).expect("position"), (3, Some(3)));
    assert_eq!(
        reads::position(&conn, &b).expect("position"),
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

/// The version-1 layout: messages clustered on (conv, seq) with an index on `ts`.
const V1_SCHEMA: &str = "
CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL) WITHOUT ROWID;
CREATE TABLE users (user_id TEXT PRIMARY KEY, username TEXT UNIQUE, password_hash TEXT,
    created_at INTEGER NOT NULL);
CREATE TABLE sessions (token_hash BLOB PRIMARY KEY, session_id TEXT NOT NULL,
    user_id TEXT NOT NULL, expires_at INTEGER NOT NULL) WITHOUT ROWID;
CREATE INDEX sessions_expires ON sessions (expires_at);
CREATE TABLE rooms (room_id TEXT PRIMARY KEY, name TEXT NOT NULL, visibility TEXT NOT NULL,
    owner TEXT NOT NULL, created_at INTEGER NOT NULL);
CREATE TABLE members (room_id TEXT NOT NULL, user_id TEXT NOT NULL, joined INTEGER NOT NULL,
    PRIMARY KEY (room_id, user_id)) WITHOUT ROWID;
CREATE INDEX members_by_user ON members (user_id, room_id);
CREATE INDEX members_by_order ON members (room_id, joined);
CREATE TABLE messages (conv TEXT NOT NULL, seq INTEGER NOT NULL, message_id TEXT NOT NULL,
    from_user TEXT, to_user TEXT, ts INTEGER NOT NULL, client_msg_id TEXT, body TEXT NOT NULL,
    PRIMARY KEY (conv, seq)) WITHOUT ROWID;
CREATE INDEX messages_by_ts ON messages (ts);
CREATE TABLE convs (conv TEXT PRIMARY KEY, head INTEGER NOT NULL) WITHOUT ROWID;
CREATE TABLE idempotency (owner TEXT NOT NULL, client_msg_id TEXT NOT NULL, conv TEXT NOT NULL,
    seq INTEGER NOT NULL, message_id TEXT NOT NULL, ts INTEGER NOT NULL,
    PRIMARY KEY (owner, client_msg_id)) WITHOUT ROWID;
CREATE INDEX idempotency_by_ts ON idempotency (ts);
";

/// A database file of an older version in `dir` (WAL mode, as every version had): `schema`,
/// then `rows`, run on it.
pub(crate) fn old_database(
    dir: &std::path::Path,
    schema: &str,
    rows: &str,
) -> rusqlite::Connection {
    let old = rusqlite::Connection::open(dir.join(schema::DB_FILE)).expect("old file");
    let mode: String = old
        .query_row("PRAGMA journal_mode=WAL", [], |r| r.get(0))
        .expect("wal");
    assert_eq!(mode, "wal");
    old.execute_batch(schema).expect("old schema");
    old.execute_batch(rows).expect("old rows");
    old
}

/// A version-1 data directory is migrated in place on open: every message, head, idempotency
/// key, session and the epoch survive, and seqs go on.
#[test]
fn a_version_1_database_is_migrated_on_open() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (room, dm, gone) = (Conv::room("r1"), Conv::user("u_2"), Conv::room("gone"));
    let ts0 = i64::try_from(now_ms()).expect("ms since 1970") - 60_000;
    {
        let old = old_database(
            dir.path(),
            V1_SCHEMA,
            "INSERT INTO meta VALUES ('schema_version', '1'), ('epoch', '00000000000000e1');
             INSERT INTO convs VALUES ('room:r1', 3), ('user:u_2', 2), ('room:gone', 7);",
        );
        // Inserted out of time order: the clustered table keeps them by (conv, seq) anyway.
        let rows = [
            ("user:u_2", 2, 4),
            ("room:r1", 1, 0),
            ("room:r1", 3, 5),
            ("user:u_2", 1, 1),
            ("room:r1", 2, 2),
        ];
        for (conv, seq, dt) in rows {
            old.execute(
                "INSERT INTO messages VALUES (?1, ?2, ?3, 'u_1', NULL, ?4, ?5, ?6)",
                rusqlite::params![
                    conv,
                    seq,
                    format!("m_{conv}_{seq}"),
                    ts0 + dt,
                    (conv == "room:r1" && seq == 1).then_some("c1"),
                    format!(r#"{{"n":"{conv}#{seq}"}}"#),
                ],
            )
            .expect("v1 message");
        }
        old.execute(
            "INSERT INTO idempotency VALUES ('u_1', 'c1', 'room:r1', 1, 'm_room:r1_1', ?1)",
            [ts0],
        )
        .expect("v1 key");
        old.execute(
            "INSERT INTO sessions VALUES (?1, 's_1', 'u_1', ?2)",
            rusqlite::params![&[9u8; 32][..], i64::MAX / 2],
        )
        .expect("v1 session");
    }

    let (conn, epoch) = schema::open_writer(dir.path()).expect("open and migrate");
    assert_eq!(epoch, "00000000000000e1", "the epoch survives");
    let version: String = conn
        .query_row(
            "SELECT value FROM meta WHERE key = 'schema_version'",
            [],
            |r| r.get(0),
        )
        .expect("version");
    assert_eq!(version, schema::SCHEMA_VERSION.to_string());
    let leftovers: i64 = conn
        .query_row(
            "SELECT count(*) FROM sqlite_master WHERE name IN
             ('messages_v1', 'messages_by_ts', 'idempotency_v1', 'idempotency_by_ts')",
            [],
            |r| r.get(0),
        )
        .expect("leftovers");
    assert_eq!(leftovers, 0, "the old tables and their indexes are gone");
    let by_id: Vec<i64> = conn
        .prepare("SELECT ts FROM messages ORDER BY id")
        .and_then(|mut s| s.query_map([], |r| r.get(0))?.collect())
        .expect("rows");
    assert_eq!(
        by_id,
        (0..=5)
            .filter(|d| *d != 3)
            .map(|d| ts0 + d)
            .collect::<Vec<_>>()
    );
    let q = HistoryQuery {
        limit: 10,
        ..HistoryQuery::default()
    };
    let history = reads::history(&conn, &room, q).expect("history");
    let got: Vec<(u64, &str, u64, Option<&str>, String)> = history
        .iter()
        .map(|m| {
            (
                m.seq,
                m.message_id.as_str(),
                m.ts,
                m.client_msg_id.as_deref(),
                m.body.get().to_owned(),
            )
        })
        .collect();
    let want = |seq: u64, dt: i64, cmid| {
        let id = format!("m_room:r1_{seq}");
        (
            seq,
            id,
            (ts0 + dt) as u64,
            cmid,
            format!(r#"{{"n":"room:r1#{seq}"}}"#),
        )
    };
    let want = [want(1, 0, Some("c1")), want(2, 2, None), want(3, 5, None)];
    assert_eq!(got.len(), want.len());
    for (g, w) in got.iter().zip(&want) {
        assert_eq!(
            (g.0, g.1, g.2, g.3, &g.4),
            (w.0, w.1.as_str(), w.2, w.3, &w.4)
        );
    }
    assert_eq!(history[0].from.as_deref(), Some("u_1"));
    assert_eq!(reads::position(&conn, &room).expect("room"), (3, Some(1)));
    assert_eq!(reads::position(&conn, &dm).expect("dm"), (2, Some(1)));
    assert_eq!(
        reads::position(&conn, &gone).expect("gone"),
        (7, None),
        "a head without messages survives"
    );
    assert!(reads::session(&conn, &[9; 32]).expect("session").is_some());
    drop(conn);

    let sink = RecordingSink::new();
    let (jobs, rx) = mpsc::channel();
    let retry = queue_append(&jobs, keyed(&room, Some("c1")));
    let next: Vec<_> = [&room, &dm, &gone]
        .into_iter()
        .map(|c| queue_append(&jobs, keyed(c, None)))
        .collect();
    run_writer(dir.path(), jobs, rx, &sink);
    let retry = retry.blocking_recv().expect("answered").expect("retry");
    assert_eq!(
        (
            retry.receipt.seq,
            retry.receipt.message_id.as_str(),
            retry.receipt.ts
        ),
        (1, "m_room:r1_1", ts0 as u64),
        "the idempotency key answers with the original receipt"
    );
    assert!(retry.stored.is_empty());
    let seqs: Vec<u64> = next
        .into_iter()
        .map(|r| {
            r.blocking_recv()
                .expect("answered")
                .expect("append")
                .receipt
                .seq
        })
        .collect();
    assert_eq!(seqs, vec![4, 3, 8], "seqs go on from the migrated heads");
    let (conn, _) = schema::open_writer(dir.path()).expect("reopen at version 2");
    assert_eq!(reads::position(&conn, &room).expect("room"), (4, Some(1)));
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
    let (mut conn, _) = schema::open_writer(dir.path()).expect("open");
    assert!(!maintenance(&mut conn, 0, now).expect("maintenance"));
    let keys: Vec<String> = conn
        .prepare("SELECT client_msg_id FROM idempotency ORDER BY id")
        .and_then(|mut s| s.query_map([], |r| r.get(0))?.collect())
        .expect("keys");
    assert_eq!(keys, vec!["b".to_owned(), "c".to_owned()]);
    assert!(!maintenance(&mut conn, 0, now + 7 * day).expect("maintenance"));
    let left: i64 = conn
        .query_row("SELECT count(*) FROM idempotency", [], |r| r.get(0))
        .expect("count");
    assert_eq!(left, 0, "once the live key expired, the rest go too");
}

/// The writer skips recording conversations it knows are recorded; a conversation whose first
/// batch failed is still recorded by the next one (the `convs` table must name every
/// conversation with messages: a restart loads the set of stored conversations from it).
#[test]
fn every_conversation_with_messages_is_recorded_across_batches() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (c1, c2) = (Conv::room("one"), Conv::room("two"));
    let sink = RecordingSink::new();
    let (jobs, rx) = mpsc::channel();
    let (conn, _epoch) = schema::open_writer(dir.path()).expect("open");
    let writer = Writer::new(conn, rx, sink.as_sink(), LIMITS).expect("writer");
    let thread = std::thread::spawn(move || writer.run(Arc::new(AtomicBool::new(true))));
    let ok = |r: AppendReply| r.blocking_recv().expect("answered").expect("append");

    ok(queue_append(&jobs, keyed(&c1, None)));
    ok(queue_append(&jobs, keyed(&c1, None)));
    // Keep the writer busy so that the next jobs share one batch, which the database rolls back.
    let (reply, busy) = oneshot::channel();
    let (started, running) = mpsc::channel();
    let job = TypedJob::boxed(
        move |_: &rusqlite::Connection| -> Result<(), BackendError> {
            started.send(()).expect("signal");
            std::thread::sleep(std::time::Duration::from_millis(100));
            Ok(())
        },
        reply,
    );
    jobs.send(Job::Write(job)).expect("queue");
    running.recv().expect("the busy job runs");
    let lost = queue_append(&jobs, keyed(&c2, None));
    let rolled = queue_rollback(&jobs);
    busy.blocking_recv().expect("answered").expect("busy job");
    assert!(lost.blocking_recv().expect("answered").is_err());
    assert!(rolled.blocking_recv().expect("answered").is_err());
    let again = ok(queue_append(&jobs, keyed(&c2, None)));
    assert_eq!(again.receipt.seq, 1, "the lost message took no seq");
    ok(queue_append(&jobs, keyed(&c1, None)));
    let (reply, closed) = oneshot::channel();
    jobs.send(Job::Close { reply }).expect("queue close");
    closed.blocking_recv().expect("closed");
    thread.join().expect("writer thread");

    let conn = schema::open_reader(dir.path()).expect("reader");
    let recorded: Vec<String> = conn
        .prepare("SELECT conv FROM convs ORDER BY conv")
        .and_then(|mut s| s.query_map([], |r| r.get(0))?.collect())
        .expect("convs");
    assert_eq!(recorded, vec!["room:one".to_owned(), "room:two".to_owned()]);
    assert_eq!(reads::position(&conn, &c1).expect("position"), (3, Some(1)));
    assert_eq!(reads::position(&conn, &c2).expect("position"), (1, Some(1)));
}

/// With a commit delay, a busy writer's batch of two or more jobs waits for more before it
/// commits (so one fsync carries more messages); a lone job is committed at once.
#[test]
fn a_commit_delay_holds_a_busy_batch_open_but_not_a_lone_job() {
    use std::time::{Duration, Instant};
    let dir = tempfile::tempdir().expect("tempdir");
    let conv = Conv::room("delayed");
    let sink = RecordingSink::new();
    let (jobs, rx) = mpsc::channel();
    let (conn, _epoch) = schema::open_writer(dir.path()).expect("open");
    let limits = WriterLimits {
        commit_delay: Duration::from_millis(400),
        ..LIMITS
    };
    let writer = Writer::new(conn, rx, sink.as_sink(), limits).expect("writer");
    let thread = std::thread::spawn(move || writer.run(Arc::new(AtomicBool::new(true))));
    let answered = |r: AppendReply| r.blocking_recv().expect("answered").expect("append");

    // A lone job on an idle writer: no wait.
    let started = Instant::now();
    answered(queue_append(&jobs, keyed(&conv, None)));
    assert!(
        started.elapsed() < Duration::from_millis(300),
        "a lone job waited"
    );

    // Keep the writer busy so that the next two jobs meet in one batch.
    let (reply, busy) = oneshot::channel();
    let (running_tx, running) = mpsc::channel();
    let job = TypedJob::boxed(
        move |_: &rusqlite::Connection| -> Result<(), BackendError> {
            running_tx.send(()).expect("signal");
            std::thread::sleep(Duration::from_millis(50));
            Ok(())
        },
        reply,
    );
    jobs.send(Job::Write(job)).expect("queue");
    running.recv().expect("the busy job runs");
    let mut a = queue_append(&jobs, keyed(&conv, None));
    let b = queue_append(&jobs, keyed(&conv, None));
    busy.blocking_recv().expect("answered").expect("busy job");
    // The batch of two waits for more: a third queued meanwhile joins it.
    std::thread::sleep(Duration::from_millis(100));
    assert!(a.try_recv().is_err(), "the batch did not wait");
    let c = queue_append(&jobs, keyed(&conv, None));
    let (a, b, c) = (
        a.blocking_recv().expect("answered").expect("append"),
        answered(b),
        answered(c),
    );
    assert_eq!(
        (a.receipt.seq, b.receipt.seq, c.receipt.seq),
        (2, 3, 4),
        "one batch, in order"
    );
    drop(jobs);
    thread.join().expect("writer thread");
}
