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

pub(crate) use switchboard_proto::backoff::jitter;

/// Exponential backoff with full jitter (`switchboard_proto::backoff`): attempt `n` sleeps a
/// random time in `[0, min(max, base * 2^n)]`. A wrapper only to take the dispatcher's hints.
#[derive(Debug, Clone)]
pub(crate) struct Backoff(switchboard_proto::backoff::Backoff);

impl Backoff {
    pub fn new(base: Duration, max: Duration) -> Backoff {
        Backoff(switchboard_proto::backoff::Backoff::new(base, max))
    }

    /// Takes the dispatcher's hints.
    pub fn hint(&mut self, h: BackoffHint) {
        if h.base_ms > 0 && h.max_ms >= h.base_ms {
            self.0.set_range(
                Duration::from_millis(h.base_ms),
                Duration::from_millis(h.max_ms),
            );
        }
    }
}

/// The shared backoff's `base`, `next_delay`, `reset`, `ceiling`, as if they were ours.
impl std::ops::Deref for Backoff {
    type Target = switchboard_proto::backoff::Backoff;
    fn deref(&self) -> &Self::Target {
        &self.0
    }
}

impl std::ops::DerefMut for Backoff {
    fn deref_mut(&mut self) -> &mut Self::Target {
        &mut self.0
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
