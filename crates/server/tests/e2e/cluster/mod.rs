//! Cluster mode on a real Redis started by the test: several nodes form one system. The
//! fixtures are here (a node in cluster mode, waiting for a condition, a user's online count);
//! the scenarios are in `one_system` (tokens made on one node work on all; concurrent
//! publishers on different nodes still produce one seq order; a node with no interested
//! connection receives nothing; logout, kicks and resumes cross nodes) and `failures` (a crashed
//! node's users go offline within the lease; a Redis outage fails publishes fast and heals when
//! Redis returns; a wrong Redis URL stops the start).

mod failures;
mod one_system;

use crate::common;
use common::*;
use std::time::{Duration, Instant};
use switchboard_testkit::RedisServer;

/// An in-process node in cluster mode on `redis`.
pub(crate) async fn cluster_node(redis: &RedisServer, id: &str) -> TestNode {
    let (url, id) = (redis.url(), id.to_owned());
    TestNode::start_with(move |c| {
        c.redis = Some(url);
        c.node_id = id;
        c.lease = Duration::from_millis(1500);
        c.limits.publish_rate = 0;
    })
    .await
}

/// Polls `check` until it returns true, for at most `within`.
pub(crate) async fn eventually<F, Fut>(within: Duration, what: &str, mut check: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = Instant::now() + within;
    while !check().await {
        assert!(Instant::now() < deadline, "not within {within:?}: {what}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// How many live connections `user` has, as the presence API reports them.
async fn online(http: &Http, token: &str, user: &str) -> u64 {
    let (_, v) = http
        .get(&format!("/v1/presence/users?ids={user}"), token)
        .await;
    v["users"][user]["connections"].as_u64().unwrap_or(0)
}
