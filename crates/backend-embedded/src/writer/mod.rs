//! The writer thread: the only code that writes to the database.
//!
//! It owns one connection and takes jobs from a channel. It drains every pending job (up to
//! `max_batch`), runs them in one transaction so that a failing job does not undo the others (each
//! write in its own SAVEPOINT; consecutive appends together, undone and replayed one by one if one
//! fails: see `append_run`), and commits once: one fsync for the whole batch (group commit). Only
//! after the commit does it publish the stored messages to the sink, in seq order, and then answer
//! the jobs. So an `append` returns once its message is durable, and publication order is seq
//! order, because one thread assigns the seqs, commits and publishes.
//!
//! The writer's statements are prepared once and held for its life ([`Statements`]): they
//! borrow the connection, so the thread's state is split in two, the connection
//! ([`Writer`]) and everything else ([`WriterState`]).
//!
//! A batch commits its message rows; their stream entries go to the tail (memory) and reach
//! `entries` in the index's later steps ([`indexing`]; the tail module says why).
//!
//! This file holds the thread's state and loop; [`jobs`] holds what it is asked to do,
//! [`gather`] how a batch grows ([`arrivals`] the rate its wait's slices follow, [`senders`]
//! whose jobs it waits for), [`batch`] how a batch is run and answered, [`txn`] its
//! transaction, [`indexing`] the index's steps, [`retention`] the deletion of what expired.

mod arrivals;
mod batch;
mod gather;
mod indexing;
mod jobs;
mod retention;
mod senders;
mod txn;

pub(crate) use indexing::TAIL_REFUSE;
pub(crate) use jobs::{Job, TypedJob, WriteJob};
pub(crate) use retention::IDEMPOTENCY_MIN_RETENTION_MS;
pub(crate) use txn::run_cached;
// The tests run a maintenance pass on a database of their own.
#[cfg(test)]
pub(crate) use retention::maintenance;

use crate::append::Sequencer;
use crate::cache::StoredConvs;
use crate::checkpointer::Checkpointer;
use crate::error::DbResultExt;
use crate::messages::Statements;
use crate::tail::Tail;
use indexing::Indexing;
use rusqlite::Connection;
use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{Receiver, RecvTimeoutError};
use std::time::{Duration, Instant};
use switchboard_core::backend::{BackendError, BusSink};
use switchboard_core::metrics::CommitMetrics;

/// How often an idle writer looks whether the checkpoint thread's pass is done (only while one
/// is under way), so that it finishes the checkpoint without waiting for the next write.
const CHECKPOINT_POLL: Duration = Duration::from_millis(20);

/// The writer's limits.
#[derive(Debug, Clone, Copy)]
pub(crate) struct WriterLimits {
    /// Per conversation; 0 = unlimited.
    pub history_max_messages: u64,
    /// 0 = unlimited.
    pub history_max_age_ms: u64,
    /// Jobs per transaction.
    pub max_batch: usize,
    /// How long a commit of two or more jobs waits for more (zero: none).
    pub commit_delay: std::time::Duration,
    /// Under load, each partition of the stream index is written about once per this time
    /// (see [`indexing`]).
    pub index_cycle: std::time::Duration,
}

/// Marks the writer as gone when its thread ends, however it ends.
struct AliveGuard(Arc<AtomicBool>);

impl Drop for AliveGuard {
    fn drop(&mut self) {
        self.0.store(false, Ordering::SeqCst);
    }
}

/// The writer thread: its connection and its state.
pub(crate) struct Writer {
    conn: Connection,
    state: WriterState,
}

/// The writer thread's state but its connection, which the statements it holds borrow.
struct WriterState {
    jobs: Receiver<Job>,
    sink: Arc<dyn BusSink>,
    limits: WriterLimits,
    seq: Sequencer,
    /// Told of every conversation before its messages are committed (see the cache module).
    stored: Option<Arc<StoredConvs>>,
    /// The thread that runs checkpoints (none in some tests: SQLite's automatic one then runs).
    checkpointer: Option<Checkpointer>,
    /// Each commit's time and messages, if recorded.
    commit_metrics: Option<CommitMetrics>,
    /// The index's progress (the tail itself is `seq.tail`).
    indexing: Indexing,
    /// The rate jobs come at, which the commit delay's slices follow.
    arrivals: arrivals::Arrivals,
    /// Who the last commit answered, whose jobs the commit delay does not wait for.
    answered: senders::Answered,
}

impl Writer {
    /// Prepares a writer over an open connection (see [`crate::schema::open_writer`]).
    pub(crate) fn new(
        conn: Connection,
        jobs: Receiver<Job>,
        sink: Arc<dyn BusSink>,
        limits: WriterLimits,
    ) -> Result<Writer, BackendError> {
        let last_ts: i64 = conn
            .query_row(
                // Rows are in time order: the last one is the latest.
                "SELECT coalesce((SELECT ts FROM messages ORDER BY id DESC LIMIT 1), 0)",
                [],
                |r| r.get(0),
            )
            .ctx("reading the latest message time")?;
        let spilled_keys = crate::messages::has_spilled_keys(&conn)?;
        let newest: i64 = conn
            .query_row("SELECT coalesce(max(id), 0) FROM messages", [], |r| {
                r.get(0)
            })
            .ctx("reading the newest message")?;
        let marks = crate::index::load_marks(&conn)?;
        let doomed = crate::trimming::doomed_count(&conn)?;
        let state = WriterState {
            jobs,
            sink,
            limits: WriterLimits {
                max_batch: limits.max_batch.max(1),
                ..limits
            },
            seq: Sequencer {
                heads: HashMap::new(),
                last_ts: u64::try_from(last_ts).unwrap_or(0),
                spilled_keys,
                key_retention_ms: IDEMPOTENCY_MIN_RETENTION_MS.max(limits.history_max_age_ms),
                tail: Arc::new(Tail::default()),
                next_id: newest.max(marks.iter().copied().max().unwrap_or(0)) + 1,
            },
            stored: None,
            checkpointer: None,
            commit_metrics: None,
            indexing: Indexing::new(marks, newest, doomed, limits.index_cycle),
            arrivals: arrivals::Arrivals::new(),
            answered: senders::Answered::default(),
        };
        Ok(Writer { conn, state })
    }

    /// Lets `checkpointer` run the checkpoints; the writer stops it before its own last
    /// checkpoint on close.
    pub(crate) fn with_checkpointer(mut self, checkpointer: Checkpointer) -> Writer {
        self.state.checkpointer = Some(checkpointer);
        self
    }

    /// Keeps `stored` complete: conversations are added before their messages are committed.
    pub(crate) fn with_stored(mut self, stored: Arc<StoredConvs>) -> Writer {
        self.state.stored = Some(stored);
        self
    }

    /// Keeps the stream entries not yet in `entries` in `tail`, where reads find them (it must
    /// be empty: the database was opened, and so indexed, just before).
    pub(crate) fn with_tail(mut self, tail: Arc<Tail>) -> Writer {
        self.state.seq.tail = tail;
        self
    }

    /// Records each commit's time and messages in `metrics`.
    pub(crate) fn with_commit_metrics(mut self, metrics: Option<CommitMetrics>) -> Writer {
        self.state.commit_metrics = metrics;
        self
    }

    /// The thread's body: runs until closed or until every sender is gone.
    pub(crate) fn run(self, alive: Arc<AtomicBool>) {
        let Writer { conn, mut state } = self;
        let mut stmts = Statements::new(&conn);
        // Declared last, dropped first: the writer is marked gone before its connection closes.
        let _guard = AliveGuard(alive);
        let mut next_maintenance = Instant::now();
        loop {
            // After any commit, a batch's or maintenance's, and while idle: once the checkpoint
            // thread's pass is done, finish it, so that the next commit starts the log over.
            let mut wait = next_maintenance.saturating_duration_since(Instant::now());
            if let Some(c) = &state.checkpointer
                && c.tend(&conn)
            {
                wait = wait.min(CHECKPOINT_POLL);
            }
            if let Some(due) = state.index_wait() {
                wait = wait.min(due);
            }
            let first = match state.jobs.recv_timeout(wait) {
                Ok(job) => job,
                Err(RecvTimeoutError::Timeout) => {
                    state.index_if_due(&conn);
                    if Instant::now() >= next_maintenance {
                        next_maintenance = state.maintenance(&conn);
                    }
                    continue;
                }
                // Dropped without close: everything answered is committed; SQLite closes cleanly.
                Err(RecvTimeoutError::Disconnected) => return,
            };
            let mut batch = vec![first];
            state.take_queued(&mut batch);
            state.gather(&mut batch);
            state.wait_for_more(&mut batch);
            if let Some(reply) = state.run_batch(&mut stmts, batch) {
                state.index_all(&conn);
                if let Some(mut c) = state.checkpointer.take() {
                    c.stop();
                }
                checkpoint(&conn);
                let _ = reply.send(());
                return;
            }
            state.index_if_due(&conn);
            if Instant::now() >= next_maintenance {
                next_maintenance = state.maintenance(&conn);
            }
        }
    }
}

/// The last checkpoint, on close: the log is copied into the database and emptied.
fn checkpoint(conn: &Connection) {
    let r = conn.query_row("PRAGMA wal_checkpoint(TRUNCATE)", [], |r| {
        r.get::<_, i64>(0)
    });
    match r {
        Ok(0) => {}
        Ok(_) => tracing::warn!("WAL checkpoint on close was blocked by a reader"),
        Err(e) => tracing::warn!(error = %e, "WAL checkpoint on close failed"),
    }
}
