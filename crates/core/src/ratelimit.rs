//! A token bucket, one per connection and purpose. Small (24 bytes) and lock-free because a
//! connection's frames are handled by one task. Limits kept per user or per client IP (the
//! HTTP API's) are in [`keyed`].

use crate::moment::Moment;
use std::time::{Duration, Instant};

pub mod keyed;

/// Allows `rate` events per second on average and `burst` at once. `rate == 0` means unlimited.
#[derive(Debug, Clone)]
pub struct TokenBucket {
    rate: f32,
    burst: f32,
    tokens: f32,
    /// The last refill (8 bytes where an `Instant` takes 16: every connection has two buckets).
    last: Moment,
}

impl TokenBucket {
    /// A full bucket.
    pub fn new(rate: u32, burst: u32) -> TokenBucket {
        TokenBucket::with_rate(rate as f32, burst, Instant::now())
    }

    /// A full bucket refilling `rate` tokens per second (fractions allowed: `n / 60.0` is `n`
    /// a minute), as of `now`.
    pub fn with_rate(rate: f32, burst: u32, now: Instant) -> TokenBucket {
        let burst = burst.max(1) as f32;
        TokenBucket {
            rate,
            burst,
            tokens: burst,
            last: Moment::from(now),
        }
    }

    /// Takes one token, or says how long until one is there.
    pub fn take_or_wait_at(&mut self, now: Instant) -> Result<(), Duration> {
        if self.try_take_at(now) {
            return Ok(());
        }
        let missing = (1.0 - self.tokens).max(0.0);
        Err(Duration::from_secs_f32(missing / self.rate))
    }

    /// Whether the bucket has refilled completely by `now`: then it holds nothing a fresh
    /// bucket would not, and may be forgotten.
    pub fn is_full_at(&self, now: Instant) -> bool {
        let elapsed = Moment::from(now).since(self.last).as_secs_f32();
        self.rate == 0.0 || self.tokens + elapsed * self.rate >= self.burst
    }

    /// Takes one token if there is one. Rejected events take nothing, so only the excess fails.
    pub fn try_take(&mut self) -> bool {
        self.try_take_at(Instant::now())
    }

    /// [`TokenBucket::try_take`] at a given time (for tests).
    pub fn try_take_at(&mut self, now: Instant) -> bool {
        if self.rate == 0.0 {
            return true;
        }
        let now = Moment::from(now);
        let elapsed = now.since(self.last).as_secs_f32();
        self.last = now;
        self.tokens = (self.tokens + elapsed * self.rate).min(self.burst);
        if self.tokens >= 1.0 {
            self.tokens -= 1.0;
            true
        } else {
            false
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn burst_then_rate() {
        let t0 = Instant::now();
        let mut b = TokenBucket::new(100, 200);
        let ok = (0..300).filter(|_| b.try_take_at(t0)).count();
        assert_eq!(ok, 200);
        let ok = (0..300)
            .filter(|_| b.try_take_at(t0 + Duration::from_millis(100)))
            .count();
        assert_eq!(ok, 10);
        let mut u = TokenBucket::new(0, 0);
        assert!((0..10_000).all(|_| u.try_take_at(t0)));
    }
}
