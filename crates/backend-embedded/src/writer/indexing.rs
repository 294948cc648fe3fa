//! The index's steps on the writer thread: when a partition's stream entries go from the tail
//! (memory) into `entries`, and the count limit, applied to what a step wrote.
//!
//! Under load a step is due every `index_cycle / PARTITIONS`, each for the next partition with
//! entries waiting, so that every partition is written about once a cycle: a stream's entries of
//! a whole cycle share its leaf of `entries`, where each used to write the leaf in its own
//! commit. A step is a transaction of its own (the entries need no fsync of their own, but
//! SQLite syncs every commit; a step's is one among many message commits). An idle writer keeps
//! the same pace, a step per interval while entries wait (at a low rate, steps back to back would
//! add a commit per message). On close every partition is written before the last checkpoint;
//! after a crash, opening the database writes what was left (the index module). A partition
//! holding [`PART_FULL`] entries (a busy room) is written after the next batch, and a step
//! writes at most [`STEP_MAX`] entries, those of the oldest rows, so that no step stalls appends
//! for long. More than [`TAIL_MAX`] entries waiting makes a step due after every batch, which
//! bounds the tail's memory while steps succeed; past [`TAIL_REFUSE`] (steps failing) appends
//! are refused.

use super::WriterState;
use crate::error::{DbResultExt, now_ms};
use crate::tail::{Entry, PARTITIONS};
use crate::trimming::DOOMED_BATCH;
use rusqlite::{Connection, Transaction, TransactionBehavior};
use std::time::{Duration, Instant};
use switchboard_core::backend::BackendError;
use switchboard_proto::Conv;

/// Entries in the tail past which a step is due after every batch: 16 bytes each, plus a map
/// entry per conversation (tens of MB at most).
pub(crate) const TAIL_MAX: usize = 500_000;

/// Entries of one partition past which its step is due after the next batch, whatever the
/// cycle: a busy conversation (a room taking thousands of messages a second) would otherwise
/// make its partition's step long enough to stall appends.
pub(crate) const PART_FULL: usize = 1_000;

/// The most entries one step writes (those of the oldest rows; the rest wait for the next).
pub(crate) const STEP_MAX: usize = 2_000;

/// How long the writer waits after a failed step before the next (a full disk, say: without a
/// pause, an idle writer retried a full partition's step thousands of times a second).
pub(crate) const RETRY_PAUSE: Duration = Duration::from_millis(100);

/// Entries in the tail past which appends are refused (`Unavailable`) until steps catch up:
/// only reached when steps keep failing (a full disk, say), so memory stays bounded then too.
pub(crate) const TAIL_REFUSE: usize = 4 * TAIL_MAX;

/// The writer's progress through the partitions.
pub(super) struct Indexing {
    /// Per partition: every entry of a row up to this id is in `entries` (as committed).
    marks: Vec<i64>,
    /// The newest committed message row: a step raises its partition's mark to it.
    committed_id: i64,
    /// The partition the next step starts looking from.
    next: usize,
    /// When the next step is due under load.
    due: Instant,
    /// Time between steps under load.
    interval: Duration,
    /// No step before this (set by a failed step).
    retry_at: Instant,
    /// Rows queued in `doomed` (the trimming module), deleted once there are
    /// [`DOOMED_BATCH`].
    doomed: usize,
}

impl Indexing {
    /// Progress as stored (`marks`), the newest row `committed_id`, the rows queued for
    /// deletion (`doomed`), a step every `cycle / PARTITIONS` under load.
    pub(super) fn new(
        marks: Vec<i64>,
        committed_id: i64,
        doomed: usize,
        cycle: Duration,
    ) -> Indexing {
        let interval = cycle / PARTITIONS as u32;
        Indexing {
            marks,
            committed_id,
            next: 0,
            due: Instant::now() + interval,
            interval,
            retry_at: Instant::now(),
            doomed,
        }
    }

    /// Notes the rows of a batch that committed.
    pub(super) fn committed(&mut self, fresh: &[(Conv, Entry)]) {
        if let Some(newest) = fresh.iter().map(|(_, e)| e.id).max() {
            self.committed_id = self.committed_id.max(newest);
        }
    }
}

impl WriterState {
    /// After a batch (and when an idle writer's wait ends): one step, for a partition holding
    /// [`PART_FULL`] entries, else for the next partition with entries waiting if the interval
    /// is up or the tail is over [`TAIL_MAX`]. Not within [`RETRY_PAUSE`] of a failed step.
    pub(super) fn index_if_due(&mut self, conn: &Connection) {
        let now = Instant::now();
        if now < self.indexing.retry_at {
            return;
        }
        let (fullest, held) = self.seq.tail.fullest();
        let part = if held >= PART_FULL {
            Some(fullest)
        } else if now >= self.indexing.due || self.seq.tail.len() > TAIL_MAX {
            self.indexing.due = now + self.indexing.interval;
            self.next_pending()
        } else {
            None
        };
        if let Some(part) = part
            && let Err(e) = self.index_step(conn, part)
        {
            // The entries stay in the tail; a step after the pause writes them.
            tracing::warn!(error = %e, part, "writing stream entries failed");
            self.indexing.retry_at = now + RETRY_PAUSE;
        }
    }

    /// The newest row whose stream entries are all in `entries`: a partition with entries
    /// waiting is written up to its mark, any other up to the newest committed row (its mark
    /// may be older: a step raises only its own partition's).
    pub(super) fn indexed_everywhere(&self) -> i64 {
        (0..PARTITIONS)
            .map(|p| {
                if self.seq.tail.has_pending(p) {
                    self.indexing.marks[p]
                } else {
                    self.indexing.committed_id
                }
            })
            .min()
            .unwrap_or(self.indexing.committed_id)
    }

    /// How long an idle writer may wait before the next step is due (`None`: nothing waits).
    pub(super) fn index_wait(&self) -> Option<Duration> {
        (self.seq.tail.len() > 0).then(|| {
            self.indexing
                .due
                .max(self.indexing.retry_at)
                .saturating_duration_since(Instant::now())
        })
    }

    /// Every partition with entries waiting (on close).
    pub(super) fn index_all(&mut self, conn: &Connection) {
        for part in 0..PARTITIONS {
            // A step writes at most STEP_MAX: as many as the partition needs.
            while self.seq.tail.has_pending(part) {
                if let Err(e) = self.index_step(conn, part) {
                    // What is left is written by the next open (the index module).
                    tracing::warn!(error = %e, part, "writing stream entries on close failed");
                    break;
                }
            }
        }
        // And the rows the count limit queued (else they wait for a step after the next open).
        if self.indexing.doomed > 0 {
            let deleted = Transaction::new_unchecked(conn, TransactionBehavior::Immediate)
                .ctx("beginning to delete trimmed messages")
                .and_then(|tx| {
                    let spilled = self.delete_doomed(&tx)?;
                    tx.commit().ctx("deleting trimmed messages")?;
                    Ok(spilled)
                });
            match deleted {
                Ok(spilled) => {
                    self.indexing.doomed = 0;
                    self.seq.spilled_keys |= spilled;
                }
                Err(e) => tracing::warn!(error = %e, "deleting trimmed messages on close failed"),
            }
        }
    }

    /// Deletes the rows the count limit queued ([`crate::trimming::delete_doomed`]); returns
    /// whether a key moved to the `idempotency` table.
    fn delete_doomed(&self, conn: &Connection) -> Result<bool, BackendError> {
        let keys_from = now_ms().saturating_sub(self.seq.key_retention_ms);
        crate::trimming::delete_doomed(conn, keys_from)
    }

    /// The next partition with entries waiting, round robin, if any.
    fn next_pending(&mut self) -> Option<usize> {
        let part = (0..PARTITIONS)
            .map(|i| (self.indexing.next + i) % PARTITIONS)
            .find(|p| self.seq.tail.has_pending(*p))?;
        self.indexing.next = (part + 1) % PARTITIONS;
        Some(part)
    }

    /// Writes partition `part`'s waiting entries and raises its mark, trims its conversations
    /// to the count limit, commits, then forgets the entries from the tail.
    fn index_step(&mut self, conn: &Connection, part: usize) -> Result<(), BackendError> {
        let mut pending = self.seq.tail.pending(part);
        if pending.is_empty() {
            return Ok(());
        }
        let began = Instant::now();
        // At most STEP_MAX entries: those of the oldest rows, up to a mark below the newest.
        let mark = if pending.len() > STEP_MAX {
            let mut ids: Vec<i64> = pending.iter().map(|(_, e)| e.id).collect();
            let (_, nth, _) = ids.select_nth_unstable(STEP_MAX - 1);
            let mark = *nth;
            pending.retain(|(_, e)| e.id <= mark);
            mark
        } else {
            self.indexing.committed_id
        };
        let mut marks = self.indexing.marks.clone();
        marks[part] = mark;
        // Unchecked: the writer's connection is shared with the statements it holds (no other
        // transaction is open on it between batches).
        let tx = Transaction::new_unchecked(conn, TransactionBehavior::Immediate)
            .ctx("beginning an index step")?;
        crate::index::write_step(&tx, part, &pending, mark)?;
        let max = self.limits.history_max_messages;
        let mut doomed = self.indexing.doomed;
        if max > 0 {
            // Sorted by conversation then seq: the last of each conversation is its head (or,
            // in a step capped at STEP_MAX, below it: this step trims less, the next the rest).
            for (i, (conv, e)) in pending.iter().enumerate() {
                let head = pending.get(i + 1).is_none_or(|(next, _)| next != conv);
                if head && e.seq > max {
                    doomed += crate::trimming::trim_stream(&tx, conv, e.seq - max, &marks)?;
                }
            }
        }
        // The rows the count limit left, deleted together once enough wait (trimming module).
        let spilled = if doomed >= DOOMED_BATCH {
            doomed = 0;
            self.delete_doomed(&tx)?
        } else {
            false
        };
        tx.commit().ctx("committing an index step")?;
        self.indexing.doomed = doomed;
        self.seq.spilled_keys |= spilled;
        self.seq.tail.indexed(part, mark);
        self.indexing.marks = marks;
        if let Some(metrics) = &self.commit_metrics {
            metrics
                .index_step_seconds
                .observe(began.elapsed().as_secs_f64());
            metrics.index_pending.set(self.seq.tail.len() as i64);
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use crate::tail::{Entry, PARTITIONS, partition};
    use crate::writer::Writer;
    use switchboard_conformance::RecordingSink;
    use switchboard_proto::Conv;

    /// A writer over `dir` whose steps run only when a partition is full or asked for.
    fn writer_without_timed_steps(dir: &std::path::Path) -> Writer {
        let (conn, _) = crate::schema::open_writer(dir).expect("open");
        // The job channel's sender is dropped: the tests drive the state, not the thread.
        let (_, rx) = std::sync::mpsc::channel();
        let limits = crate::writer::WriterLimits {
            index_cycle: std::time::Duration::from_secs(3600),
            ..crate::tests::LIMITS
        };
        Writer::new(conn, rx, RecordingSink::new().as_sink(), limits).expect("writer")
    }

    /// The age limit may delete up to the newest committed row in a partition with nothing
    /// waiting, whatever its stored mark (steps raise only their own partition's mark: a review
    /// found age trimming pinned by idle partitions).
    #[test]
    fn idle_partitions_do_not_hold_back_what_is_indexed_everywhere() {
        let dir = tempfile::tempdir().expect("tempdir");
        let (conn, _) = crate::schema::open_writer(dir.path()).expect("open");
        let (_jobs, rx) = std::sync::mpsc::channel();
        let mut w = Writer::new(
            conn,
            rx,
            RecordingSink::new().as_sink(),
            crate::tests::LIMITS,
        )
        .expect("writer");
        let state = &mut w.state;
        assert_eq!(state.indexed_everywhere(), 0, "a new database");
        let room = Conv::room("r");
        let fresh = [(room.clone(), Entry { seq: 1, id: 7 })];
        state.indexing.committed(&fresh);
        assert_eq!(
            state.indexed_everywhere(),
            7,
            "nothing waits: every row is written"
        );
        state.seq.tail.add(&fresh);
        assert_eq!(
            state.indexed_everywhere(),
            0,
            "row 7 waits in its partition, whose mark is 0"
        );
        state
            .index_step(&w.conn, partition(room.as_str(), PARTITIONS))
            .expect("step");
        assert_eq!(state.indexed_everywhere(), 7);
    }

    /// A busy conversation's partition is written once it holds PART_FULL entries, at most
    /// STEP_MAX of them per step, oldest rows first, its mark at the last row written.
    #[test]
    fn a_full_partition_is_written_at_once_in_capped_steps() {
        use super::{PART_FULL, STEP_MAX};
        let dir = tempfile::tempdir().expect("tempdir");
        let mut w = writer_without_timed_steps(dir.path());
        let room = Conv::room("busy");
        let part = partition(room.as_str(), PARTITIONS);
        let state = &mut w.state;
        let add = |state: &mut super::WriterState, from: u64, n: u64| {
            let fresh = crate::tail::entries_of(&room, from..from + n);
            state.indexing.committed(&fresh);
            state.seq.tail.add(&fresh);
        };
        add(state, 1, PART_FULL as u64 - 1);
        state.index_if_due(&w.conn);
        assert_eq!(
            state.seq.tail.len(),
            PART_FULL - 1,
            "not full, and the cycle not due"
        );
        add(state, PART_FULL as u64, STEP_MAX as u64 + 1);
        state.index_if_due(&w.conn);
        assert_eq!(state.seq.tail.len(), PART_FULL, "one step of STEP_MAX");
        assert_eq!(
            state.indexing.marks[part], STEP_MAX as i64,
            "oldest rows first"
        );
        let written: i64 = w
            .conn
            .query_row("SELECT count(*) FROM entries", [], |r| r.get(0))
            .expect("count");
        assert_eq!(written, STEP_MAX as i64);
        assert_eq!(
            state
                .seq
                .tail
                .entries(&room, None, None)
                .1
                .first()
                .map(|e| e.seq),
            Some(STEP_MAX as u64 + 1)
        );
        state.index_if_due(&w.conn);
        assert_eq!(state.seq.tail.len(), 0, "the rest in the next step");
        assert_eq!(state.indexing.marks[part], (PART_FULL + STEP_MAX) as i64);
    }

    /// Close writes a partition holding more than one step's entries (found by a review: one
    /// capped step per partition left the rest to the next open).
    #[test]
    fn close_writes_a_partition_holding_more_than_one_step() {
        use super::STEP_MAX;
        let dir = tempfile::tempdir().expect("tempdir");
        let mut w = writer_without_timed_steps(dir.path());
        let room = Conv::room("busy");
        let state = &mut w.state;
        let fresh = crate::tail::entries_of(&room, 1..(STEP_MAX as u64 + 501));
        state.indexing.committed(&fresh);
        state.seq.tail.add(&fresh);
        state.index_all(&w.conn);
        let written: i64 = w
            .conn
            .query_row("SELECT count(*) FROM entries", [], |r| r.get(0))
            .expect("count");
        assert_eq!((written, state.seq.tail.len()), (STEP_MAX as i64 + 500, 0));
    }
}
