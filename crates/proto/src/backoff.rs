//! Exponential backoff with full jitter, shared by every retry loop: the SDK's reconnects, the
//! Redis pub/sub reconnect, the offline webhook's retries and the two accept loops. No IO: the
//! caller sleeps.
//!
//! One behaviour for all (AWS "full jitter"): attempt `n` (from 0) waits a uniformly random time
//! in `[floor, max(floor, min(max, base * 2^n))]`. Full jitter spreads a crowd of retries (every
//! client of a drained node, every node of a restarted Redis) over the whole window instead of
//! in waves; the floor, zero unless set, keeps a retry from being immediate where that would
//! only spin (an accept loop out of descriptors, a webhook receiver that is down).

use std::time::Duration;

/// Retry delays for one loop: grows with each [`next_delay`](Backoff::next_delay), back to the
/// start with [`reset`](Backoff::reset) after a success.
#[derive(Debug, Clone)]
pub struct Backoff {
    /// The ceiling of the first delay; doubles with each attempt.
    pub base: Duration,
    /// The largest ceiling.
    pub max: Duration,
    /// No delay is shorter than this (zero: none).
    pub floor: Duration,
    /// Delays handed out since the last reset.
    attempt: u32,
}

impl Backoff {
    /// Delays from `[0, base]` up to `[0, max]`, with no floor.
    pub fn new(base: Duration, max: Duration) -> Backoff {
        Backoff {
            base,
            max,
            floor: Duration::ZERO,
            attempt: 0,
        }
    }

    /// The same, never shorter than `floor`.
    pub fn with_floor(mut self, floor: Duration) -> Backoff {
        self.floor = floor;
        self
    }

    /// Delays handed out since the last reset.
    pub fn attempt(&self) -> u32 {
        self.attempt
    }

    /// The longest the next delay can be: `min(max, base * 2^attempt)`, and never under the
    /// floor.
    pub fn ceiling(&self) -> Duration {
        let factor = 1u32.checked_shl(self.attempt.min(31)).unwrap_or(u32::MAX);
        self.base
            .saturating_mul(factor)
            .min(self.max)
            .max(self.floor)
    }

    /// The next delay, and one more attempt counted.
    pub fn next_delay(&mut self) -> Duration {
        let d = between(self.floor, self.ceiling());
        self.attempt = self.attempt.saturating_add(1);
        d
    }

    /// Back to the first attempt (after a success).
    pub fn reset(&mut self) {
        self.attempt = 0;
    }

    /// New base and ceiling (the SDK takes them from the dispatcher's hints); the attempt count
    /// is kept.
    pub fn set_range(&mut self, base: Duration, max: Duration) {
        self.base = base;
        self.max = max;
    }
}

/// A uniformly random duration in `[0, max]`.
pub fn jitter(max: Duration) -> Duration {
    between(Duration::ZERO, max)
}

/// A uniformly random duration in `[lo, hi]` (`lo` when `hi <= lo`), to the nanosecond.
pub fn between(lo: Duration, hi: Duration) -> Duration {
    let span = hi.saturating_sub(lo).as_nanos().min(u64::MAX as u128 - 1) as u64;
    if span == 0 {
        return lo;
    }
    lo + Duration::from_nanos(crate::ids::random_u64() % (span + 1))
}

#[cfg(test)]
mod tests {
    use super::*;

    const MS: Duration = Duration::from_millis(1);

    #[test]
    fn ceilings_double_up_to_the_cap() {
        let mut b = Backoff::new(100 * MS, 1000 * MS);
        let mut ceilings = Vec::new();
        for _ in 0..6 {
            ceilings.push(b.ceiling().as_millis());
            b.next_delay();
        }
        assert_eq!(ceilings, vec![100, 200, 400, 800, 1000, 1000]);
        // Far past where 2^attempt overflows: still the cap.
        for _ in 0..100 {
            b.next_delay();
        }
        assert_eq!(b.ceiling(), 1000 * MS);
        assert_eq!(b.attempt(), 106);
    }

    #[test]
    fn delays_never_exceed_the_ceiling_nor_go_under_the_floor() {
        let mut b = Backoff::new(5 * MS, 40 * MS).with_floor(2 * MS);
        for _ in 0..200 {
            let ceiling = b.ceiling();
            let d = b.next_delay();
            assert!(d <= ceiling && d <= 40 * MS, "{d:?} over {ceiling:?}");
            assert!(d >= 2 * MS, "{d:?} under the floor");
        }
    }

    #[test]
    fn a_floor_above_the_ceiling_wins() {
        let mut b = Backoff::new(MS, 3 * MS).with_floor(10 * MS);
        assert_eq!(b.ceiling(), 10 * MS);
        assert_eq!(b.next_delay(), 10 * MS);
    }

    #[test]
    fn delays_grow_with_attempts() {
        let early: Duration = (0..100)
            .map(|_| Backoff::new(10 * MS, 10_000 * MS).next_delay())
            .sum();
        let late: Duration = (0..100)
            .map(|_| {
                let mut b = Backoff::new(10 * MS, 10_000 * MS);
                for _ in 0..8 {
                    b.next_delay();
                }
                b.next_delay()
            })
            .sum();
        // 2^8 times the window: on average 256 times longer.
        assert!(late > early * 20, "{late:?} vs {early:?}");
    }

    #[test]
    fn reset_starts_over_and_set_range_takes_new_bounds() {
        let mut b = Backoff::new(100 * MS, 1000 * MS);
        for _ in 0..5 {
            b.next_delay();
        }
        b.reset();
        assert_eq!(b.attempt(), 0);
        assert_eq!(b.ceiling(), 100 * MS);
        b.set_range(500 * MS, 30_000 * MS);
        assert_eq!(b.ceiling(), 500 * MS);
    }

    #[test]
    fn jitter_covers_the_whole_range() {
        let max = 10 * MS;
        let samples: Vec<Duration> = (0..500).map(|_| jitter(max)).collect();
        assert!(samples.iter().all(|d| *d <= max));
        assert!(samples.iter().any(|d| *d < 3 * MS));
        assert!(samples.iter().any(|d| *d > 7 * MS));
        assert_eq!(jitter(Duration::ZERO), Duration::ZERO);
        assert_eq!(between(5 * MS, MS), 5 * MS);
    }
}
