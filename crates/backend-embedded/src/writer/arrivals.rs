//! The rate jobs reach the writer at, and the slices the commit delay is slept in, which that
//! rate sizes (the gather module says how the delay's wait uses them).

use std::time::{Duration, Instant};

/// The commit delay is slept in slices, and ends after a slice in which no job came. A slice is
/// long enough for [`SLICE_ARRIVALS`] jobs at the rate they have been coming, at least
/// [`SLICE_MIN`] and at most a [`SLICES`]th of the delay: at 5,000 DMs/s from many connections
/// a slice of a 1 ms delay is 250 µs; a pipelining connection's burst is over when its answers
/// are still to come, and the first slice ends the wait.
const SLICE_ARRIVALS: f64 = 3.0;

/// A slice is at most the delay divided by this. The cap matters for a connection with a few
/// publishes in flight: its jobs come only as fast as the writer answers them, so the rate it
/// shows is slowed by the wait itself, and uncapped slices grew to the whole delay, slept on
/// every round trip (a review measured 2 in flight at a fifth of their speed without a delay).
pub(super) const SLICES: u32 = 4;

/// The shortest slice of the commit delay.
const SLICE_MIN: Duration = Duration::from_micros(100);

/// How long the writer counts jobs for before it takes their rate anew.
const RATE_WINDOW: Duration = Duration::from_millis(100);

/// A window longer than this (the writer was idle) gives no rate: the next busy batch after a
/// quiet spell is a burst whose rate is unknown, and gets the shortest slices.
const RATE_WINDOW_MAX: Duration = Duration::from_secs(1);

/// The rate jobs reach the writer at, taken over windows of [`RATE_WINDOW`] (see
/// `WriterState::wait_for_more`).
#[derive(Debug)]
pub(super) struct Arrivals {
    /// When the current window began.
    since: Instant,
    /// Jobs counted in the current window.
    jobs: u64,
    /// Jobs per second over the last whole window (zero before the first, or after one longer
    /// than [`RATE_WINDOW_MAX`]).
    pub(super) per_sec: f64,
}

impl Arrivals {
    /// No jobs yet.
    pub(super) fn new() -> Arrivals {
        Arrivals {
            since: Instant::now(),
            jobs: 0,
            per_sec: 0.0,
        }
    }

    /// Counts `n` jobs that reached the writer.
    pub(super) fn count(&mut self, n: usize) {
        self.jobs += n as u64;
        let elapsed = self.since.elapsed();
        if elapsed >= RATE_WINDOW {
            self.per_sec = if elapsed > RATE_WINDOW_MAX {
                0.0
            } else {
                self.jobs as f64 / elapsed.as_secs_f64()
            };
            self.since = Instant::now();
            self.jobs = 0;
        }
    }

    /// How long one slice of a `delay` is ([`SLICE_MIN`] while no rate is known), never more
    /// than the delay.
    pub(super) fn slice(&self, delay: Duration) -> Duration {
        let at_rate = if self.per_sec <= 0.0 {
            SLICE_MIN
        } else {
            Duration::from_secs_f64(SLICE_ARRIVALS / self.per_sec)
        };
        at_rate.min(delay / SLICES).max(SLICE_MIN).min(delay)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_slice_holds_three_arrivals_at_the_rate_within_its_bounds() {
        let delay = Duration::from_millis(2);
        let at = |per_sec: f64| {
            Arrivals {
                since: Instant::now(),
                jobs: 0,
                per_sec,
            }
            .slice(delay)
        };
        assert_eq!(at(0.0), SLICE_MIN, "no rate known yet");
        assert_eq!(at(8_000.0), Duration::from_micros(375));
        assert_eq!(at(1_000_000.0), SLICE_MIN);
        assert_eq!(
            at(5_000.0),
            delay / SLICES,
            "never beyond a share of the delay"
        );
        assert_eq!(at(10.0), delay / SLICES);
        assert_eq!(
            Arrivals::new().slice(Duration::from_micros(50)),
            Duration::from_micros(50)
        );
    }

    #[test]
    fn the_rate_is_taken_over_a_window() {
        let mut a = Arrivals::new();
        a.count(5);
        assert_eq!(a.per_sec, 0.0, "a window is not over yet");
        std::thread::sleep(RATE_WINDOW);
        a.count(5);
        // Ten jobs in 100 ms or more.
        assert!(a.per_sec > 0.0 && a.per_sec <= 100.0, "{}", a.per_sec);
        assert_eq!(a.jobs, 0, "a new window began");
        // A window that spans a quiet spell gives no rate.
        a.since = Instant::now() - RATE_WINDOW_MAX * 2;
        a.count(1);
        assert_eq!(a.per_sec, 0.0, "a rate from an idle window");
    }
}
