//! How a batch grows before it is committed: jobs arriving in a burst right behind it join it,
//! and with a commit delay a busy writer's batch waits for more, sleeping in slices sized by the
//! rate jobs come at ([`super::arrivals`]) until a slice brings none, when two or more of its
//! jobs come from senders the last commit did not answer ([`super::senders`]).

use super::{Job, WriterState};
use std::time::{Duration, Instant};

/// How soon after the last job the next must come to join the same commit (see
/// [`WriterState::gather`]).
const GATHER_GAP: Duration = Duration::from_micros(40);

/// The most [`WriterState::gather`] adds to a commit's latency.
const GATHER_MAX: Duration = Duration::from_micros(300);

/// A batch of this many jobs is committed without the commit delay: its fsync is shared widely
/// enough already, and the delay would only slow a pipelining connection's round trips.
pub(super) const DELAY_ENOUGH: usize = 64;

impl WriterState {
    /// Takes jobs that arrive in a burst right behind the batch: while the next job comes within
    /// [`GATHER_GAP`] of the last (up to [`GATHER_MAX`] in all), it joins this commit instead of
    /// waiting a whole commit for the next one. A pipelining connection's publishes arrive a few
    /// microseconds apart as its answers come back; without this, the first of them was committed
    /// alone (a whole fsync) while the rest queued behind it.
    pub(super) fn gather(&self, batch: &mut Vec<Job>) {
        self.take_more(batch, Instant::now() + GATHER_MAX, GATHER_GAP);
    }

    /// With a commit delay, a busy batch (two or more jobs, fewer than [`DELAY_ENOUGH`], room
    /// left in the transaction) waits up to the delay for more, in slices, as long as each
    /// slice brings some, so one commit (its page writes and fsync) carries more messages. A
    /// lone job is committed at once (a quiet node adds no latency), and so is a batch that
    /// shares its fsync widely already (64 publishes in flight); a batch nothing joins waits
    /// one slice.
    ///
    /// It waits only if two or more of its jobs are fresh ([`super::senders::Answered`]):
    /// appends of senders the last commit did not answer, or other writes. A sender the last
    /// commit answered sent these jobs in reply, and sends nothing a wait could gather until
    /// they are answered in turn.
    ///
    /// The writer sleeps rather than waiting on the channel: a receiver blocked on it is woken
    /// by every job sent (a futex wake and a context switch each), while jobs sent to a sleeping
    /// writer only queue. Measured at 5,000 DMs/s from 10,000 connections with 1 ms slept whole:
    /// 19% less CPU per DM than no delay, against 12% waiting on the channel (docs/PERFORMANCE.md,
    /// fourteenth and fifteenth rounds).
    pub(super) fn wait_for_more(&mut self, batch: &mut Vec<Job>) {
        let delay = self.limits.commit_delay;
        if delay.is_zero() {
            return; // the rate and the senders serve only the delay
        }
        let busy = batch.len() >= 2 && batch.len() < DELAY_ENOUGH && self.has_room(batch);
        if busy {
            if self.answered.fresh(batch) < 2 {
                if let Some(m) = &self.commit_metrics {
                    m.delay_passes.inc();
                }
            } else {
                self.wait_slices(batch, delay);
                if let Some(m) = &self.commit_metrics {
                    m.delay_waits.inc();
                }
            }
        }
        // The batch as it will be committed, with the jobs that joined during the wait.
        self.answered.remember(batch);
        self.arrivals.count(batch.len());
    }

    /// Takes the jobs already queued, without waiting, while the batch has room.
    pub(super) fn take_queued(&self, batch: &mut Vec<Job>) {
        while self.has_room(batch) {
            match self.jobs.try_recv() {
                Ok(job) => batch.push(job),
                Err(_) => return,
            }
        }
    }

    /// Whether `batch` may take another job: below a transaction's size and not closing.
    fn has_room(&self, batch: &[Job]) -> bool {
        batch.len() < self.limits.max_batch && !matches!(batch.last(), Some(Job::Close { .. }))
    }

    /// The commit delay's wait for a busy batch (see [`WriterState::wait_for_more`], which
    /// checked that it is one): at least one slice.
    fn wait_slices(&self, batch: &mut Vec<Job>, delay: Duration) {
        // Full (for the delay or for the transaction) or closing: commit now.
        let done = |batch: &Vec<Job>| batch.len() >= DELAY_ENOUGH || !self.has_room(batch);
        let until = Instant::now() + delay;
        let slice = self.arrivals.slice(delay);
        loop {
            let left = until.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return;
            }
            std::thread::sleep(left.min(slice));
            let before = batch.len();
            self.take_queued(batch);
            // Nothing came in a slice: the senders wait for these answers (a pipelining
            // connection), or are quiet; waiting longer would only add latency.
            if batch.len() == before || done(batch) {
                return;
            }
        }
    }

    /// Adds jobs to the batch until `until`, the batch is full or closing, or no job came for
    /// `gap`.
    fn take_more(&self, batch: &mut Vec<Job>, until: Instant, gap: Duration) {
        while self.has_room(batch) {
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::writer::arrivals::SLICES;
    use crate::writer::{TypedJob, Writer};
    use std::sync::mpsc;
    use switchboard_conformance::RecordingSink;
    use switchboard_core::backend::BackendError;

    /// A writer (its state driven by the test, not its thread) with `delay` and its job sender.
    fn writer(dir: &std::path::Path, delay: Duration) -> (Writer, mpsc::Sender<Job>) {
        writer_batching(dir, delay, crate::tests::LIMITS.max_batch)
    }

    /// [`writer`], with transactions of at most `max_batch` jobs.
    fn writer_batching(
        dir: &std::path::Path,
        delay: Duration,
        max_batch: usize,
    ) -> (Writer, mpsc::Sender<Job>) {
        let (conn, _) = crate::schema::open_writer(dir).expect("open");
        let (jobs, rx) = mpsc::channel();
        let limits = crate::writer::WriterLimits {
            commit_delay: delay,
            max_batch,
            ..crate::tests::LIMITS
        };
        let w = Writer::new(conn, rx, RecordingSink::new().as_sink(), limits).expect("writer");
        (w, jobs)
    }

    /// A job that does nothing (the tests count jobs, nothing runs them).
    fn job() -> Job {
        let (reply, _) = tokio::sync::oneshot::channel();
        Job::Write(TypedJob::boxed(
            |_: &rusqlite::Connection| -> Result<(), BackendError> { Ok(()) },
            reply,
        ))
    }

    fn batch(n: usize) -> Vec<Job> {
        (0..n).map(|_| job()).collect()
    }

    /// While jobs keep coming, a busy batch takes them, up to the delay.
    #[test]
    fn a_busy_batch_waits_while_jobs_keep_coming() {
        let dir = tempfile::tempdir().expect("tempdir");
        let delay = Duration::from_millis(600);
        let (mut w, jobs) = writer(dir.path(), delay);
        // 20 jobs/s: slices of 150 ms; a job every 30 ms keeps every slice busy.
        w.state.arrivals.per_sec = 20.0;
        let feeder = std::thread::spawn(move || {
            for _ in 0..40 {
                if jobs.send(job()).is_err() {
                    return;
                }
                std::thread::sleep(Duration::from_millis(30));
            }
        });
        let mut b = batch(2);
        let began = Instant::now();
        w.state.wait_for_more(&mut b);
        let waited = began.elapsed();
        assert!(waited >= delay, "the wait ended early, after {waited:?}");
        assert!(waited < delay * 3, "the wait went on, {waited:?}");
        assert!(b.len() >= 2 + 5, "only {} jobs joined", b.len() - 2);
        drop(w);
        feeder.join().expect("feeder");
    }

    /// A slice in which no job came ends the wait: a pipelining connection's burst is not held
    /// for the whole delay while its next publishes wait for these answers.
    #[test]
    fn a_slice_without_jobs_ends_the_wait() {
        let dir = tempfile::tempdir().expect("tempdir");
        let delay = Duration::from_secs(5);
        let (mut w, _jobs) = writer(dir.path(), delay);
        w.state.arrivals.per_sec = 30.0; // slices of 100 ms
        let mut b = batch(3);
        let began = Instant::now();
        w.state.wait_for_more(&mut b);
        let waited = began.elapsed();
        assert!(
            waited >= Duration::from_millis(100),
            "no slice was slept: {waited:?}"
        );
        assert!(
            waited < Duration::from_secs(2),
            "held for the delay: {waited:?}"
        );
        assert_eq!(b.len(), 3);
    }

    /// A lone job, a batch that shares its fsync widely already, and a batch as large as a
    /// transaction may be: no wait.
    #[test]
    fn lone_jobs_and_full_batches_are_not_held() {
        let dir = tempfile::tempdir().expect("tempdir");
        let (mut w, jobs) = writer(dir.path(), Duration::from_secs(5));
        w.state.arrivals.per_sec = 1.0; // slices of 1.25 s
        jobs.send(job()).expect("queued");
        for n in [1, DELAY_ENOUGH] {
            let mut b = batch(n);
            let began = Instant::now();
            w.state.wait_for_more(&mut b);
            assert!(
                began.elapsed() < Duration::from_secs(1),
                "a batch of {n} waited"
            );
            assert_eq!(b.len(), n, "a batch of {n} took more");
        }
        let other = tempfile::tempdir().expect("tempdir");
        let (mut w, jobs) = writer_batching(other.path(), Duration::from_secs(5), 3);
        w.state.arrivals.per_sec = 1.0;
        jobs.send(job()).expect("queued");
        let mut b = batch(3);
        let began = Instant::now();
        w.state.wait_for_more(&mut b);
        assert!(
            began.elapsed() < Duration::from_secs(1),
            "a full transaction waited"
        );
        assert_eq!(b.len(), 3);
    }

    /// A connection with two publishes in flight sends no more until they are answered, and the
    /// rate it shows is slow: the batch waits one slice, a share of the delay, not the delay (a
    /// review found slices grown to the whole delay, slept on every round trip).
    #[test]
    fn a_few_in_flight_wait_a_share_of_the_delay() {
        let dir = tempfile::tempdir().expect("tempdir");
        let delay = Duration::from_secs(2);
        let (mut w, _jobs) = writer(dir.path(), delay);
        w.state.arrivals.per_sec = 1.0; // 3 s at the rate: capped at 500 ms
        let mut b = batch(2);
        let began = Instant::now();
        w.state.wait_for_more(&mut b);
        let waited = began.elapsed();
        assert!(waited >= delay / SLICES, "no slice was slept: {waited:?}");
        assert!(
            waited < delay * 3 / 4,
            "held for most of the delay: {waited:?}"
        );
    }

    /// A connection with publishes in flight sends its next ones when these are answered: a
    /// batch of only such jobs commits at once, while two jobs of senders the last commit did
    /// not answer make it wait (a review measured 2 in flight at a third of their speed with a
    /// 1 ms delay). The senders remembered are the committed batch's, with the jobs that
    /// joined during its wait, whether or not it waited.
    #[test]
    fn jobs_of_senders_just_answered_are_not_held() {
        use crate::writer::senders::append_from;
        let dir = tempfile::tempdir().expect("tempdir");
        let (mut w, jobs) = writer(dir.path(), Duration::from_secs(5));
        let metrics = switchboard_core::metrics::Metrics::new();
        w.state.commit_metrics = Some(metrics.commits.clone());
        let held = |w: &mut Writer, owners: &[&str]| {
            // Slices of 300 ms, whatever rate the last wait counted.
            w.state.arrivals.per_sec = 10.0;
            let mut b: Vec<Job> = owners.iter().map(|o| append_from(o)).collect();
            let began = Instant::now();
            w.state.wait_for_more(&mut b);
            let waited = began.elapsed();
            assert!(
                waited >= Duration::from_millis(300) || waited < Duration::from_millis(100),
                "{owners:?}: {waited:?}"
            );
            waited >= Duration::from_millis(300)
        };
        assert!(held(&mut w, &["u_1", "u_1"]), "a new sender's two jobs");
        assert!(!held(&mut w, &["u_1", "u_1"]), "the sender just answered");
        assert!(!held(&mut w, &["u_1", "u_2"]), "one fresh job is not two");
        assert!(!held(&mut w, &["u_2", "u_2"]), "remembered without a wait");
        jobs.send(append_from("u_5")).expect("queued");
        assert!(held(&mut w, &["u_3", "u_4"]), "two new senders");
        assert!(!held(&mut w, &["u_5", "u_5"]), "joined during the wait");
        assert!(!held(&mut w, &["u_6"]), "a lone job");
        assert_eq!(metrics.commits.delay_waits.get(), 2, "held");
        assert_eq!(
            metrics.commits.delay_passes.get(),
            4,
            "let through (a lone job is neither)"
        );
    }

    /// A close that comes during the wait ends it after that slice: the writer closes without
    /// sleeping another.
    #[test]
    fn a_close_ends_the_wait() {
        let dir = tempfile::tempdir().expect("tempdir");
        let (mut w, jobs) = writer(dir.path(), Duration::from_secs(5));
        w.state.arrivals.per_sec = 10.0; // slices of 300 ms
        let (reply, _closed) = tokio::sync::oneshot::channel();
        jobs.send(Job::Close { reply }).expect("queued");
        let mut b = batch(2);
        let began = Instant::now();
        w.state.wait_for_more(&mut b);
        let waited = began.elapsed();
        assert!(
            matches!(b.last(), Some(Job::Close { .. })),
            "the close joined"
        );
        assert!(
            waited < Duration::from_millis(550),
            "a second slice: {waited:?}"
        );
    }
}
