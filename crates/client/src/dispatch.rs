//! The dispatcher's answer, and the backoff between connection attempts.

use serde::Deserialize;
use std::time::Duration;
use switchboard_proto::Endpoints;

/// One placement: a node and its endpoints.
#[derive(Debug, Clone, Deserialize)]
pub(crate) struct Placement {
    #[serde(default)]
    pub node_id: String,
    #[serde(default)]
    pub endpoints: Endpoints,
}

#[derive(Debug, Clone, Copy, Deserialize)]
pub(crate) struct BackoffHint {
    pub base_ms: u64,
    pub max_ms: u64,
}

/// `GET /v1/dispatch`.
#[derive(Debug, Clone, Deserialize)]
pub(crate) struct Dispatch {
    #[serde(flatten)]
    pub primary: Placement,
    #[serde(default)]
    pub alternates: Vec<Placement>,
    #[serde(default)]
    pub backoff: Option<BackoffHint>,
}

impl Dispatch {
    /// The chosen node, then the alternates.
    pub fn nodes(&self) -> impl Iterator<Item = &Placement> {
        std::iter::once(&self.primary).chain(self.alternates.iter())
    }
}

/// Why dispatch gave no placement.
#[derive(Debug)]
pub(crate) enum DispatchError {
    /// 503: every node full or draining; ask again after this.
    Overloaded { retry_after: Duration },
    /// Unreachable, or an unexpected answer.
    Failed(String),
}

/// Asks the dispatcher where to connect.
pub(crate) async fn dispatch(
    http: &reqwest::Client,
    base: &str,
    token: &str,
    timeout: Duration,
) -> Result<Dispatch, DispatchError> {
    let url = format!("{}/v1/dispatch", base.trim_end_matches('/'));
    let resp = http
        .get(&url)
        .bearer_auth(token)
        .timeout(timeout)
        .send()
        .await
        .map_err(|e| DispatchError::Failed(format!("{url}: {e}")))?;
    let status = resp.status().as_u16();
    if status == 503 {
        let secs = resp
            .headers()
            .get(reqwest::header::RETRY_AFTER)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.trim().parse::<u64>().ok())
            .unwrap_or(1);
        return Err(DispatchError::Overloaded {
            retry_after: Duration::from_secs(secs.min(60)),
        });
    }
    if status != 200 {
        return Err(DispatchError::Failed(format!("{url}: answered {status}")));
    }
    resp.json::<Dispatch>()
        .await
        .map_err(|e| DispatchError::Failed(format!("{url}: unreadable answer: {e}")))
}

/// A random duration in `[0, max]`.
pub(crate) fn jitter(max: Duration) -> Duration {
    let ms = max.as_millis().min(u64::MAX as u128) as u64;
    if ms == 0 {
        return Duration::ZERO;
    }
    Duration::from_millis(switchboard_proto::ids::random_u64() % (ms + 1))
}

/// Exponential backoff with full jitter: attempt `n` sleeps a random time in
/// `[0, min(max, base * 2^n)]`.
#[derive(Debug, Clone)]
pub(crate) struct Backoff {
    pub base: Duration,
    pub max: Duration,
    attempt: u32,
}

impl Backoff {
    pub fn new(base: Duration, max: Duration) -> Backoff {
        Backoff {
            base,
            max,
            attempt: 0,
        }
    }

    /// The ceiling of the next sleep.
    pub fn ceiling(&self) -> Duration {
        let factor = 1u32.checked_shl(self.attempt.min(31)).unwrap_or(u32::MAX);
        self.base.saturating_mul(factor).min(self.max)
    }

    /// The next sleep (and one more attempt counted).
    pub fn next_delay(&mut self) -> Duration {
        let d = jitter(self.ceiling());
        self.attempt = self.attempt.saturating_add(1);
        d
    }

    /// Back to the first attempt (after a successful welcome).
    pub fn reset(&mut self) {
        self.attempt = 0;
    }

    /// Takes the dispatcher's hints.
    pub fn hint(&mut self, h: BackoffHint) {
        if h.base_ms > 0 && h.max_ms >= h.base_ms {
            self.base = Duration::from_millis(h.base_ms);
            self.max = Duration::from_millis(h.max_ms);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_grows_caps_and_resets() {
        let mut b = Backoff::new(Duration::from_millis(100), Duration::from_millis(1000));
        let mut ceilings = Vec::new();
        for _ in 0..6 {
            ceilings.push(b.ceiling().as_millis());
            let d = b.next_delay();
            assert!(d <= Duration::from_millis(1000));
        }
        assert_eq!(ceilings, vec![100, 200, 400, 800, 1000, 1000]);
        for _ in 0..100 {
            b.next_delay();
        }
        assert_eq!(b.ceiling(), Duration::from_millis(1000));
        b.reset();
        assert_eq!(b.ceiling(), Duration::from_millis(100));
        b.hint(BackoffHint {
            base_ms: 500,
            max_ms: 30_000,
        });
        assert_eq!(b.ceiling(), Duration::from_millis(500));
    }

    #[test]
    fn jitter_is_full_range() {
        let max = Duration::from_millis(10);
        let samples: Vec<Duration> = (0..500).map(|_| jitter(max)).collect();
        assert!(samples.iter().all(|d| *d <= max));
        assert!(samples.iter().any(|d| *d < Duration::from_millis(3)));
        assert!(samples.iter().any(|d| *d > Duration::from_millis(7)));
    }

    #[test]
    fn dispatch_answer_parses() {
        let d: Dispatch = serde_json::from_str(
            r#"{"node_id":"n_1","endpoints":{"ws":"ws://h:1/v1/ws","poll":"http://h:1/v1/poll","tcp":null},
                "alternates":[{"node_id":"n_2","endpoints":{"ws":"ws://h:2/v1/ws"}}],
                "ttl_ms":30000,"backoff":{"base_ms":500,"max_ms":30000}}"#,
        )
        .unwrap();
        let ids: Vec<&str> = d.nodes().map(|n| n.node_id.as_str()).collect();
        assert_eq!(ids, vec!["n_1", "n_2"]);
        assert!(d.primary.endpoints.tcp.is_none());
        assert_eq!(d.backoff.unwrap().max_ms, 30_000);
    }
}
