//! The registry of live connections, tied to node leases.
//!
//! Each node holds a lease: `Pnode:<id>` (its announce JSON) with a TTL of `lease`, renewed every
//! `lease / 3`. Every entry a node writes (`Pconns:<user>`, `Proomsubs:<room>`) names the node,
//! and is also listed in the node's index set, so that:
//! - reads count only entries whose node's lease exists: a crashed node's connections stop
//!   counting as soon as its lease expires, and stale entries met on the way are removed;
//! - a sweeper in every node removes the entries of nodes whose lease is gone, via their index;
//! - a node keeps a mirror in memory of what it registered. If a renewal finds its lease gone
//!   (Redis restarted, or the node could not reach it for a whole lease and was swept), it takes
//!   the lease again and writes every entry again from the mirror.
//!
//! Entries are written under this backend's node id (the one holding the lease), whatever the
//! `node_id` field of the [`ConnEntry`](switchboard_core::backend::ConnEntry) says.
//!
//! This file holds what the parts share: the entries, the mirror, the write of a batch of
//! entries, and the lease check; [`connections`] registers, [`reads`] counts, [`lease`] keeps
//! this node's lease, [`sweep`] removes other nodes' entries, [`nodes`] lists live nodes.

mod connections;
mod lease;
mod nodes;
mod reads;
mod sweep;

pub(crate) use connections::{
    add_connection, add_room_subscriber, remove_connection, remove_room_subscriber,
};
pub(crate) use lease::{lease_task, release_lease, take_lease};
pub(crate) use nodes::live_nodes;
pub(crate) use reads::{room_presence, user_connections};
pub(crate) use sweep::sweeper_task;

use crate::Shared;
use crate::batch::Batch;
use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use switchboard_core::backend::BackendError;

/// Entries removed per sweep script call, and written per pipeline when registering again.
const BATCH: usize = 500;

/// One registry entry.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Entry {
    /// A live connection of a user.
    Conn {
        user_id: Arc<str>,
        conn_id: Arc<str>,
    },
    /// A connection subscribed to a room.
    Room {
        room_id: String,
        user_id: Arc<str>,
        conn_id: Arc<str>,
    },
}

impl Entry {
    /// Its line in the node's index set (JSON, read by the sweep script).
    fn index_item(&self) -> String {
        let item = match self {
            Entry::Conn { user_id, conn_id } => ["c", user_id, conn_id],
            Entry::Room {
                room_id, conn_id, ..
            } => ["r", room_id, conn_id],
        };
        serde_json::to_string(&item).unwrap_or_default()
    }

    /// Adds the commands that write (or delete) it to `p`.
    fn write(&self, s: &Shared, p: &mut Batch, add: bool) {
        let me = &s.config.node_id;
        let (key, conn_id, value) = match self {
            Entry::Conn { user_id, conn_id } => (s.keys.conns(user_id), conn_id, me.clone()),
            Entry::Room {
                room_id,
                user_id,
                conn_id,
            } => (
                s.keys.room_subs(room_id),
                conn_id,
                format!("{user_id}\t{me}"),
            ),
        };
        let index = s.keys.node_entries(me);
        if add {
            p.cmd("HSET").arg(key).arg(&**conn_id).arg(value).ignore();
            p.cmd("SADD").arg(index).arg(self.index_item()).ignore();
        } else {
            p.cmd("HDEL").arg(key).arg(&**conn_id).ignore();
            p.cmd("SREM").arg(index).arg(self.index_item()).ignore();
        }
    }
}

/// One connection as this node registered it.
#[derive(Debug, Default)]
struct Registered {
    /// Shared with the connection's session (see [`ConnEntry`](switchboard_core::backend::ConnEntry)).
    user_id: Arc<str>,
    /// `add_connection` was called (and not undone).
    connected: bool,
    /// Rooms it subscribed to.
    rooms: HashSet<String>,
}

/// What this node registered, kept in memory so that it can be written again.
#[derive(Debug, Default)]
pub(crate) struct Mirror {
    conns: HashMap<Arc<str>, Registered>,
    /// Removals that failed (Redis unreachable), retried after each successful renewal.
    pending: Vec<Entry>,
}

impl Mirror {
    fn forget_pending(&mut self, e: &Entry) {
        self.pending.retain(|p| p != e);
    }

    /// Drops a connection's record once nothing is left in it.
    fn tidy(&mut self, conn_id: &str) {
        if self
            .conns
            .get(conn_id)
            .is_some_and(|r| !r.connected && r.rooms.is_empty())
        {
            self.conns.remove(conn_id);
        }
    }

    /// Every entry, for writing them all again.
    fn entries(&self) -> Vec<Entry> {
        let mut out = Vec::new();
        for (conn_id, r) in &self.conns {
            if r.connected {
                out.push(Entry::Conn {
                    user_id: r.user_id.clone(),
                    conn_id: conn_id.clone(),
                });
            }
            for room_id in &r.rooms {
                out.push(Entry::Room {
                    room_id: room_id.clone(),
                    user_id: r.user_id.clone(),
                    conn_id: conn_id.clone(),
                });
            }
        }
        out
    }
}

/// Writes or deletes entries, with their index items, in one MULTI.
async fn apply(s: &Shared, entries: &[Entry], add: bool) -> Result<(), BackendError> {
    if entries.is_empty() {
        return Ok(());
    }
    let mut p = Batch::new();
    p.atomic();
    for e in entries {
        e.write(s, &mut p, add);
    }
    s.redis.batch::<()>("registry write", &p).await
}

/// A write failed: whatever part of it Redis may have applied is deleted later.
fn retry_removal(s: &Shared, entries: Vec<Entry>) {
    s.mirror.lock().pending.extend(entries);
}

/// Which of `nodes` hold a lease now (one pipelined EXISTS each).
async fn live(s: &Shared, nodes: &HashSet<&str>) -> Result<HashSet<String>, BackendError> {
    let nodes: Vec<&str> = nodes.iter().copied().collect();
    if nodes.is_empty() {
        return Ok(HashSet::new());
    }
    let mut p = Batch::new();
    for n in &nodes {
        p.cmd("EXISTS").arg(s.keys.node(n));
    }
    let exists: Vec<bool> = s.redis.batch("checking node leases", &p).await?;
    Ok(nodes
        .into_iter()
        .zip(exists)
        .filter(|(_, e)| *e)
        .map(|(n, _)| n.to_owned())
        .collect())
}
