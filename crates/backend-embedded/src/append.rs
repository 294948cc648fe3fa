//! The writer's append path: sequencing (heads of conversations, timestamps), runs of appends
//! in one transaction, and what a batch records and trims before its commit.

use crate::error::{DbResultExt, now_ms};
use crate::messages::{NewMessage, Statements};
use crate::tail::{Entry, Tail};
use crate::writer::run_cached;
use rusqlite::Connection;
use std::collections::HashMap;
use std::sync::Arc;
use switchboard_core::backend::{AppendRequest, Appended, BackendError, Receipt};
use switchboard_proto::{Conv, Message};
use tokio::sync::oneshot;

/// A conversation's committed head as the writer caches it.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Head {
    pub(crate) seq: u64,
    /// The conversation's `convs` row is committed (rows are never deleted): the batch need not
    /// record the conversation again (see `finish_heads`).
    pub(crate) recorded: bool,
}

/// Sequencing state that lives across batches.
pub(crate) struct Sequencer {
    /// Committed heads of recently used conversations.
    pub(crate) heads: HashMap<Conv, Head>,
    /// The last `ts` given out: timestamps never go backwards, so messages are stored in time
    /// order and age-based trimming removes a prefix of the table (by `id`).
    pub(crate) last_ts: u64,
    /// The `idempotency` table may hold keys (of trimmed messages, or from before version 4):
    /// a key lookup must look there too. Only ever set between maintenance passes.
    pub(crate) spilled_keys: bool,
    /// How long an idempotency key answers (see [`IDEMPOTENCY_MIN_RETENTION_MS`]).
    ///
    /// [`IDEMPOTENCY_MIN_RETENTION_MS`]: crate::writer::IDEMPOTENCY_MIN_RETENTION_MS
    pub(crate) key_retention_ms: u64,
    /// Committed stream entries not yet in `entries` (the tail module): a head read from the
    /// database counts them too.
    pub(crate) tail: Arc<Tail>,
    /// The next message row's id. Given by the writer rather than SQLite, which reuses ids once
    /// the age limit has emptied the table: every id must stay above the index's marks (the
    /// index module), which say which rows' entries are written.
    pub(crate) next_id: i64,
}

impl Sequencer {
    /// A timestamp for the next message: now, or the last one given out if the clock went back.
    pub(crate) fn next_ts(&mut self) -> u64 {
        self.last_ts = now_ms().max(self.last_ts);
        self.last_ts
    }

    /// The head of `conv` as this batch sees it: this batch's appends, else the committed head.
    fn head(
        &mut self,
        stmts: &mut Statements<'_>,
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
        let (row, newest) = stmts.head(conv)?;
        let stored = row.max(newest).map_or(0, |h| u64::try_from(h).unwrap_or(0));
        let seq = self
            .tail
            .bounds(conv)
            .map_or(stored, |(_, last)| last.max(stored));
        let recorded = row.is_some();
        self.heads.insert(conv.clone(), Head { seq, recorded });
        Ok(seq)
    }
}

/// Where an append's answer goes.
pub(crate) enum AppendReply {
    /// To a waiting caller, after the stored messages were published.
    Channel(oneshot::Sender<Result<Appended, BackendError>>),
    /// To a completion run on the writer thread right after the commit, before the stored
    /// messages are published ([`switchboard_core::backend::Broker::append_then`]).
    Then(switchboard_core::backend::AppendDone),
}

impl AppendReply {
    /// Answers with `r`.
    pub(crate) fn send(self, r: Result<Appended, BackendError>) {
        match self {
            AppendReply::Channel(tx) => drop(tx.send(r)),
            AppendReply::Then(done) => done(r),
        }
    }
}

impl From<oneshot::Sender<Result<Appended, BackendError>>> for AppendReply {
    fn from(tx: oneshot::Sender<Result<Appended, BackendError>>) -> Self {
        AppendReply::Channel(tx)
    }
}

/// A job that ran, waiting for the commit to be answered.
pub(crate) enum Outcome {
    /// An append and its result.
    Append(AppendReply, Result<Appended, BackendError>),
    /// Any other write, which holds its result.
    Write(Box<dyn crate::writer::WriteJob>),
}

/// Runs `f` inside a savepoint of `tx`: kept on success, rolled back on failure.
///
/// The savepoint statements are prepared once and cached (rusqlite's `Transaction::savepoint`
/// parses its SQL anew each time: two parses per job, ~3% of the writer thread's CPU).
pub(crate) fn in_savepoint<T>(
    conn: &Connection,
    f: impl FnOnce(&Connection) -> Result<T, BackendError>,
) -> Result<T, BackendError> {
    // SQLite rolls the whole transaction back by itself on some errors (disk full, I/O error,
    // out of memory). A SAVEPOINT outside a transaction would start one of its own, and RELEASE
    // would commit this job alone while the batch is answered as failed. Refuse instead: the
    // batch fails as a whole, as the database already says it did.
    if conn.is_autocommit() {
        return Err(BackendError::Unavailable(
            "the batch's transaction was rolled back by the database".into(),
        ));
    }
    run_cached(conn, "SAVEPOINT sb_job").ctx("opening a savepoint")?;
    // As rusqlite's `Savepoint`: kept only if it releases; anything else undoes the job.
    let result = f(conn).and_then(|r| {
        run_cached(conn, "RELEASE sb_job")
            .ctx("releasing a savepoint")
            .map(|_| r)
    });
    if result.is_err() {
        // Undo the job's changes, then end the savepoint; the transaction goes on.
        let undone =
            run_cached(conn, "ROLLBACK TO sb_job").and_then(|_| run_cached(conn, "RELEASE sb_job"));
        if let Err(u) = undone {
            tracing::error!(error = %u, "rolling back a failed job's savepoint failed");
        }
    }
    result
}

/// Runs consecutive appends together. A savepoint copies each page it first changes (SQLite's
/// sub-journal), so one per append copied the same pages again for every message: the run gets
/// one savepoint, or none when it is the first thing in the transaction (the usual batch is only
/// appends), where rolling the transaction back and beginning again undoes it just as well.
/// If any append fails, the run is undone and each append runs again in a savepoint of its own,
/// so that only the failing one fails, as with any other job.
pub(crate) fn append_run(
    conn: &Connection,
    stmts: &mut Statements<'_>,
    seq: &mut Sequencer,
    overlay: &mut HashMap<Conv, u64>,
    run: Vec<(AppendRequest, AppendReply)>,
    outcomes: &mut Vec<Outcome>,
    fresh: &mut Vec<(Conv, Entry)>,
) {
    let first = outcomes.is_empty();
    let mark = fresh.len();
    let mut undo: Vec<(Conv, Option<u64>)> = Vec::new();
    let together = if first && !conn.is_autocommit() {
        append_all(stmts, seq, overlay, &run, &mut undo, fresh)
    } else {
        in_savepoint(conn, |_| {
            append_all(stmts, seq, overlay, &run, &mut undo, fresh)
        })
    };
    match together {
        Ok(answers) => {
            for ((_, reply), appended) in run.into_iter().zip(answers) {
                outcomes.push(Outcome::Append(reply, Ok(appended)));
            }
        }
        Err(_) => {
            fresh.truncate(mark);
            for (conv, before) in undo.into_iter().rev() {
                match before {
                    Some(h) => overlay.insert(conv, h),
                    None => overlay.remove(&conv),
                };
            }
            if first {
                // Nothing but the run is in the transaction (or the database already rolled it
                // back): undo it whole and begin again. If that fails, the jobs below find no
                // transaction and fail, and so does the batch.
                let restarted = if conn.is_autocommit() {
                    Ok(())
                } else {
                    run_cached(conn, "ROLLBACK")
                }
                .and_then(|()| stmts.begin());
                if let Err(e) = restarted {
                    tracing::error!(error = %e, "undoing a failed run of appends failed");
                }
            }
            for (request, reply) in run {
                let mark = fresh.len();
                let r = in_savepoint(conn, |_| append_one(stmts, seq, overlay, &request, fresh));
                if r.is_err() {
                    fresh.truncate(mark);
                }
                let r = r.map(|(appended, heads)| {
                    overlay.extend(heads);
                    appended
                });
                outcomes.push(Outcome::Append(reply, r));
            }
        }
    }
}

/// Appends every request of a run, publishing each one's heads into `overlay` (and what they
/// replaced into `undo`) so that the next one sees them, and its stream entries into `fresh`
/// (the caller forgets them if the run is undone).
fn append_all(
    stmts: &mut Statements<'_>,
    seq: &mut Sequencer,
    overlay: &mut HashMap<Conv, u64>,
    run: &[(AppendRequest, AppendReply)],
    undo: &mut Vec<(Conv, Option<u64>)>,
    fresh: &mut Vec<(Conv, Entry)>,
) -> Result<Vec<Appended>, BackendError> {
    let mut answers = Vec::with_capacity(run.len());
    for (request, _) in run {
        let (appended, heads) = append_one(stmts, seq, overlay, request, fresh)?;
        for (conv, head) in heads {
            let before = overlay.insert(conv.clone(), head);
            undo.push((conv, before));
        }
        answers.push(appended);
    }
    Ok(answers)
}

/// Appends one request (and its copy): one message row, its entries (one per stream) pushed
/// onto `fresh` for the tail. Returns the answer and the new heads to publish into the batch's
/// overlay once the savepoint is kept.
fn append_one(
    stmts: &mut Statements<'_>,
    seq: &mut Sequencer,
    overlay: &HashMap<Conv, u64>,
    req: &AppendRequest,
    fresh: &mut Vec<(Conv, Entry)>,
) -> Result<(Appended, Vec<(Conv, u64)>), BackendError> {
    if seq.tail.len() > crate::writer::TAIL_REFUSE {
        return Err(BackendError::Unavailable(
            "the stream index is behind (its steps are failing); try again later".into(),
        ));
    }
    if let Some(cmid) = &req.client_msg_id {
        let live_from = now_ms().saturating_sub(seq.key_retention_ms);
        let earlier = stmts.receipt(&req.idempotency_owner, cmid, live_from, seq.spilled_keys)?;
        if let Some(receipt) = earlier {
            let answer = Appended {
                receipt,
                stored: Vec::new(),
            };
            return Ok((answer, Vec::new()));
        }
    }
    let ts = seq.next_ts();
    let message_id = switchboard_proto::ids::new_id("m");
    let mut heads: Vec<(Conv, u64)> = Vec::with_capacity(2);
    let mut stored = Vec::with_capacity(2);
    for conv in std::iter::once(&req.conv).chain(req.copy_to.as_ref()) {
        let head = match heads.iter().rev().find(|(c, _)| c == conv) {
            Some((_, h)) => *h,
            None => seq.head(stmts, overlay, conv)?,
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
            encoded: Default::default(),
        };
        heads.push((conv.clone(), message.seq));
        stored.push(Arc::new(message));
    }
    let id = seq.next_id;
    seq.next_id += 1;
    stmts.insert(
        id,
        NewMessage {
            first: &stored[0],
            copy: stored.get(1).map(|m| (&m.conv, m.seq)),
            key_owner: &req.idempotency_owner,
        },
    )?;
    fresh.extend(
        stored
            .iter()
            .map(|m| (m.conv.clone(), Entry { seq: m.seq, id })),
    );
    let receipt = Receipt {
        conv: req.conv.clone(),
        seq: stored[0].seq,
        message_id,
        ts,
    };
    Ok((Appended { receipt, stored }, heads))
}

/// Records the batch's new conversations.
///
/// A conversation's head is the larger of its `convs` row and its newest entry, so an append
/// does not rewrite the row (that was one more random page per message in every commit): the
/// row is written once, with the conversation's first messages, and raised only by the age
/// trim, which can delete a conversation's newest messages. (The count limit is applied by the
/// index's step, to entries written: see the writer's indexing.)
///
/// `committed` tells which conversations already have their row: for those the (read-only)
/// insert is skipped, which was two statements per DM.
pub(crate) fn finish_heads(
    stmts: &mut Statements<'_>,
    overlay: &HashMap<Conv, u64>,
    committed: &HashMap<Conv, Head>,
) -> Result<(), BackendError> {
    for conv in overlay.keys() {
        if !committed.get(conv).is_some_and(|h| h.recorded) {
            // Head 0: until the batch's entries reach the tail (after the commit), a position
            // must not show a head without its messages.
            stmts.record(conv, 0)?;
        }
    }
    Ok(())
}
