//! Reading the registry: connection counts and room presence, counting only the entries of
//! nodes that hold a lease, and removing the stale ones met on the way.

use super::live;
use crate::Shared;
use crate::batch::Batch;
use crate::error::bad_reply;
use std::collections::{BTreeMap, HashMap, HashSet};
use switchboard_core::backend::BackendError;
use switchboard_proto::frame::PresenceEntry;

/// Removes stale entries met by a read (those of nodes without lease), best effort. The script
/// checks the lease again, atomically, so a node that just took its lease back keeps them.
async fn reap(s: &Shared, stale: HashMap<(String, String), Vec<String>>) {
    for ((node, hash), conns) in stale {
        // On a cluster the lease is in another slot; `live` found it gone just before.
        let keys = if s.redis.is_cluster() {
            vec![hash]
        } else {
            vec![s.keys.node(&node), hash]
        };
        let mut args = vec![node];
        args.extend(conns);
        if let Err(e) = s
            .redis
            .eval::<i64>(
                "removing stale registry entries",
                &s.scripts.reap,
                &keys,
                &args,
            )
            .await
        {
            tracing::debug!(error = %e, "removing stale registry entries failed");
        }
    }
}

fn count(n: usize) -> u32 {
    u32::try_from(n).unwrap_or(u32::MAX)
}

/// Live connection counts of these users, in order.
pub(crate) async fn user_connections(
    s: &Shared,
    user_ids: &[String],
) -> Result<Vec<u32>, BackendError> {
    if user_ids.is_empty() {
        return Ok(Vec::new());
    }
    let mut p = Batch::new();
    for u in user_ids {
        p.cmd("HGETALL").arg(s.keys.conns(u));
    }
    let all: Vec<HashMap<String, String>> = s.redis.batch("user_connections", &p).await?;
    let nodes: HashSet<&str> = all
        .iter()
        .flat_map(|h| h.values().map(String::as_str))
        .collect();
    let alive = live(s, &nodes).await?;
    let mut stale: HashMap<(String, String), Vec<String>> = HashMap::new();
    let mut out = Vec::with_capacity(user_ids.len());
    for (u, conns) in user_ids.iter().zip(&all) {
        let mut n = 0;
        for (conn_id, node) in conns {
            if alive.contains(node) {
                n += 1;
            } else {
                stale
                    .entry((node.clone(), s.keys.conns(u)))
                    .or_default()
                    .push(conn_id.clone());
            }
        }
        out.push(count(n));
    }
    if !stale.is_empty() {
        reap(s, stale).await;
    }
    Ok(out)
}

/// A room's online subscribers with their connection counts, sorted by user id.
pub(crate) async fn room_presence(
    s: &Shared,
    room_id: &str,
) -> Result<Vec<PresenceEntry>, BackendError> {
    let key = s.keys.room_subs(room_id);
    let mut c = redis::cmd("HGETALL");
    c.arg(&key);
    let subs: HashMap<String, String> = s.redis.query("room_presence", &c).await?;
    let mut parsed = Vec::with_capacity(subs.len());
    for (conn_id, v) in &subs {
        let (user, node) = v
            .rsplit_once('\t')
            .ok_or_else(|| bad_reply("room_presence", format!("entry {v:?}")))?;
        parsed.push((conn_id, user, node));
    }
    let nodes: HashSet<&str> = parsed.iter().map(|(_, _, n)| *n).collect();
    let alive = live(s, &nodes).await?;
    let mut users: BTreeMap<&str, usize> = BTreeMap::new();
    let mut stale: HashMap<(String, String), Vec<String>> = HashMap::new();
    for (conn_id, user, node) in parsed {
        if alive.contains(node) {
            *users.entry(user).or_default() += 1;
        } else {
            stale
                .entry((node.to_owned(), key.clone()))
                .or_default()
                .push(conn_id.clone());
        }
    }
    let out = users
        .into_iter()
        .map(|(user_id, n)| PresenceEntry {
            user_id: user_id.to_owned(),
            connections: count(n),
        })
        .collect();
    if !stale.is_empty() {
        reap(s, stale).await;
    }
    Ok(out)
}
