//! Limits kept per key (a user id, a client IP, a username): a token bucket per key
//! ([`KeyedLimiter`]) and a backoff after failures per key ([`FailureBackoff`]).
//!
//! Both are bounded in memory by construction: at most `capacity` keys. When a new key finds the
//! map full, keys that hold nothing worth keeping (a bucket refilled, failures long past) are
//! swept; if that frees too little (a flood of distinct keys, say a million client IPs), half
//! of the keys are dropped. Dropping a key only forgets its history, which is what a new key
//! would have: the flood gains nothing it could not get with fresh keys. Sweeps are amortized:
//! each one leaves room for at least half the capacity.

use super::TokenBucket;
use parking_lot::Mutex;
use std::collections::HashMap;
use std::time::{Duration, Instant};

/// Keys a limiter keeps by default: about 100 bytes each, so some 10 MB at most.
pub const DEFAULT_CAPACITY: usize = 100_000;

/// A token bucket per key: `rate` events per second on average, `burst` at once.
pub struct KeyedLimiter {
    rate: f32,
    burst: u32,
    capacity: usize,
    buckets: Mutex<HashMap<String, TokenBucket>>,
}

impl KeyedLimiter {
    /// A limiter of `per_min` events per key per minute, all of them available at once.
    /// `0` is unlimited.
    pub fn per_minute(per_min: u32) -> KeyedLimiter {
        KeyedLimiter::new(per_min as f32 / 60.0, per_min, DEFAULT_CAPACITY)
    }

    /// A limiter of `rate` events per key per second with bursts of `burst`, keeping at most
    /// `capacity` keys. A `rate` of `0` is unlimited.
    pub fn new(rate: f32, burst: u32, capacity: usize) -> KeyedLimiter {
        KeyedLimiter {
            rate,
            burst,
            capacity: capacity.max(2),
            buckets: Mutex::new(HashMap::new()),
        }
    }

    /// Takes one event for `key`, or says how long until it may try again.
    pub fn check(&self, key: &str) -> Result<(), Duration> {
        self.check_at(key, Instant::now())
    }

    /// [`KeyedLimiter::check`] at a given time (for tests).
    pub fn check_at(&self, key: &str, now: Instant) -> Result<(), Duration> {
        if self.rate <= 0.0 {
            return Ok(());
        }
        let mut buckets = self.buckets.lock();
        if let Some(b) = buckets.get_mut(key) {
            return b.take_or_wait_at(now);
        }
        if buckets.len() >= self.capacity {
            make_room(&mut buckets, self.capacity, |b| b.is_full_at(now));
        }
        let mut b = TokenBucket::with_rate(self.rate, self.burst, now);
        let taken = b.take_or_wait_at(now);
        buckets.insert(key.to_owned(), b);
        taken
    }

    /// Keys held now.
    pub fn len(&self) -> usize {
        self.buckets.lock().len()
    }

    /// Whether no key is held.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// Failures per key, and the wait they impose: after `free` failures, each attempt must come
/// at least 1 s after the last failure, doubling with every further failure up to `max`.
/// A key whose last failure is older than [`FailureBackoff::FORGET_AFTER`] starts over.
pub struct FailureBackoff {
    free: u32,
    max: Duration,
    capacity: usize,
    failures: Mutex<HashMap<String, (u32, Instant)>>,
}

impl FailureBackoff {
    /// Failures are forgotten this long after the last one.
    pub const FORGET_AFTER: Duration = Duration::from_secs(15 * 60);

    /// A backoff after `free` failures (`0`: no backoff), waiting at most `max`.
    pub fn new(free: u32, max: Duration, capacity: usize) -> FailureBackoff {
        FailureBackoff {
            free,
            max,
            capacity: capacity.max(2),
            failures: Mutex::new(HashMap::new()),
        }
    }

    /// `Ok` if `key` may try now, else how long it must wait.
    pub fn check_at(&self, key: &str, now: Instant) -> Result<(), Duration> {
        if self.free == 0 {
            return Ok(());
        }
        let failures = self.failures.lock();
        let Some(&(n, last)) = failures.get(key) else {
            return Ok(());
        };
        let wait = self.delay(n);
        let since = now.saturating_duration_since(last);
        if since >= wait || since >= Self::FORGET_AFTER {
            Ok(())
        } else {
            Err(wait - since)
        }
    }

    /// [`FailureBackoff::check_at`] now.
    pub fn check(&self, key: &str) -> Result<(), Duration> {
        self.check_at(key, Instant::now())
    }

    /// Counts a failure of `key` at `now`.
    pub fn failed_at(&self, key: &str, now: Instant) {
        if self.free == 0 {
            return;
        }
        let mut failures = self.failures.lock();
        if let Some((n, last)) = failures.get_mut(key) {
            if now.saturating_duration_since(*last) >= Self::FORGET_AFTER {
                *n = 0;
            }
            *n = n.saturating_add(1);
            *last = now;
            return;
        }
        if failures.len() >= self.capacity {
            make_room(&mut failures, self.capacity, |&(_, last)| {
                now.saturating_duration_since(last) >= Self::FORGET_AFTER
            });
        }
        failures.insert(key.to_owned(), (1, now));
    }

    /// [`FailureBackoff::failed_at`] now.
    pub fn failed(&self, key: &str) {
        self.failed_at(key, Instant::now());
    }

    /// Forgets `key`'s failures (after a success).
    pub fn succeeded(&self, key: &str) {
        self.failures.lock().remove(key);
    }

    /// Keys held now.
    pub fn len(&self) -> usize {
        self.failures.lock().len()
    }

    /// Whether no key is held.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The wait after `n` failures: none up to `free`, then 1 s doubling, at most `max`.
    fn delay(&self, n: u32) -> Duration {
        if n < self.free {
            return Duration::ZERO;
        }
        let doublings = (n - self.free).min(20);
        Duration::from_secs(1u64 << doublings).min(self.max)
    }
}

/// Frees room in a full map: drops the entries `idle` says hold nothing, then, if that left it
/// more than half full, drops entries until half of `capacity` is free.
fn make_room<V>(map: &mut HashMap<String, V>, capacity: usize, idle: impl Fn(&V) -> bool) {
    map.retain(|_, v| !idle(v));
    let keep = capacity / 2;
    if map.len() > keep {
        let mut kept = 0;
        map.retain(|_, _| {
            kept += 1;
            kept <= keep
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_key_has_its_own_bucket_and_learns_when_to_retry() {
        let t0 = Instant::now();
        let l = KeyedLimiter::new(1.0, 3, 100);
        assert!((0..3).all(|_| l.check_at("a", t0).is_ok()));
        let wait = l.check_at("a", t0).unwrap_err();
        assert!(wait > Duration::from_millis(900) && wait <= Duration::from_secs(1));
        assert!(l.check_at("b", t0).is_ok());
        assert!(l.check_at("a", t0 + Duration::from_secs(1)).is_ok());
        let off = KeyedLimiter::per_minute(0);
        assert!((0..10_000).all(|_| off.check_at("a", t0).is_ok()));
        assert!(off.is_empty());
    }

    #[test]
    fn a_flood_of_distinct_keys_stays_within_capacity() {
        let t0 = Instant::now();
        let l = KeyedLimiter::new(1.0, 5, 1_000);
        for i in 0..200_000u32 {
            let _ = l.check_at(
                &format!("10.{}.{}.{}", i >> 16, (i >> 8) & 255, i & 255),
                t0,
            );
            assert!(l.len() <= 1_000);
        }
        let b = FailureBackoff::new(5, Duration::from_secs(60), 1_000);
        for i in 0..200_000u32 {
            b.failed_at(&format!("user{i}"), t0);
            assert!(b.len() <= 1_000);
        }
    }

    #[test]
    fn refilled_keys_are_swept_before_busy_ones() {
        let t0 = Instant::now();
        let l = KeyedLimiter::new(1.0, 1, 4);
        for k in ["a", "b", "c"] {
            l.check_at(k, t0).unwrap();
        }
        l.check_at("busy", t0 + Duration::from_secs(5)).unwrap();
        // Full: the three refilled keys go, the busy one stays (and is still empty).
        l.check_at("new", t0 + Duration::from_secs(5)).unwrap();
        assert_eq!(l.len(), 2);
        assert!(l.check_at("busy", t0 + Duration::from_secs(5)).is_err());
    }

    #[test]
    fn backoff_after_free_failures_doubles_and_resets() {
        let t0 = Instant::now();
        let b = FailureBackoff::new(3, Duration::from_secs(8), 100);
        for _ in 0..2 {
            b.failed_at("alice", t0);
            assert!(b.check_at("alice", t0).is_ok());
        }
        b.failed_at("alice", t0);
        assert_eq!(b.check_at("alice", t0), Err(Duration::from_secs(1)));
        assert!(b.check_at("alice", t0 + Duration::from_secs(1)).is_ok());
        b.failed_at("alice", t0);
        assert_eq!(b.check_at("alice", t0), Err(Duration::from_secs(2)));
        for _ in 0..10 {
            b.failed_at("alice", t0);
        }
        assert_eq!(b.check_at("alice", t0), Err(Duration::from_secs(8)));
        assert!(b.check_at("bob", t0).is_ok());
        assert!(
            b.check_at("alice", t0 + FailureBackoff::FORGET_AFTER)
                .is_ok()
        );
        b.succeeded("alice");
        assert!(b.check_at("alice", t0).is_ok());
        let off = FailureBackoff::new(0, Duration::from_secs(8), 100);
        (0..100).for_each(|_| off.failed_at("x", t0));
        assert!(off.check_at("x", t0).is_ok());
    }
}
