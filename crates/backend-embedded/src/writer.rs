//! The writer thread: the only code that writes to the database.
//!
//! It owns one connection and takes jobs from a channel. It drains every pending job (up to
//! `max_batch`), runs them in one transaction, each inside its own SAVEPOINT so that a failing job
//! does not undo the others, and commits once: one fsync for the whole batch (group commit). Only
//! after the commit does it publish the stored messages to the sink, in seq order, and then answer
//! the jobs. So an `append` returns once its message is durable, and publication order is seq
//! order, because one thread assigns the seqs, commits and publishes.

use crate::cache::StoredConvs;
use crate::error::{DbResultExt, internal, now_ms};
use rusqlite::{Connection, OptionalExtension, TransactionBehavior, params};
use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{Receiver, RecvTimeoutError};
use std::time::{Duration, Instant};
use switchboard_core::backend::{AppendRequest, Appended, BackendError, BusSink, Receipt};
use switchboard_core::metrics::CommitMetrics;
use switchboard_proto::{Conv, Message};
use tokio::sync::oneshot;

/// How often the writer deletes expired history, sessions and idempotency keys.
const MAINTENANCE_INTERVAL: Duration = Duration::from_secs(60);

/// Rows deleted per maintenance transaction, so that a large backlog never stalls appends.
const MAINTENANCE_CHUNK: i64 = 10_000;

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

/// A conversation's committed head as the writer caches it.
#[derive(Debug, Clone, Copy)]
struct Head {
    seq: u64,
    /// The conversation's `convs` row is committed (rows are never deleted): the batch need not
    /// record the conversation again (see `finish_heads`).
    recorded: bool,
}

/// Sequencing state that lives across batches.
struct Sequencer {
    /// Committed heads of recently used conversations.
    heads: HashMap<Conv, Head>,
    /// The last `ts` given out: timestamps never go backwards, so messages and idempotency keys
    /// are stored in time order and age-based trimming removes a prefix of each table (by `id`).
    last_ts: u64,
}

impl Sequencer {
    fn next_ts(&mut self) -> u64 {
        self.last_ts = now_ms().max(self.last_ts);
        self.last_ts
    }

    /// The head of `conv` as this batch sees it: this batch's appends, else the committed head.
    fn head(
        &mut self,
        conn: &Connection,
        overlay: &HashMap<Conv, u64>,
        conv: &Conv,
    ) -> Result<u64, BackendError> {
        if let Some(h) = overlay.get(conv) {
            return Ok(*h);
        }
        if let Some(h) = self.heads.get(conv) {
            return Ok(h.seq);
        }
        // Outside the overlay the database holds only committed data for this conversation.
        let (row, newest): (Option<i64>, Option<i64>) = conn
            .prepare_cached(
                "SELECT (SELECT head FROM convs WHERE conv = ?1),
                        (SELECT max(seq) FROM messages WHERE conv = ?1)",
            )
            .and_then(|mut s| s.query_row([conv.as_str()], |r| Ok((r.get(0)?, r.get(1)?))))
            .ctx("loading a conversation head")?;
        let seq = row.max(newest).map_or(0, |h| u64::try_from(h).unwrap_or(0));
        let recorded = row.is_some();
        self.heads.insert(conv.clone(), Head { seq, recorded });
        Ok(seq)
    }
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
            },
            stored: None,
            commit_metrics: None,
        })
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
            let wait = next_maintenance.saturating_duration_since(Instant::now());
            let first = match self.jobs.recv_timeout(wait) {
                Ok(job) => job,
                Err(RecvTimeoutError::Timeout) => {
                    next_maintenance = self.maintenance();
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
            Ok(mut tx) => {
                for job in batch {
                    if close.is_some() {
                        // Sent after close began: dropping the job answers it `Unavailable`.
                        continue;
                    }
                    match job {
                        Job::Append { request, reply } => {
                            let r = in_savepoint(&mut tx, |conn| {
                                append_one(conn, &mut self.seq, &overlay, &request)
                            });
                            let r = r.map(|(appended, heads)| {
                                overlay.extend(heads);
                                appended
                            });
                            outcomes.push(Outcome::Append(reply, r));
                        }
                        Job::Write(mut w) => {
                            let _ = in_savepoint(&mut tx, |conn| {
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
                    finish_heads(
                        &tx,
                        &overlay,
                        &self.seq.heads,
                        self.limits.history_max_messages,
                    )
                    .and_then(|()| tx.commit().ctx("committing"))
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
        match maintenance(&mut self.conn, self.limits.history_max_age_ms, now_ms()) {
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

/// A job that ran, waiting for the commit to be answered.
enum Outcome {
    Append(
        oneshot::Sender<Result<Appended, BackendError>>,
        Result<Appended, BackendError>,
    ),
    Write(Box<dyn WriteJob>),
}

/// Runs `f` inside a savepoint of `tx`: kept on success, rolled back on failure.
///
/// The savepoint statements are prepared once and cached (rusqlite's `Transaction::savepoint`
/// parses its SQL anew each time: two parses per job, ~3% of the writer thread's CPU).
fn in_savepoint<T>(
    tx: &mut rusqlite::Transaction<'_>,
    f: impl FnOnce(&Connection) -> Result<T, BackendError>,
) -> Result<T, BackendError> {
    let conn: &Connection = tx;
    // SQLite rolls the whole transaction back by itself on some errors (disk full, I/O error,
    // out of memory). A SAVEPOINT outside a transaction would start one of its own, and RELEASE
    // would commit this job alone while the batch is answered as failed. Refuse instead: the
    // batch fails as a whole, as the database already says it did.
    if conn.is_autocommit() {
        return Err(BackendError::Unavailable(
            "the batch's transaction was rolled back by the database".into(),
        ));
    }
    let run = |sql: &str| conn.prepare_cached(sql).and_then(|mut s| s.execute([]));
    run("SAVEPOINT sb_job").ctx("opening a savepoint")?;
    // As rusqlite's `Savepoint`: kept only if it releases; anything else undoes the job.
    let result = f(conn).and_then(|r| {
        run("RELEASE sb_job")
            .ctx("releasing a savepoint")
            .map(|_| r)
    });
    if result.is_err() {
        // Undo the job's changes, then end the savepoint; the transaction goes on.
        let undone = run("ROLLBACK TO sb_job").and_then(|_| run("RELEASE sb_job"));
        if let Err(u) = undone {
            tracing::error!(error = %u, "rolling back a failed job's savepoint failed");
        }
    }
    result
}

/// Appends one request (and its copy); returns the answer and the new heads to publish into the
/// batch's overlay once the savepoint is kept.
fn append_one(
    conn: &Connection,
    seq: &mut Sequencer,
    overlay: &HashMap<Conv, u64>,
    req: &AppendRequest,
) -> Result<(Appended, Vec<(Conv, u64)>), BackendError> {
    let earlier = match &req.client_msg_id {
        Some(cmid) => idempotent_receipt(conn, &req.idempotency_owner, cmid)?,
        None => None,
    };
    if let Some(receipt) = earlier {
        let answer = Appended {
            receipt,
            stored: Vec::new(),
        };
        return Ok((answer, Vec::new()));
    }
    let ts = seq.next_ts();
    let message_id = switchboard_proto::ids::new_id("m");
    let mut heads: Vec<(Conv, u64)> = Vec::with_capacity(2);
    let mut stored = Vec::with_capacity(2);
    for conv in std::iter::once(&req.conv).chain(req.copy_to.as_ref()) {
        let head = match heads.iter().rev().find(|(c, _)| c == conv) {
            Some((_, h)) => *h,
            None => seq.head(conn, overlay, conv)?,
        };
        let message = Message {
            conv: conv.clone(),
            seq: head + 1,
            message_id: message_id.clone(),
            from: req.from.clone(),
            to: req.to.clone(),
            ts,
            client_msg_id: req.client_msg_id.clone(),
            body: req.body.clone(),
        };
        insert_message(conn, &message)?;
        heads.push((conv.clone(), message.seq));
        stored.push(Arc::new(message));
    }
    let receipt = Receipt {
        conv: req.conv.clone(),
        seq: stored[0].seq,
        message_id,
        ts,
    };
    if let Some(cmid) = &req.client_msg_id {
        conn.prepare_cached(
            "INSERT INTO idempotency (owner, client_msg_id, conv, seq, message_id, ts)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
        )
        .and_then(|mut s| {
            s.execute(params![
                req.idempotency_owner,
                cmid,
                receipt.conv.as_str(),
                receipt.seq as i64,
                receipt.message_id,
                receipt.ts as i64
            ])
        })
        .ctx("storing an idempotency key")?;
    }
    Ok((Appended { receipt, stored }, heads))
}

fn idempotent_receipt(
    conn: &Connection,
    owner: &str,
    cmid: &str,
) -> Result<Option<Receipt>, BackendError> {
    let row: Option<(String, i64, String, i64)> = conn
        .prepare_cached(
            "SELECT conv, seq, message_id, ts FROM idempotency
             WHERE owner = ?1 AND client_msg_id = ?2",
        )
        .and_then(|mut s| {
            s.query_row([owner, cmid], |r| {
                Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?))
            })
            .optional()
        })
        .ctx("reading an idempotency key")?;
    let Some((conv, seq, message_id, ts)) = row else {
        return Ok(None);
    };
    let conv = Conv::parse(&conv).ok_or_else(|| {
        BackendError::Internal(format!("idempotency key names a bad conversation {conv:?}"))
    })?;
    Ok(Some(Receipt {
        conv,
        seq: u64::try_from(seq).unwrap_or(0),
        message_id,
        ts: u64::try_from(ts).unwrap_or(0),
    }))
}

fn insert_message(conn: &Connection, m: &Message) -> Result<(), BackendError> {
    conn.prepare_cached(
        "INSERT INTO messages (conv, seq, message_id, from_user, to_user, ts, client_msg_id, body)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
    )
    .and_then(|mut s| {
        s.execute(params![
            m.conv.as_str(),
            m.seq as i64,
            m.message_id,
            m.from,
            m.to,
            m.ts as i64,
            m.client_msg_id,
            m.body.get()
        ])
    })
    .ctx("inserting a message")?;
    Ok(())
}

/// Records the batch's new conversations and trims each touched conversation to the count limit.
///
/// A conversation's head is the larger of its `convs` row and its newest stored seq, so an
/// append does not rewrite the row (that was one more random page per message in every commit):
/// the row is written once, with the conversation's first messages, and raised only by the age
/// trim, which can delete a conversation's newest messages. The count trim always keeps the
/// newest message.
///
/// `committed` tells which conversations already have their row: for those the (read-only)
/// insert is skipped, which was two statements per DM.
fn finish_heads(
    conn: &Connection,
    overlay: &HashMap<Conv, u64>,
    committed: &HashMap<Conv, Head>,
    max_messages: u64,
) -> Result<(), BackendError> {
    let mut record = conn
        .prepare_cached(
            "INSERT INTO convs (conv, head) VALUES (?1, ?2) ON CONFLICT (conv) DO NOTHING",
        )
        .ctx("preparing the conversation record")?;
    let mut trim = conn
        .prepare_cached("DELETE FROM messages WHERE conv = ?1 AND seq <= ?2")
        .ctx("preparing the trim")?;
    for (conv, head) in overlay {
        if !committed.get(conv).is_some_and(|h| h.recorded) {
            record
                .execute(params![conv.as_str(), *head as i64])
                .ctx("recording a conversation")?;
        }
        if max_messages > 0 && *head > max_messages {
            trim.execute(params![conv.as_str(), (*head - max_messages) as i64])
                .ctx("trimming history")?;
        }
    }
    Ok(())
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
    if history_max_age_ms > 0 {
        let cutoff = now.saturating_sub(history_max_age_ms) as i64;
        // Rows are in time order, so the expired ones are a prefix: find its end within the
        // first chunk (a filter over the whole table would scan all of it when little expired).
        let last: Option<i64> = tx
            .query_row(
                "SELECT max(id) FROM (SELECT id, ts FROM messages ORDER BY id LIMIT ?2)
                 WHERE ts < ?1",
                params![cutoff, MAINTENANCE_CHUNK],
                |r| r.get(0),
            )
            .ctx("finding old history")?;
        if let Some(last) = last {
            // The head is the larger of the `convs` row and the newest stored seq (see
            // `finish_heads`): raise the rows before the newest messages may go.
            tx.execute(
                "INSERT INTO convs (conv, head)
                 SELECT conv, max(seq) FROM messages WHERE id <= ?1 GROUP BY conv
                 ON CONFLICT (conv) DO UPDATE SET head = max(head, excluded.head)",
                [last],
            )
            .ctx("keeping the heads of old history")?;
            let n = tx
                .execute("DELETE FROM messages WHERE id <= ?1", [last])
                .ctx("deleting old history")?;
            more |= n as i64 >= MAINTENANCE_CHUNK;
        }
    }
    let keys_cutoff = now.saturating_sub(IDEMPOTENCY_MIN_RETENTION_MS.max(history_max_age_ms));
    let n = tx
        .execute(
            // In time order too: the expired keys are a prefix (see the history above).
            "DELETE FROM idempotency WHERE id <=
               (SELECT max(id) FROM (SELECT id, ts FROM idempotency ORDER BY id LIMIT ?2)
                WHERE ts < ?1)",
            params![keys_cutoff as i64, MAINTENANCE_CHUNK],
        )
        .ctx("deleting old idempotency keys")?;
    more |= n as i64 >= MAINTENANCE_CHUNK;
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
