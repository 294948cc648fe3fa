//! A point in time in 8 bytes, where an `Instant` takes 16 (its nanoseconds beside a 64-bit
//! seconds count): nanoseconds since a process-wide epoch, up to a day before the clock was
//! first read through this type (584 years of range). Every connection keeps a few of these (its
//! heartbeat, its auth deadline, its rate limits' last refill), so that room is per connection.

use std::sync::OnceLock;
use std::time::{Duration, Instant};

/// The epoch: a day before the first use, so that instants read a little before it still come
/// after it (on Linux the monotonic clock allows that whatever the uptime; where a platform's
/// `Instant` cannot go back that far, an hour, a minute or a second before).
fn epoch() -> Instant {
    static EPOCH: OnceLock<Instant> = OnceLock::new();
    *EPOCH.get_or_init(|| {
        let now = Instant::now();
        [86_400, 3_600, 60, 1]
            .into_iter()
            .find_map(|secs| now.checked_sub(Duration::from_secs(secs)))
            .unwrap_or(now)
    })
}

/// A point in time: nanoseconds since the process's epoch. Instants before the epoch read as
/// the epoch itself.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct Moment(u64);

impl Moment {
    /// Now, by tokio's clock (the session's timers' clock: the same as the system's, unless a
    /// test paused it; a deadline set by another clock than the one it is checked by would
    /// drift under a paused clock).
    pub fn now() -> Moment {
        Moment::from(tokio::time::Instant::now())
    }

    /// The same point as an `Instant`.
    pub fn instant(self) -> Instant {
        epoch() + Duration::from_nanos(self.0)
    }

    /// How long after `earlier` this is (zero when it is not after it).
    pub fn since(self, earlier: Moment) -> Duration {
        Duration::from_nanos(self.0.saturating_sub(earlier.0))
    }
}

impl From<Instant> for Moment {
    fn from(at: Instant) -> Moment {
        let nanos = at.saturating_duration_since(epoch()).as_nanos();
        Moment(u64::try_from(nanos).unwrap_or(u64::MAX))
    }
}

impl From<tokio::time::Instant> for Moment {
    fn from(at: tokio::time::Instant) -> Moment {
        Moment::from(at.into_std())
    }
}

impl From<Moment> for tokio::time::Instant {
    fn from(at: Moment) -> tokio::time::Instant {
        tokio::time::Instant::from_std(at.instant())
    }
}

impl std::ops::Add<Duration> for Moment {
    type Output = Moment;

    /// Later by `d` (saturating at the end of the range).
    fn add(self, d: Duration) -> Moment {
        let nanos = u64::try_from(d.as_nanos()).unwrap_or(u64::MAX);
        Moment(self.0.saturating_add(nanos))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_and_orders_like_instants() {
        let now = Instant::now();
        let m = Moment::from(now);
        assert_eq!(m.instant(), now, "nanosecond exact");
        let later = m + Duration::from_millis(1500);
        assert!(later > m);
        assert_eq!(later.since(m), Duration::from_millis(1500));
        assert_eq!(m.since(later), Duration::ZERO, "never negative");
        assert_eq!(later.instant(), now + Duration::from_millis(1500));
        let tokio_now = tokio::time::Instant::from_std(now);
        assert_eq!(Moment::from(tokio_now), m);
        assert_eq!(tokio::time::Instant::from(m), tokio_now);
        assert_eq!(std::mem::size_of::<Moment>(), 8);
    }

    #[test]
    fn an_instant_read_a_little_before_the_first_use_is_still_exact() {
        let before = Instant::now();
        std::thread::sleep(Duration::from_millis(2));
        let _ = Moment::now();
        assert_eq!(Moment::from(before).instant(), before);
    }
}
