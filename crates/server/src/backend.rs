//! Choosing and opening the backend: the embedded one by default, Redis (one server or a
//! cluster) when configured.

use crate::{ServerConfig, StartError};
use std::sync::Arc;
use switchboard_backend_embedded::{EmbeddedBackend, EmbeddedConfig};
use switchboard_backend_redis::{RedisBackend, RedisConfig, ShardHook};
use switchboard_core::backend::{Backend, BusSink, NodeAnnouncement};
use switchboard_core::metrics::Metrics;

/// The embedded backend, or the Redis one when `--redis` is given. A Redis that cannot be
/// reached stops the start with a message naming the URL.
pub(crate) async fn open_backend(
    config: &ServerConfig,
    public_url: &str,
    tcp_url: Option<&str>,
    sink: Arc<dyn BusSink>,
    metrics: &Arc<Metrics>,
) -> Result<Backend, StartError> {
    let redis_url = match (&config.redis, config.redis_cluster.is_empty()) {
        (Some(url), _) => Some(url.clone()),
        (None, false) => Some(config.redis_cluster.join(",")),
        (None, true) => None,
    };
    match &redis_url {
        Some(url) => {
            let mut rc = RedisConfig::new(url.clone(), config.node_id.clone());
            rc.cluster = config.redis_cluster.clone();
            rc.wait_replicas = config.redis_wait_replicas;
            rc.wait_timeout = config.redis_wait_timeout;
            let counts = metrics.clone();
            rc.on_shard_message = Some(ShardHook(Arc::new(move |shard: &str| {
                counts.bus_shard_message(shard)
            })));
            rc.key_prefix = config.redis_prefix.clone();
            rc.history_max_messages = config.history_max_messages;
            rc.history_max_age_ms = config.history_max_age.as_millis() as u64;
            rc.lease = config.lease;
            let endpoints = switchboard_api::ops::endpoints_for(public_url, tcp_url);
            rc.announce = NodeAnnouncement {
                node_id: config.node_id.clone(),
                public_url: Some(public_url.to_owned()),
                // Same shape (ws, poll, tcp): the conversion cannot fail.
                endpoints: serde_json::from_value(endpoints).unwrap_or_default(),
                weight: config.weight,
                max_connections: config.limits.max_connections as u64,
                gateway: config.roles.gateway,
            };
            let redis = RedisBackend::connect(rc, sink)
                .await
                .map_err(|e| StartError::Backend(format!("cannot use Redis at {url}: {e}")))?;
            Ok(redis.backend())
        }
        None => {
            let embedded = EmbeddedBackend::open(
                EmbeddedConfig {
                    data_dir: config.data_dir.clone(),
                    history_max_messages: config.history_max_messages,
                    history_max_age_ms: config.history_max_age.as_millis() as u64,
                    max_batch: 512,
                    commit_delay: config.commit_delay,
                    index_cycle: config.index_cycle,
                    durability: config.durability,
                    commit_metrics: Some(metrics.commits.clone()),
                },
                sink,
            )
            .map_err(|e| StartError::Backend(e.to_string()))?;
            Ok(embedded.backend())
        }
    }
}
