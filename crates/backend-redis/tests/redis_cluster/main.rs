//! The Redis backend on a real Redis Cluster (3 masters, 3 replicas, started once for this
//! binary and shared by its tests under distinct key prefixes): the conformance suite, and the
//! cluster's own behaviour (sharded pub/sub, replication, leases across slots). Failover and
//! resharding are tested with real nodes in `switchboard-server`'s e2e `redis_cluster` test,
//! on a cluster of its own, since they change it.

#[path = "../common/mod.rs"]
mod common;

mod conformance;
mod layout;
mod leases;
mod measure;

use std::sync::OnceLock;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;
use switchboard_backend_redis::RedisConfig;
use switchboard_testkit::RedisCluster;

/// The cluster shared by the tests of this binary.
pub fn shared() -> &'static RedisCluster {
    static CLUSTER: OnceLock<RedisCluster> = OnceLock::new();
    CLUSTER.get_or_init(|| RedisCluster::start(2000))
}

/// A config for a fresh node on `cluster`, under a key prefix nobody else uses.
pub fn config(cluster: &RedisCluster) -> RedisConfig {
    static N: AtomicU64 = AtomicU64::new(0);
    let n = N.fetch_add(1, Ordering::SeqCst);
    let mut c = RedisConfig::new("", format!("node-{n}"));
    c.cluster = cluster.urls();
    c.key_prefix = format!("sb:c{n}:");
    c.lease = Duration::from_secs(3);
    c.wait_replicas = 1;
    // Replication is not what these cases are about, and a replica starved of CPU (CI runs many
    // tests at once on two cores) can take more than the default 500 ms to confirm a write; the
    // timeout itself is tested in `layout` with its own short value.
    c.wait_timeout = Duration::from_secs(5);
    c
}
