//! The writer thread: the only code that writes to the database.
//!
//! It owns one connection and takes jobs from a channel. It drains every pending job (up to
//! `max_batch`), runs them in one transaction so that a failing job does not undo the others (each
//! write in its own SAVEPOINT; consecutive appends together, undone and replayed one by one if one
//! fails: see `append_run`), and commits once: one fsync for the whole batch (group commit). Only
//! after the commit does it publish the stored messages to the sink, in seq order, and then answer
//! the jobs. So an `append` returns once its message is durable, and publication order is seq
//! order, because one thread assigns the seqs, commits and publishes.

use crate::append::{Head, Outcome, Sequencer, append_run, finish_heads, in_savepoint};
use crate::cache::StoredConvs;
use crate::checkpointer::Checkpointer;
use crate::error::{DbResultExt, internal, now_ms};
use crate::messages::MAINTENANCE_CHUNK;
use crate::messages::Statements;
use rusqlite::{Connection, TransactionBehavior, params};
use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{Receiver, RecvTimeoutError};
use std::time::{Duration, Instant};
use switchboard_core::backend::{AppendRequest, Appended, BackendError, BusSink};
use switchboard_core::metrics::CommitMetrics;
use switchboard_proto::Conv;
use tokio::sync::oneshot;

/// How often the writer deletes expired history, sessions and idempotency keys.
const MAINTENANCE_INTERVAL: Duration = Duration::from_secs(60);

/// Idempotency keys are kept at least this long (7 days), or as long as history when the age
/// limit is longer. A retry is answered with the original receipt within this window.
pub(crate) const IDEMPOTENCY_MIN_RETENTION_MS: u64 = 7 * 24 * 3600 * 1000;

/// Above this many cached conversation heads the cache is emptied (it refills from the database).
const HEAD_CACHE_MAX: usize = 200_000;

/// A write other than an append: runs inside a savepoint, is answered after the commit.
pub(crate) trait WriteJob: Send {
    /// Runs the write; `true` if it succeeded (its savepoint is then kept).
    fn run(&mut self, conn: &Connection) -> bool;
    /// Answers the caller: with the commit's error if the batch failed, else the write's result.
    fn finish(self: Box<Self>, batch_error: Option<BackendError>);
}

/// A [`WriteJob`] made of a closure and the channel for its answer.
pub(crate) struct TypedJob<T, F> {
    f: Option<F>,
    result: Option<Result<T, BackendError>>,
    reply: oneshot::Sender<Result<T, BackendError>>,
}

impl<T, F> TypedJob<T, F>
where
    T: Send + 'static,
    F: FnOnce(&Connection) -> Result<T, BackendError> + Send + 'static,
{
    /// Wraps `f`; its answer goes to `reply`.
    pub(crate) fn boxed(f: F, reply: oneshot::Sender<Result<T, BackendError>>) -> Box<Self> {
        Box::new(TypedJob {
            f: Some(f),
            result: None,
            reply,
        })
    }
}

impl<T, F> WriteJob for TypedJob<T, F>
where
    T: Send + 'static,
    F: FnOnce(&Connection) -> Result<T, BackendError> + Send + 'static,
{
    fn run(&mut self, conn: &Connection) -> bool {
        let Some(f) = self.f.take() else {
            return false;
        };
        let r = f(conn);
        let ok = r.is_ok();
        self.result = Some(r);
        ok
    }

    fn finish(self: Box<Self>, batch_error: Option<BackendError>) {
        let answer = match (batch_error, self.result) {
            (Some(e), _) => Err(e),
            (None, Some(r)) => r,
            (None, None) => Err(BackendError::Internal("write job was not run".into())),
        };
        let _ = self.reply.send(answer);
    }
}

/// What the writer thread is asked to do.
pub(crate) enum Job {
    /// Store and publish a message.
    Append {
        /// The message.
        request: AppendRequest,
        /// Where the answer goes.
        reply: oneshot::Sender<Result<Appended, BackendError>>,
    },
    /// Any other write.
    Write(Box<dyn WriteJob>),
    /// Finish pending jobs, checkpoint the WAL and stop.
    Close {
        /// Answered when the writer is done.
        reply: oneshot::Sender<()>,
    },
}

/// How often an idle writer looks whether the checkpoint thread's pass is done (only while one
/// is under way), so that it finishes the checkpoint without waiting for the next write.
const CHECKPOINT_POLL: Duration = Duration::from_millis(20);

/// How soon after the last job the next must come to join the same commit (see
/// [`Writer::gather`]).
const GATHER_GAP: Duration = Duration::from_micros(40);

/// The most [`Writer::gather`] adds to a commit's latency.
const GATHER_MAX: Duration = Duration::from_micros(300);

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
}

/// Marks the writer as gone when its thread ends, however it ends.
struct AliveGuard(Arc<AtomicBool>);

impl Drop for AliveGuard {
    fn drop(&mut self) {
        self.0.store(false, Ordering::SeqCst);
    }
}

/// The writer thread's state.
pub(crate) struct Writer {
    conn: Connection,
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
        Ok(Writer {
            conn,
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
            },
            stored: None,
            checkpointer: None,
            commit_metrics: None,
        })
    }

    /// Lets `checkpointer` run the checkpoints; the writer stops it before its own last
    /// checkpoint on close.
    pub(crate) fn with_checkpointer(mut self, checkpointer: Checkpointer) -> Writer {
        self.checkpointer = Some(checkpointer);
        self
    }

    /// Keeps `stored` complete: conversations are added before their messages are committed.
    pub(crate) fn with_stored(mut self, stored: Arc<StoredConvs>) -> Writer {
        self.stored = Some(stored);
        self
    }

    /// Records each commit's time and messages in `metrics`.
    pub(crate) fn with_commit_metrics(mut self, metrics: Option<CommitMetrics>) -> Writer {
        self.commit_metrics = metrics;
        self
    }

    /// The thread's body: runs until closed or until every sender is gone.
    pub(crate) fn run(mut self, alive: Arc<AtomicBool>) {
        let _guard = AliveGuard(alive);
        let mut next_maintenance = Instant::now();
        loop {
            // After any commit, a batch's or maintenance's, and while idle: once the checkpoint
            // thread's pass is done, finish it, so that the next commit starts the log over.
            let mut wait = next_maintenance.saturating_duration_since(Instant::now());
            if let Some(c) = &self.checkpointer
                && c.tend(&self.conn)
            {
                wait = wait.min(CHECKPOINT_POLL);
            }
            let first = match self.jobs.recv_timeout(wait) {
                Ok(job) => job,
                Err(RecvTimeoutError::Timeout) => {
                    if Instant::now() >= next_maintenance {
                        next_maintenance = self.maintenance();
                    }
                    continue;
                }
                // Dropped without close: everything answered is committed; SQLite closes cleanly.
                Err(RecvTimeoutError::Disconnected) => return,
            };
            let mut batch = vec![first];
            while batch.len() < self.limits.max_batch
                && !matches!(batch.last(), Some(Job::Close { .. }))
            {
                match self.jobs.try_recv() {
                    Ok(job) => batch.push(job),
                    Err(_) => break,
                }
            }
            self.gather(&mut batch);
            self.wait_for_more(&mut batch);
            if let Some(reply) = self.run_batch(batch) {
                if let Some(mut c) = self.checkpointer.take() {
                    c.stop();
                }
                self.checkpoint();
                let _ = reply.send(());
                return;
            }
            if Instant::now() >= next_maintenance {
                next_maintenance = self.maintenance();
            }
        }
    }

    /// Takes jobs that arrive in a burst right behind the batch: while the next job comes within
    /// [`GATHER_GAP`] of the last (up to [`GATHER_MAX`] in all), it joins this commit instead of
    /// waiting a whole commit for the next one. A pipelining connection's publishes arrive a few
    /// microseconds apart as its answers come back; without this, the first of them was committed
    /// alone (a whole fsync) while the rest queued behind it.
    fn gather(&self, batch: &mut Vec<Job>) {
        self.take_more(batch, Instant::now() + GATHER_MAX, GATHER_GAP);
    }

    /// With a commit delay, a batch of two or more jobs (the writer is busy: others are coming)
    /// waits up to the delay for more, so one commit (its page writes and fsync) carries more
    /// messages. A lone job is committed at once: a quiet node adds no latency.
    fn wait_for_more(&self, batch: &mut Vec<Job>) {
        let delay = self.limits.commit_delay;
        if delay.is_zero() || batch.len() < 2 {
            return;
        }
        self.take_more(batch, Instant::now() + delay, Duration::MAX);
    }

    /// Adds jobs to the batch until `until`, the batch is full or closing, or no job came for
    /// `gap`.
    fn take_more(&self, batch: &mut Vec<Job>, until: Instant, gap: Duration) {
        while batch.len() < self.limits.max_batch
            && !matches!(batch.last(), Some(Job::Close { .. }))
        {
            let left = until.saturating_duration_since(Instant::now()).min(gap);
            if left.is_zero() {
                return;
            }
            match self.jobs.recv_timeout(left) {
                Ok(job) => batch.push(job),
                Err(_) => return,
            }
        }
    }

    /// Runs one batch in one transaction; returns the close request if the batch held one.
    fn run_batch(&mut self, batch: Vec<Job>) -> Option<oneshot::Sender<()>> {
        if self.seq.heads.len() > HEAD_CACHE_MAX {
            self.seq.heads.clear();
        }
        let mut outcomes: Vec<Outcome> = Vec::with_capacity(batch.len());
        let mut close = None;
        let mut overlay: HashMap<Conv, u64> = HashMap::new();
        let began = Instant::now();

        let batch_error = match self
            .conn
            .transaction_with_behavior(TransactionBehavior::Immediate)
        {
            Err(e) => {
                // Nothing ran: fail every job with the reason.
                let err = internal("beginning a transaction", e);
                for job in batch {
                    match job {
                        Job::Append { reply, .. } => {
                            outcomes.push(Outcome::Append(reply, Err(err.clone())))
                        }
                        Job::Write(w) => outcomes.push(Outcome::Write(w)),
                        Job::Close { reply } => close = Some(reply),
                    }
                }
                Some(err)
            }
            Ok(tx) => {
                {
                    let mut stmts = Statements::new(&tx);
                    let mut jobs = batch.into_iter().peekable();
                    while let Some(job) = jobs.next() {
                        if close.is_some() {
                            // Sent after close began: dropping the job answers it `Unavailable`.
                            continue;
                        }
                        match job {
                            Job::Append { request, reply } => {
                                // This append and those queued right after it, in one savepoint.
                                let mut run = vec![(request, reply)];
                                while let Some(Job::Append { .. }) = jobs.peek() {
                                    if let Some(Job::Append { request, reply }) = jobs.next() {
                                        run.push((request, reply));
                                    }
                                }
                                append_run(
                                    &tx,
                                    &mut stmts,
                                    &mut self.seq,
                                    &mut overlay,
                                    run,
                                    &mut outcomes,
                                );
                            }
                            Job::Write(mut w) => {
                                let _ = in_savepoint(&tx, |conn| {
                                    if w.run(conn) {
                                        Ok(())
                                    } else {
                                        Err(BackendError::Internal(String::new()))
                                    }
                                });
                                outcomes.push(Outcome::Write(w));
                            }
                            Job::Close { reply } => close = Some(reply),
                        }
                    }
                }
                if tx.is_autocommit() {
                    // The database rolled the transaction back (see `in_savepoint`): writing
                    // the heads now would commit them alone, ahead of messages that are gone.
                    Some(BackendError::Unavailable(
                        "the batch's transaction was rolled back by the database".into(),
                    ))
                } else {
                    // Before the commit: a reader must never find the messages stored and the
                    // conversation missing from the set.
                    if let Some(stored) = &self.stored {
                        stored.add(overlay.keys());
                    }
                    let keys_from = now_ms().saturating_sub(self.seq.key_retention_ms);
                    finish_heads(
                        &tx,
                        &overlay,
                        &self.seq.heads,
                        self.limits.history_max_messages,
                        keys_from,
                    )
                    .and_then(|spilled| {
                        // Set before the commit is known: a lookup too many is harmless.
                        self.seq.spilled_keys |= spilled;
                        tx.commit().ctx("committing")
                    })
                    .err()
                }
            }
        };

        if batch_error.is_some() {
            // The database holds none of this batch; forget cached heads to be safe.
            self.seq.heads.clear();
        } else {
            // Committed: every conversation of the batch now has its `convs` row.
            let committed = overlay.into_iter().map(|(conv, seq)| {
                (
                    conv,
                    Head {
                        seq,
                        recorded: true,
                    },
                )
            });
            self.seq.heads.extend(committed);
            if let Some(metrics) = &self.commit_metrics {
                metrics.seconds.observe(began.elapsed().as_secs_f64());
                let (appends, messages) = outcomes.iter().fold((0, 0), |(a, n), o| match o {
                    Outcome::Append(_, Ok(appended)) => (a + 1, n + appended.stored.len()),
                    _ => (a, n),
                });
                // Commits of other writes alone (users, rooms, tokens) are not message commits.
                if appends > 0 {
                    metrics.messages.observe(messages as f64);
                }
            }
            for outcome in &outcomes {
                if let Outcome::Append(_, Ok(appended)) = outcome {
                    for m in &appended.stored {
                        self.sink.deliver(m.clone());
                    }
                }
            }
        }
        for outcome in outcomes {
            match outcome {
                Outcome::Append(reply, r) => {
                    let _ = reply.send(match &batch_error {
                        Some(e) => Err(e.clone()),
                        None => r,
                    });
                }
                Outcome::Write(w) => w.finish(batch_error.clone()),
            }
        }
        close
    }

    /// Deletes expired history, sessions and idempotency keys, a chunk at a time; returns when to
    /// run next (soon if a chunk was full).
    fn maintenance(&mut self) -> Instant {
        let done = maintenance(&mut self.conn, self.limits.history_max_age_ms, now_ms());
        // The pass may have moved keys there, or expired the last of them. On an error, keep
        // looking there.
        self.seq.spilled_keys = crate::messages::has_spilled_keys(&self.conn).unwrap_or(true);
        match done {
            Ok(true) => Instant::now() + Duration::from_millis(100),
            Ok(false) => Instant::now() + MAINTENANCE_INTERVAL,
            Err(e) => {
                tracing::warn!(error = %e, "embedded backend maintenance failed");
                Instant::now() + MAINTENANCE_INTERVAL
            }
        }
    }

    fn checkpoint(&self) {
        let r = self
            .conn
            .query_row("PRAGMA wal_checkpoint(TRUNCATE)", [], |r| {
                r.get::<_, i64>(0)
            });
        match r {
            Ok(0) => {}
            Ok(_) => tracing::warn!("WAL checkpoint on close was blocked by a reader"),
            Err(e) => tracing::warn!(error = %e, "WAL checkpoint on close failed"),
        }
    }
}

/// One maintenance pass in its own transaction. Returns `true` if a chunk was full (more to do).
pub(crate) fn maintenance(
    conn: &mut Connection,
    history_max_age_ms: u64,
    now: u64,
) -> Result<bool, BackendError> {
    let tx = conn
        .transaction_with_behavior(TransactionBehavior::Immediate)
        .ctx("beginning maintenance")?;
    let mut more = false;
    let keys_cutoff = now.saturating_sub(IDEMPOTENCY_MIN_RETENTION_MS.max(history_max_age_ms));
    if history_max_age_ms > 0 {
        let cutoff = now.saturating_sub(history_max_age_ms);
        more |= crate::messages::trim_age(&tx, cutoff, keys_cutoff)?;
    }
    more |= crate::messages::expire_keys(&tx, keys_cutoff)?;
    let n = tx
        .execute(
            "DELETE FROM sessions WHERE token_hash IN
               (SELECT token_hash FROM sessions WHERE expires_at < ?1 LIMIT ?2)",
            params![now as i64, MAINTENANCE_CHUNK],
        )
        .ctx("deleting expired sessions")?;
    more |= n as i64 >= MAINTENANCE_CHUNK;
    tx.commit().ctx("committing maintenance")?;
    Ok(more)
}
