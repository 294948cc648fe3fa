//! Running one batch: every job in one transaction (each write in its own savepoint, runs of
//! appends together), one commit, then publication in seq order, then the answers.

use super::txn::WriteTxn;
use super::{Job, WriterState};
use crate::append::{AppendReply, Head, Outcome, append_run, finish_heads, in_savepoint};
use crate::error::{DbResultExt, internal};
use crate::messages::Statements;
use std::collections::HashMap;
use std::time::Instant;
use switchboard_core::backend::BackendError;
use switchboard_proto::Conv;
use tokio::sync::oneshot;

/// Above this many cached conversation heads the cache is emptied (it refills from the database).
const HEAD_CACHE_MAX: usize = 200_000;

impl WriterState {
    /// Runs one batch in one transaction with the writer's statements; returns the close
    /// request if the batch held one.
    pub(super) fn run_batch(
        &mut self,
        stmts: &mut Statements<'_>,
        batch: Vec<Job>,
    ) -> Option<oneshot::Sender<()>> {
        if self.seq.heads.len() > HEAD_CACHE_MAX {
            self.seq.heads.clear();
        }
        let mut outcomes: Vec<Outcome> = Vec::with_capacity(batch.len());
        let mut close = None;
        let mut overlay: HashMap<Conv, u64> = HashMap::new();
        // The stream entries of the batch's messages, for the tail once committed.
        let mut fresh = Vec::new();
        let began = Instant::now();

        let batch_error = match WriteTxn::begin(stmts) {
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
                                    stmts,
                                    &mut self.seq,
                                    &mut overlay,
                                    run,
                                    &mut outcomes,
                                    &mut fresh,
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
                    finish_heads(stmts, &overlay, &self.seq.heads)
                        .and_then(|()| tx.commit(stmts).ctx("committing"))
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
            // Before any answer or delivery: whoever learns of a message can read it.
            self.indexing.committed(&fresh);
            self.seq.tail.add(&fresh);
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
        }
        // Completions first (a publishing connection's answer then leaves before the fan-out
        // reaches its own copy), then the stored messages in seq order, then the other answers.
        let mut published = Vec::new();
        if batch_error.is_none() {
            for outcome in &outcomes {
                if let Outcome::Append(_, Ok(appended)) = outcome {
                    published.extend(appended.stored.iter().cloned());
                }
            }
        }
        let answer = |r: Result<_, BackendError>| match &batch_error {
            Some(e) => Err(e.clone()),
            None => r,
        };
        let mut rest = Vec::with_capacity(outcomes.len());
        for outcome in outcomes {
            match outcome {
                Outcome::Append(reply @ AppendReply::Then(_), r) => {
                    // A completion runs the caller's code on this thread (a connection's answer
                    // write): a panic there must not stop the writer, nor the fan-out below.
                    let r = answer(r);
                    let sent =
                        std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| reply.send(r)));
                    if sent.is_err() {
                        tracing::error!("an append's completion panicked on the writer thread");
                    }
                }
                other => rest.push(other),
            }
        }
        self.sink.deliver_all(published);
        for outcome in rest {
            match outcome {
                Outcome::Append(reply, r) => reply.send(answer(r)),
                Outcome::Write(w) => w.finish(batch_error.clone()),
            }
        }
        close
    }
}
