//! The offline webhook. When a message lands in `user:<id>` and that user has no live
//! connection on any node, the node POSTs
//! `{"event":"offline_message","user_id":...,"message":{...}}` to the configured URL with
//! `X-Switchboard-Timestamp: <Unix seconds>` and
//! `X-Switchboard-Signature: sha256=<hex HMAC-SHA256 of "<timestamp>.<raw body>">`: the
//! timestamp is signed with the body, so a receiver that refuses old timestamps (five minutes,
//! say) cannot be fed a recorded delivery again. Each attempt is signed afresh. The secret is at
//! least [`MIN_SECRET_BYTES`] long (the server refuses to start otherwise).
//!
//! Deliveries run off the publish path: `offline_message` only queues (bounded; a full queue
//! drops the event and counts it). Failures (network error, non-2xx) are retried with
//! exponential backoff and full jitter, up to [`WebhookConfig::max_attempts`].

use hmac::{Hmac, Mac};
use sha2::Sha256;
use std::sync::Arc;
use std::time::Duration;
use switchboard_core::metrics::Metrics;
use switchboard_core::node::OfflineNotifier;
use switchboard_proto::Message;
use switchboard_proto::backoff::Backoff;
use tokio::sync::{Semaphore, mpsc};

/// Webhook settings.
#[derive(Debug, Clone)]
pub struct WebhookConfig {
    /// Where to POST.
    pub url: String,
    /// HMAC key for the signature header.
    pub secret: String,
    /// Tries per event, the first included.
    pub max_attempts: u32,
    /// First retry delay (doubles each time, with full jitter).
    pub base_delay: Duration,
    /// Longest delay between tries.
    pub max_delay: Duration,
    /// Time allowed for one request.
    pub timeout: Duration,
    /// Events waiting to be sent; beyond it new events are dropped (and counted).
    pub queue: usize,
    /// Requests in flight at once.
    pub concurrency: usize,
}

impl WebhookConfig {
    /// Defaults for a URL and secret: 8 tries over about a minute, 5 s timeout.
    pub fn new(url: String, secret: String) -> WebhookConfig {
        WebhookConfig {
            url,
            secret,
            max_attempts: 8,
            base_delay: Duration::from_millis(500),
            max_delay: Duration::from_secs(20),
            timeout: Duration::from_secs(5),
            queue: 10_000,
            concurrency: 32,
        }
    }
}

/// The shortest secret accepted: 32 bytes, the size of the HMAC-SHA256 output.
pub const MIN_SECRET_BYTES: usize = 32;

/// The HMAC-SHA256 signature header value for a body sent at `timestamp` (Unix seconds):
/// `sha256=<hex>` of `"<timestamp>.<raw body>"`.
pub fn signature(secret: &str, timestamp: u64, body: &[u8]) -> String {
    let mut mac =
        Hmac::<Sha256>::new_from_slice(secret.as_bytes()).expect("HMAC takes keys of any size");
    mac.update(timestamp.to_string().as_bytes());
    mac.update(b".");
    mac.update(body);
    format!("sha256={}", hex::encode(mac.finalize().into_bytes()))
}

/// Now, in Unix seconds.
fn unix_seconds() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

/// Queues and sends offline events.
pub struct Webhook {
    tx: mpsc::Sender<Vec<u8>>,
    metrics: Arc<Metrics>,
}

impl Webhook {
    /// Starts the sender task on the current runtime.
    pub fn start(config: WebhookConfig, metrics: Arc<Metrics>) -> Arc<Webhook> {
        let (tx, rx) = mpsc::channel(config.queue.max(1));
        tokio::spawn(run(config, rx, metrics.clone()));
        Arc::new(Webhook { tx, metrics })
    }
}

impl OfflineNotifier for Webhook {
    fn offline_message(&self, user_id: &str, message: Arc<Message>) {
        let body = serde_json::json!({"event": "offline_message", "user_id": user_id, "message": &*message});
        let bytes = serde_json::to_vec(&body).expect("message serializes");
        if self.tx.try_send(bytes).is_err() {
            self.metrics.webhook("dropped");
            tracing::warn!(user_id, "offline webhook queue full; event dropped");
        }
    }
}

async fn run(config: WebhookConfig, mut rx: mpsc::Receiver<Vec<u8>>, metrics: Arc<Metrics>) {
    let client = match reqwest::Client::builder().timeout(config.timeout).build() {
        Ok(c) => c,
        Err(e) => {
            tracing::error!(error = %e, "cannot build the webhook HTTP client; offline webhooks are off");
            return;
        }
    };
    let config = Arc::new(config);
    let permits = Arc::new(Semaphore::new(config.concurrency.max(1)));
    while let Some(body) = rx.recv().await {
        let Ok(permit) = permits.clone().acquire_owned().await else {
            return;
        };
        let (client, config, metrics) = (client.clone(), config.clone(), metrics.clone());
        tokio::spawn(async move {
            deliver(&client, &config, &metrics, body).await;
            drop(permit);
        });
    }
}

async fn deliver(
    client: &reqwest::Client,
    config: &WebhookConfig,
    metrics: &Metrics,
    body: Vec<u8>,
) {
    let mut backoff = retry_backoff(config);
    for attempt in 1..=config.max_attempts.max(1) {
        // Signed at each attempt: a retry a minute later carries a fresh timestamp.
        let timestamp = unix_seconds();
        let sig = signature(&config.secret, timestamp, &body);
        let result = client
            .post(&config.url)
            .header("content-type", "application/json")
            .header("x-switchboard-timestamp", timestamp.to_string())
            .header("x-switchboard-signature", &sig)
            .body(body.clone())
            .send()
            .await;
        let failure = match result {
            Ok(r) if r.status().is_success() => {
                metrics.webhook("ok");
                return;
            }
            Ok(r) => format!("status {}", r.status()),
            Err(e) => e.to_string(),
        };
        if attempt == config.max_attempts {
            metrics.webhook("failed");
            tracing::warn!(url = %config.url, attempt, error = %failure, "offline webhook failed; giving up");
            return;
        }
        metrics.webhook("retry");
        let delay = backoff.next_delay();
        tracing::info!(url = %config.url, attempt, error = %failure, ?delay, "offline webhook failed; retrying");
        tokio::time::sleep(delay).await;
    }
}

/// The retry delays of one event (`switchboard_proto::backoff`, full jitter): the n-th retry
/// waits a random time up to `base_delay * 2^(n-1)`, capped at `max_delay`, and never under a
/// tenth of `base_delay`, so a retry is never immediate.
fn retry_backoff(config: &WebhookConfig) -> Backoff {
    Backoff::new(config.base_delay, config.max_delay).with_floor(config.base_delay / 10)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn signature_covers_the_timestamp_and_the_body() {
        // Checked against an independent computation:
        // `printf '1700000000.{}' | openssl dgst -sha256 -hmac Jefe`.
        assert_eq!(
            signature("Jefe", 1700000000, b"{}"),
            "sha256=d3793e2b4103edfbd98cc19591832f5fad701d413db9fcae0ae7dab8184ed207"
        );
        assert_ne!(
            signature("Jefe", 1700000001, b"{}"),
            signature("Jefe", 1700000000, b"{}")
        );
    }

    /// The delay before try `attempt + 1` of a fresh event.
    fn backoff(config: &WebhookConfig, attempt: u32) -> Duration {
        let mut b = retry_backoff(config);
        for _ in 1..attempt {
            b.next_delay();
        }
        b.next_delay()
    }

    #[test]
    fn backoff_grows_and_is_capped() {
        let c = WebhookConfig::new("http://127.0.0.1:1".into(), "k".into());
        for attempt in 1..=12 {
            let d = backoff(&c, attempt);
            assert!(d <= c.max_delay, "{d:?}");
        }
        let late: Duration = (0..50).map(|_| backoff(&c, 8)).sum();
        let early: Duration = (0..50).map(|_| backoff(&c, 1)).sum();
        assert!(late > early * 4);
    }
}
