//! Helpers shared by the Redis backend's integration tests: backends on a real Redis, requests,
//! and polling.

#![allow(dead_code)]

use std::future::Future;
use std::sync::Arc;
use std::time::{Duration, Instant};
use switchboard_backend_redis::{RedisBackend, RedisConfig};
use switchboard_core::backend::{AppendRequest, BusSink, ConnEntry};
use switchboard_proto::{Conv, MessageBody};
use switchboard_testkit::RedisServer;

/// A config for `node` on `redis` under `prefix`, with a short lease.
pub fn config(redis: &RedisServer, prefix: &str, node: &str) -> RedisConfig {
    let mut c = RedisConfig::new(redis.url(), node);
    c.key_prefix = prefix.to_owned();
    c.lease = Duration::from_secs(3);
    c
}

/// Connects, panicking with the reason on failure.
pub async fn connect(config: RedisConfig, sink: Arc<dyn BusSink>) -> Arc<RedisBackend> {
    RedisBackend::connect(config, sink)
        .await
        .unwrap_or_else(|e| panic!("connect to Redis failed: {e}"))
}

/// A plain request to `conv` with body `{"n":n}` from `u_1`.
pub fn req(conv: &Conv, n: u64) -> AppendRequest {
    AppendRequest {
        conv: conv.clone(),
        from: Some("u_1".into()),
        to: None,
        body: MessageBody::from_json(format!(r#"{{"n":{n}}}"#)).expect("valid JSON"),
        client_msg_id: None,
        idempotency_owner: "u_1".into(),
        copy_to: None,
    }
}

/// The same with idempotency key `k<n>`.
pub fn keyed(conv: &Conv, n: u64) -> AppendRequest {
    AppendRequest {
        client_msg_id: Some(format!("k{n}")),
        ..req(conv, n)
    }
}

/// Polls `check` every 50 ms until it holds; panics naming `what` after `within`. Returns how
/// long it took.
pub async fn eventually<F, Fut>(within: Duration, what: &str, mut check: F) -> Duration
where
    F: FnMut() -> Fut,
    Fut: Future<Output = bool>,
{
    let start = Instant::now();
    while !check().await {
        assert!(start.elapsed() < within, "not within {within:?}: {what}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    start.elapsed()
}

/// A registry entry: connection `conn_id` of `user_id`, auth session `s_1` (on the node of the
/// backend that registers it).
pub fn conn(conn_id: &str, user_id: &str) -> ConnEntry {
    ConnEntry {
        conn_id: conn_id.into(),
        user_id: user_id.into(),
        session_id: "s_1".into(),
    }
}
