//! Sweeping: removing the entries of nodes whose lease is gone (and this node's own, at start
//! and close), through each node's index set.

use super::{BATCH, live};
use crate::Shared;
use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::Duration;
use switchboard_core::backend::BackendError;

/// Removes a node's entries through its index, a batch per call. Without `force`, only while its
/// lease is gone (and then the node leaves the node set too).
pub(super) async fn sweep_node(s: &Shared, node: &str, force: bool) -> Result<(), BackendError> {
    let keys = [s.keys.node(node), s.keys.node_entries(node), s.keys.nodes()];
    let args = [
        node.to_owned(),
        s.keys.prefix().to_owned(),
        if force { "1" } else { "0" }.to_owned(),
        BATCH.to_string(),
    ];
    loop {
        let n: i64 = if s.redis.is_cluster() {
            sweep_step_cluster(s, node, force).await?
        } else {
            s.redis
                .eval("sweeping a node", &s.scripts.sweep, &keys, &args)
                .await?
        };
        if n < BATCH as i64 {
            if n >= 0 && !force {
                tracing::info!(
                    node,
                    "removed the registry entries of a node whose lease expired"
                );
            }
            return Ok(());
        }
    }
}

/// The sweep script's step on a cluster, where the entries' hashes are in other slots than the
/// node's index: pops a batch from the index (if the lease is gone, or `force`), then removes
/// each entry that still names the node from its hash, one slot at a time. Returns -1 if the
/// lease is alive, else the entries popped.
async fn sweep_step_cluster(s: &Shared, node: &str, force: bool) -> Result<i64, BackendError> {
    let mut c = redis::cmd("EVAL");
    c.arg(
        "if ARGV[1] ~= '1' and redis.call('EXISTS', KEYS[1]) == 1 then return false end \
         return redis.call('SPOP', KEYS[2], ARGV[2])",
    )
    .arg(2)
    .arg(s.keys.node(node))
    .arg(s.keys.node_entries(node))
    .arg(if force { "1" } else { "0" })
    .arg(BATCH);
    let items: Option<Vec<String>> = s.redis.query("sweeping a node", &c).await?;
    let Some(items) = items else {
        return Ok(-1);
    };
    let mut by_hash: HashMap<String, Vec<String>> = HashMap::new();
    for raw in &items {
        let Ok(v) = serde_json::from_str::<Vec<String>>(raw) else {
            continue;
        };
        match v.as_slice() {
            [kind, owner, conn] if kind == "c" => by_hash
                .entry(s.keys.conns(owner))
                .or_default()
                .push(conn.clone()),
            [kind, room, conn] if kind == "r" => by_hash
                .entry(s.keys.room_subs(room))
                .or_default()
                .push(conn.clone()),
            _ => {}
        }
    }
    for (hash, conns) in by_hash {
        let mut args = vec![node.to_owned()];
        args.extend(conns);
        s.redis
            .eval::<i64>("sweeping a node", &s.scripts.reap, &[hash], &args)
            .await?;
    }
    let n = i64::try_from(items.len()).unwrap_or(i64::MAX);
    if n < BATCH as i64 && !force {
        let mut c = redis::cmd("SREM");
        c.arg(s.keys.nodes()).arg(node);
        s.redis.query::<i64>("sweeping a node", &c).await?;
    }
    Ok(n)
}

/// Twice per lease period: removes the entries of nodes whose lease is gone (so they are gone
/// from Redis within about 1.5 leases of a crash; reads ignore them from the lease's expiry).
pub(crate) async fn sweeper_task(s: Arc<Shared>) {
    let period = (s.config.lease / 2).max(Duration::from_millis(100));
    let mut tick = tokio::time::interval_at(tokio::time::Instant::now() + period, period);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = s.cancel.cancelled() => return,
            _ = tick.tick() => {}
        }
        if let Err(e) = sweep(&s).await {
            tracing::debug!(error = %e, "registry sweep failed");
        }
    }
}

async fn sweep(s: &Shared) -> Result<(), BackendError> {
    let mut c = redis::cmd("SMEMBERS");
    c.arg(s.keys.nodes());
    let nodes: Vec<String> = s.redis.query("listing nodes", &c).await?;
    let others: HashSet<&str> = nodes
        .iter()
        .map(String::as_str)
        .filter(|n| *n != s.config.node_id)
        .collect();
    let alive = live(s, &others).await?;
    for node in others {
        if !alive.contains(node) {
            sweep_node(s, node, false).await?;
        }
    }
    Ok(())
}
