//! The writer's batches: one transaction each, a failing job isolated by its savepoint, a
//! batch the database rolls back failing as a whole, and the commit delay.

use super::{AppendReply, LIMITS, keyed, queue_append, queue_session, run_writer};
use crate::reads;
use crate::schema;
use crate::writer::{Job, TypedJob, Writer, WriterLimits};
use std::sync::atomic::AtomicBool;
use std::sync::{Arc, mpsc};
use switchboard_conformance::RecordingSink;
use switchboard_core::backend::{BackendError, HistoryQuery};
use switchboard_proto::Conv;
use tokio::sync::oneshot;

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
        reads::history(&conn, &crate::tail::Tail::default(), &conv, q)
            .expect("history")
            .is_empty(),
        "nothing of the batch is stored"
    );
    assert!(reads::session(&conn, &[2; 32]).expect("session").is_none());
    assert_eq!(
        reads::position(&conn, &crate::tail::Tail::default(), &conv).expect("position"),
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
    let stored: Vec<u64> = reads::history(&conn, &crate::tail::Tail::default(), &conv, q)
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
    assert_eq!(
        reads::position(&conn, &crate::tail::Tail::default(), &c1).expect("position"),
        (3, Some(1))
    );
    assert_eq!(
        reads::position(&conn, &crate::tail::Tail::default(), &c2).expect("position"),
        (1, Some(1))
    );
}

/// With a commit delay, a lone job is committed at once, and a busy batch that nothing joins
/// is not held for the whole delay.
#[test]
fn a_commit_delay_holds_neither_a_lone_job_nor_a_batch_nothing_joins() {
    use std::time::{Duration, Instant};
    let dir = tempfile::tempdir().expect("tempdir");
    let conv = Conv::room("delayed");
    let sink = RecordingSink::new();
    let (jobs, rx) = mpsc::channel();
    let (conn, _epoch) = schema::open_writer(dir.path()).expect("open");
    let limits = WriterLimits {
        commit_delay: Duration::from_secs(5),
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
    let a_reply = queue_append(&jobs, keyed(&conv, None));
    let b = queue_append(&jobs, keyed(&conv, None));
    busy.blocking_recv().expect("answered").expect("busy job");
    // Nothing else comes: the batch of two is committed after a slice, not after the delay
    // (the wait itself is tested in writer/gather.rs).
    let started = Instant::now();
    let (a, b) = (answered(a_reply), answered(b));
    assert!(
        started.elapsed() < Duration::from_secs(3),
        "the batch was held for the whole delay"
    );
    assert_eq!((a.receipt.seq, b.receipt.seq), (2, 3), "in order");
    drop(jobs);
    thread.join().expect("writer thread");
}

/// An append's completion runs on the writer thread (a connection's answer is written there):
/// one that panics neither stops the writer nor keeps the batch's messages from the fan-out.
#[test]
fn a_completion_that_panics_does_not_stop_the_writer() {
    let dir = tempfile::tempdir().expect("tempdir");
    let conv = Conv::room("panics");
    let sink = RecordingSink::new();
    let (jobs, rx) = mpsc::channel();
    jobs.send(Job::Append {
        request: keyed(&conv, None),
        reply: crate::append::AppendReply::Then(Box::new(|_| panic!("a completion's bug"))),
    })
    .expect("queue");
    let after = queue_append(&jobs, keyed(&conv, None));
    run_writer(dir.path(), jobs, rx, &sink);
    let seq = after
        .blocking_recv()
        .expect("answered")
        .expect("stored")
        .receipt
        .seq;
    assert_eq!(seq, 2, "the writer went on after the panic");
    let delivered: Vec<u64> = sink.messages_in(&conv).iter().map(|m| m.seq).collect();
    assert_eq!(delivered, [1, 2], "both published");
}
