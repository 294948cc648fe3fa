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

const LIMITS: WriterLimits = WriterLimits {
    history_max_messages: 0,
    history_max_age_ms: 0,
    max_batch: 512,
};

fn keyed(conv: &Conv, cmid: Option<&str>) -> AppendRequest {
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

type AppendReply = oneshot::Receiver<Result<Appended, BackendError>>;

fn queue_append(jobs: &mpsc::Sender<Job>, request: AppendRequest) -> AppendReply {
    let (reply, rx) = oneshot::channel();
    jobs.send(Job::Append { request, reply }).expect("queue");
    rx
}

fn queue_session(
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
fn run_writer(
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
    drop(conn);
    let (_conn, again) = schema::open_writer(dir.path()).expect("reopen");
    assert_eq!(epoch, again, "the epoch is made once");
    let other = tempfile::tempdir().expect("tempdir");
    let (_conn, fresh) = schema::open_writer(other.path()).expect("open");
    assert_ne!(epoch, fresh, "a new database gets a new epoch");
}
