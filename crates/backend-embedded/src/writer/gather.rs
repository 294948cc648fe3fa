//! How a batch grows before it is committed: jobs arriving in a burst right behind it join it,
//! and with a commit delay a busy writer's batch waits for more.

use super::{Job, WriterState};
use std::time::{Duration, Instant};

/// How soon after the last job the next must come to join the same commit (see
/// [`WriterState::gather`]).
const GATHER_GAP: Duration = Duration::from_micros(40);

/// The most [`WriterState::gather`] adds to a commit's latency.
const GATHER_MAX: Duration = Duration::from_micros(300);

impl WriterState {
    /// Takes jobs that arrive in a burst right behind the batch: while the next job comes within
    /// [`GATHER_GAP`] of the last (up to [`GATHER_MAX`] in all), it joins this commit instead of
    /// waiting a whole commit for the next one. A pipelining connection's publishes arrive a few
    /// microseconds apart as its answers come back; without this, the first of them was committed
    /// alone (a whole fsync) while the rest queued behind it.
    pub(super) fn gather(&self, batch: &mut Vec<Job>) {
        self.take_more(batch, Instant::now() + GATHER_MAX, GATHER_GAP);
    }

    /// With a commit delay, a batch of two or more jobs (the writer is busy: others are coming)
    /// waits up to the delay for more, so one commit (its page writes and fsync) carries more
    /// messages. A lone job is committed at once: a quiet node adds no latency.
    pub(super) fn wait_for_more(&self, batch: &mut Vec<Job>) {
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
}
