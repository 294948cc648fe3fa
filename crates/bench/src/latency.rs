//! Latency recording: HDR histograms in microseconds, their percentiles, and a plain
//! `[value, count]` form in which worker processes send them to the coordinator to be merged.

use hdrhistogram::Histogram;
use serde::{Deserialize, Serialize};
use std::time::{SystemTime, UNIX_EPOCH};

/// Highest value recorded (60 s in microseconds); larger values are clamped to it.
const MAX_US: u64 = 60_000_000;

/// A new histogram from 1 µs to 60 s with 3 significant digits.
pub fn histogram() -> Histogram<u64> {
    Histogram::new_with_bounds(1, MAX_US, 3).expect("valid histogram bounds")
}

/// Records one value in microseconds, clamped into the histogram's range.
pub fn record(h: &mut Histogram<u64>, us: u64) {
    h.saturating_record(us.clamp(1, MAX_US));
}

/// Microseconds since the Unix epoch: the send time publishers put in message bodies.
pub fn now_us() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_micros() as u64)
        .unwrap_or(0)
}

/// A histogram as `[value, count]` pairs, for sending between processes.
pub type Encoded = Vec<(u64, u64)>;

/// Encodes the recorded values of `h`.
pub fn encode(h: &Histogram<u64>) -> Encoded {
    h.iter_recorded()
        .map(|v| (v.value_iterated_to(), v.count_at_value()))
        .collect()
}

/// Adds encoded values into `h`.
pub fn merge(h: &mut Histogram<u64>, e: &Encoded) {
    for &(v, n) in e {
        let _ = h.record_n(v.clamp(1, MAX_US), n);
    }
}

/// The summary printed in reports, in microseconds.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Percentiles {
    /// Number of values.
    pub count: u64,
    /// Median.
    pub p50: u64,
    /// 90th percentile.
    pub p90: u64,
    /// 99th percentile.
    pub p99: u64,
    /// 99.9th percentile.
    pub p999: u64,
    /// Largest value.
    pub max: u64,
    /// Mean.
    pub mean: f64,
}

/// The percentiles of `h`, or `None` when it is empty.
pub fn percentiles(h: &Histogram<u64>) -> Option<Percentiles> {
    if h.is_empty() {
        return None;
    }
    Some(Percentiles {
        count: h.len(),
        p50: h.value_at_quantile(0.5),
        p90: h.value_at_quantile(0.9),
        p99: h.value_at_quantile(0.99),
        p999: h.value_at_quantile(0.999),
        max: h.max(),
        mean: h.mean(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn encode_and_merge_keep_the_distribution() {
        let mut a = histogram();
        for v in 1..=1000u64 {
            record(&mut a, v * 10);
        }
        record(&mut a, 120_000_000); // clamped, not lost
        let mut b = histogram();
        merge(&mut b, &encode(&a));
        assert_eq!(a.len(), b.len());
        let (pa, pb) = (percentiles(&a).unwrap(), percentiles(&b).unwrap());
        assert_eq!(pa.p50, pb.p50);
        assert_eq!(pa.p99, pb.p99);
        assert_eq!(pb.max, a.max());
    }
}
