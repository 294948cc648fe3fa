//! Unit tests of the writer: batches (one transaction, savepoint isolation, in-batch dedup),
//! the deferred stream index and maintenance (age-based trimming, key and session expiry), and
//! of opening a database.
//!
//! This file holds the fixtures they share (with `tests_durability` and `tests_v4` too): a
//! writer run over a directory, queued appends and sessions, and an older database file.

mod batches;
mod index;
mod maintenance;
mod opening;
mod trim;

use crate::writer::{Job, TypedJob, Writer, WriterLimits};
use crate::{schema, writes};
use std::sync::atomic::AtomicBool;
use std::sync::{Arc, mpsc};
use switchboard_conformance::RecordingSink;
use switchboard_core::backend::{AppendRequest, Appended, AuthSession, BackendError};
use switchboard_proto::{Conv, MessageBody};
use tokio::sync::oneshot;

pub(crate) const LIMITS: WriterLimits = WriterLimits {
    history_max_messages: 0,
    history_max_age_ms: 0,
    max_batch: 512,
    commit_delay: std::time::Duration::ZERO,
    index_cycle: crate::DEFAULT_INDEX_CYCLE,
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

/// The seqs the appends behind `replies` were answered with, in order.
pub(crate) fn answered_seqs(replies: Vec<AppendReply>) -> Vec<u64> {
    replies
        .into_iter()
        .map(|r| {
            r.blocking_recv()
                .expect("answered")
                .expect("append")
                .receipt
                .seq
        })
        .collect()
}

pub(crate) fn queue_append(jobs: &mpsc::Sender<Job>, request: AppendRequest) -> AppendReply {
    let (reply, rx) = oneshot::channel();
    jobs.send(Job::Append {
        request,
        reply: reply.into(),
    })
    .expect("queue");
    rx
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

/// Runs a writer with `limits` over `dir` on `requests` (queued before it starts, so they can
/// share batches), then a close (`close`) or nothing (the crash path: no last step, the job
/// channel just dropped). Returns the answers.
pub(crate) fn run_appends(
    dir: &std::path::Path,
    limits: WriterLimits,
    requests: Vec<AppendRequest>,
    close: bool,
) -> Vec<Appended> {
    let (jobs, rx) = mpsc::channel();
    let replies: Vec<AppendReply> = requests
        .into_iter()
        .map(|r| queue_append(&jobs, r))
        .collect();
    if close {
        let (reply, _closed) = oneshot::channel();
        jobs.send(Job::Close { reply }).expect("queue close");
    }
    drop(jobs);
    let (conn, _) = schema::open_writer(dir).expect("open");
    let writer = Writer::new(conn, rx, RecordingSink::new().as_sink(), limits).expect("writer");
    std::thread::spawn(move || writer.run(Arc::new(AtomicBool::new(true))))
        .join()
        .expect("writer thread");
    replies
        .into_iter()
        .map(|r| r.blocking_recv().expect("answered").expect("append"))
        .collect()
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
