//! [`RedisConfig`]: the Redis backend's settings and their defaults, and the [`ShardHook`]
//! callback one of them holds.

use std::sync::Arc;
use std::time::Duration;
use switchboard_core::backend::NodeAnnouncement;

/// Settings of the Redis backend.
#[derive(Debug, Clone)]
pub struct RedisConfig {
    /// `redis://[user:password@]host:port[/db]`.
    pub url: String,
    /// This node's id: names its lease and its registry entries. Unique per running process.
    pub node_id: String,
    /// Prefix of every key and channel (default `sb:`), so that several deployments or test
    /// runs can share one Redis.
    pub key_prefix: String,
    /// Messages kept per conversation; older ones are trimmed as new ones arrive. 0 = unlimited.
    pub history_max_messages: u64,
    /// Messages older than this (ms) are trimmed by a background pass every minute. 0 = forever.
    pub history_max_age_ms: u64,
    /// How long this node's registry entries outlive it if it stops renewing (default 10 s);
    /// renewed every `lease / 3`.
    pub lease: Duration,
    /// The longest any Redis command may take, including waiting for a reconnect (default 2 s);
    /// a slower one fails with [`BackendError::Unavailable`].
    ///
    /// [`BackendError::Unavailable`]: switchboard_core::backend::BackendError::Unavailable
    pub response_timeout: Duration,
    /// Stored with this node's lease (its URL, endpoints, weight...), for dispatchers: see
    /// [`RedisBackend::live_nodes`](crate::RedisBackend::live_nodes).
    pub announce: NodeAnnouncement,
    /// Seed nodes of a Redis Cluster (`redis://host:port`, any of its nodes). When not empty the
    /// backend runs on that cluster, with the cluster key layout and sharded pub/sub, and `url`
    /// is unused.
    pub cluster: Vec<String>,
    /// Replicas that must hold a message before `append` answers and it is published (`WAIT`).
    /// 0 = do not wait (publish from the append script itself).
    pub wait_replicas: u32,
    /// How long `append` waits for those replicas before answering `Unavailable`.
    pub wait_timeout: Duration,
    /// On a cluster, called with the shard master's address (`host:port`) for every
    /// conversation message this node receives (per-shard metrics).
    pub on_shard_message: Option<ShardHook>,
}

/// A callback for each message received from a shard (see [`RedisConfig::on_shard_message`]).
#[derive(Clone)]
pub struct ShardHook(pub Arc<dyn Fn(&str) + Send + Sync>);

impl std::fmt::Debug for ShardHook {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("ShardHook")
    }
}

impl RedisConfig {
    /// Defaults for `url` and `node_id`: prefix `sb:`, unlimited history, 10 s lease, 2 s
    /// response timeout, an announcement naming the node only.
    pub fn new(url: impl Into<String>, node_id: impl Into<String>) -> RedisConfig {
        let node_id = node_id.into();
        RedisConfig {
            url: url.into(),
            announce: NodeAnnouncement::new(node_id.clone()),
            node_id,
            key_prefix: "sb:".into(),
            history_max_messages: 0,
            history_max_age_ms: 0,
            lease: Duration::from_secs(10),
            response_timeout: Duration::from_secs(2),
            cluster: Vec::new(),
            wait_replicas: 0,
            wait_timeout: Duration::from_millis(500),
            on_shard_message: None,
        }
    }
}
