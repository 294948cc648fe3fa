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
//! `node_id` field of the [`ConnEntry`] says.

use crate::Shared;
use crate::batch::Batch;
use crate::error::bad_reply;
use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;
use switchboard_core::backend::{BackendError, ConnEntry, NodeAnnouncement};
use switchboard_proto::frame::PresenceEntry;

/// Entries removed per sweep script call, and written per pipeline when registering again.
const BATCH: usize = 500;

/// One registry entry.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Entry {
    /// A live connection of a user.
    Conn { user_id: String, conn_id: String },
    /// A connection subscribed to a room.
    Room {
        room_id: String,
        user_id: String,
        conn_id: String,
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
            p.cmd("HSET").arg(key).arg(conn_id).arg(value).ignore();
            p.cmd("SADD").arg(index).arg(self.index_item()).ignore();
        } else {
            p.cmd("HDEL").arg(key).arg(conn_id).ignore();
            p.cmd("SREM").arg(index).arg(self.index_item()).ignore();
        }
    }
}

/// One connection as this node registered it.
#[derive(Debug, Default)]
struct Registered {
    user_id: String,
    /// `add_connection` was called (and not undone).
    connected: bool,
    /// Rooms it subscribed to.
    rooms: HashSet<String>,
}

/// What this node registered, kept in memory so that it can be written again.
#[derive(Debug, Default)]
pub(crate) struct Mirror {
    conns: HashMap<String, Registered>,
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

/// A connection authenticated.
pub(crate) async fn add_connection(s: &Shared, conn: &ConnEntry) -> Result<(), BackendError> {
    let e = Entry::Conn {
        user_id: conn.user_id.clone(),
        conn_id: conn.conn_id.clone(),
    };
    let was_connected = {
        let mut m = s.mirror.lock();
        m.forget_pending(&e);
        let r = m.conns.entry(conn.conn_id.clone()).or_default();
        r.user_id = conn.user_id.clone();
        std::mem::replace(&mut r.connected, true)
    };
    let result = apply(s, std::slice::from_ref(&e), true).await;
    if result.is_err() && !was_connected {
        let mut m = s.mirror.lock();
        if let Some(r) = m.conns.get_mut(&conn.conn_id) {
            r.connected = false;
        }
        m.tidy(&conn.conn_id);
        drop(m);
        retry_removal(s, vec![e]);
    }
    result
}

/// A connection ended: it leaves its user and every room it was in.
pub(crate) async fn remove_connection(s: &Shared, conn: &ConnEntry) -> Result<(), BackendError> {
    let mut entries = vec![Entry::Conn {
        user_id: conn.user_id.clone(),
        conn_id: conn.conn_id.clone(),
    }];
    if let Some(r) = s.mirror.lock().conns.remove(&conn.conn_id) {
        for room_id in r.rooms {
            entries.push(Entry::Room {
                room_id,
                user_id: r.user_id.clone(),
                conn_id: conn.conn_id.clone(),
            });
        }
    }
    let result = apply(s, &entries, false).await;
    if result.is_err() {
        retry_removal(s, entries);
    }
    result
}

/// A connection subscribed to a room.
pub(crate) async fn add_room_subscriber(
    s: &Shared,
    room_id: &str,
    conn: &ConnEntry,
) -> Result<(), BackendError> {
    let e = Entry::Room {
        room_id: room_id.to_owned(),
        user_id: conn.user_id.clone(),
        conn_id: conn.conn_id.clone(),
    };
    let was_there = {
        let mut m = s.mirror.lock();
        m.forget_pending(&e);
        let r = m.conns.entry(conn.conn_id.clone()).or_default();
        r.user_id = conn.user_id.clone();
        !r.rooms.insert(room_id.to_owned())
    };
    let result = apply(s, std::slice::from_ref(&e), true).await;
    if result.is_err() && !was_there {
        let mut m = s.mirror.lock();
        if let Some(r) = m.conns.get_mut(&conn.conn_id) {
            r.rooms.remove(room_id);
        }
        m.tidy(&conn.conn_id);
        drop(m);
        retry_removal(s, vec![e]);
    }
    result
}

/// A connection left a room.
pub(crate) async fn remove_room_subscriber(
    s: &Shared,
    room_id: &str,
    conn: &ConnEntry,
) -> Result<(), BackendError> {
    {
        let mut m = s.mirror.lock();
        if let Some(r) = m.conns.get_mut(&conn.conn_id) {
            r.rooms.remove(room_id);
        }
        m.tidy(&conn.conn_id);
    }
    let e = Entry::Room {
        room_id: room_id.to_owned(),
        user_id: conn.user_id.clone(),
        conn_id: conn.conn_id.clone(),
    };
    let result = apply(s, std::slice::from_ref(&e), false).await;
    if result.is_err() {
        retry_removal(s, vec![e]);
    }
    result
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

/// Writes the lease (and adds the node to the node set).
async fn write_lease(s: &Shared) -> Result<(), BackendError> {
    let me = &s.config.node_id;
    let mut p = Batch::new();
    p.atomic()
        .cmd("SET")
        .arg(s.keys.node(me))
        .arg(announcement(s))
        .arg("PX")
        .arg(lease_ms(s))
        .ignore()
        .cmd("SADD")
        .arg(s.keys.nodes())
        .arg(me)
        .ignore();
    s.redis.batch::<()>("taking the node lease", &p).await
}

fn lease_ms(s: &Shared) -> u64 {
    u64::try_from(s.config.lease.as_millis())
        .unwrap_or(u64::MAX)
        .max(1)
}

/// Removes a node's entries through its index, a batch per call. Without `force`, only while its
/// lease is gone (and then the node leaves the node set too).
async fn sweep_node(s: &Shared, node: &str, force: bool) -> Result<(), BackendError> {
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

/// At start: clears what an earlier run with this node id left behind (its connections died
/// with it), then takes the lease.
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

pub(crate) async fn take_lease(s: &Shared) -> Result<(), BackendError> {
    let me = &s.config.node_id;
    let mut c = redis::cmd("EXISTS");
    c.arg(s.keys.node(me));
    let held: bool = s.redis.query("checking the node lease", &c).await?;
    if held {
        tracing::warn!(
            node = %me,
            "this node id already holds a lease: an earlier run that did not close, or another \
             process with the same id (node ids must be unique); taking it over"
        );
    }
    sweep_node(s, me, true).await?;
    write_lease(s).await?;
    s.health.lease_ok.store(true, Ordering::SeqCst);
    Ok(())
}

/// Renews the lease; if it was gone, takes it again and writes every entry from the mirror.
async fn renew(s: &Shared) -> Result<(), BackendError> {
    let mut c = redis::cmd("SET");
    c.arg(s.keys.node(&s.config.node_id))
        .arg(announcement(s))
        .arg("PX")
        .arg(lease_ms(s))
        .arg("XX");
    let renewed: Option<String> = s.redis.query("renewing the node lease", &c).await?;
    if renewed.is_some() {
        return Ok(());
    }
    tracing::warn!(
        node = %s.config.node_id,
        "the node lease was gone (Redis restarted or was unreachable for a whole lease); \
         registering this node's connections again"
    );
    write_lease(s).await?;
    let entries = s.mirror.lock().entries();
    for chunk in entries.chunks(BATCH) {
        apply(s, chunk, true).await?;
    }
    Ok(())
}

/// Retries removals that failed earlier.
async fn flush_pending(s: &Shared) {
    let pending = std::mem::take(&mut s.mirror.lock().pending);
    if pending.is_empty() {
        return;
    }
    if apply(s, &pending, false).await.is_err() {
        s.mirror.lock().pending.extend(pending);
    }
}

/// Renews the lease every `lease / 3` and keeps the health flag. After repeated failures it also
/// replaces the command connection, in case that one is stuck.
pub(crate) async fn lease_task(s: Arc<Shared>) {
    let period = (s.config.lease / 3).max(Duration::from_millis(50));
    let mut tick = tokio::time::interval_at(tokio::time::Instant::now() + period, period);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    // Failures in a row, and since the command connection was last replaced.
    let (mut failures, mut since_refresh) = (0u32, 0u32);
    loop {
        tokio::select! {
            _ = s.cancel.cancelled() => return,
            _ = tick.tick() => {}
        }
        if s.renewing_stopped.load(Ordering::SeqCst) {
            continue;
        }
        match renew(&s).await {
            Ok(()) => {
                if failures > 0 {
                    tracing::info!(url = %s.redis.url(), "Redis reachable again");
                }
                (failures, since_refresh) = (0, 0);
                s.health.lease_ok.store(true, Ordering::SeqCst);
                flush_pending(&s).await;
            }
            Err(e) => {
                if failures == 0 {
                    tracing::warn!(error = %e, "renewing the node lease failed");
                }
                failures += 1;
                since_refresh += 1;
                s.health.lease_ok.store(false, Ordering::SeqCst);
                if since_refresh >= 3 {
                    since_refresh = 0;
                    s.redis.refresh();
                }
            }
        }
    }
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

/// This node's lease value: its announcement's JSON.
fn announcement(s: &Shared) -> String {
    serde_json::to_string(&s.config.announce).expect("a node announcement serializes")
}

/// Live nodes with what they announced. The node id is the lease's (whatever the stored JSON
/// says); a lease whose value cannot be read (e.g. `null` from a node that announced nothing)
/// still counts, as an announcement naming the node only.
pub(crate) async fn live_nodes(s: &Shared) -> Result<Vec<NodeAnnouncement>, BackendError> {
    let mut c = redis::cmd("SMEMBERS");
    c.arg(s.keys.nodes());
    let mut nodes: Vec<String> = s.redis.query("listing nodes", &c).await?;
    if nodes.is_empty() {
        return Ok(Vec::new());
    }
    nodes.sort();
    let mut b = Batch::new();
    for n in &nodes {
        b.cmd("GET").arg(s.keys.node(n));
    }
    let leases: Vec<Option<String>> = s.redis.batch("reading node leases", &b).await?;
    Ok(nodes
        .into_iter()
        .zip(leases)
        .filter_map(|(n, lease)| Some(read_announcement(n, &lease?)))
        .collect())
}

/// A lease value as an announcement of `node_id`.
fn read_announcement(node_id: String, lease: &str) -> NodeAnnouncement {
    let announced = serde_json::from_str(lease).unwrap_or_default();
    NodeAnnouncement {
        node_id,
        ..announced
    }
}

/// At close: removes this node's entries and lease, so that its connections stop counting at
/// once instead of after the lease.
pub(crate) async fn release_lease(s: &Shared) {
    let me = &s.config.node_id;
    let result = async {
        sweep_node(s, me, true).await?;
        let mut p = Batch::new();
        p.atomic()
            .cmd("DEL")
            .arg(s.keys.node(me))
            .ignore()
            .cmd("SREM")
            .arg(s.keys.nodes())
            .arg(me)
            .ignore();
        s.redis.batch::<()>("releasing the node lease", &p).await
    }
    .await;
    if let Err(e) = result {
        tracing::warn!(error = %e, "releasing the node lease failed; it expires on its own");
    }
    *s.mirror.lock() = Mirror::default();
}

#[cfg(test)]
mod tests {
    use super::*;
    use switchboard_proto::Endpoints;

    #[test]
    fn announcements_read_what_earlier_nodes_stored() {
        // As written before the struct (a JSON object built field by field).
        let stored = r#"{"endpoints":{"poll":"http://h:1/v1/poll","tcp":null,"ws":"ws://h:1/v1/ws"},
            "gateway":true,"max_connections":5000,"node_id":"n_1","public_url":"http://h:1","weight":2}"#;
        let a = read_announcement("n_1".into(), stored);
        assert_eq!(
            a,
            NodeAnnouncement {
                node_id: "n_1".into(),
                public_url: Some("http://h:1".into()),
                endpoints: Endpoints {
                    ws: Some("ws://h:1/v1/ws".into()),
                    poll: Some("http://h:1/v1/poll".into()),
                    tcp: None,
                },
                weight: 2,
                max_connections: 5000,
                gateway: true,
            }
        );
        // And back: the same fields, so earlier nodes read this one.
        let again: serde_json::Value =
            serde_json::from_str(&serde_json::to_string(&a).unwrap()).unwrap();
        assert_eq!(
            again,
            serde_json::from_str::<serde_json::Value>(stored).unwrap()
        );
        // No announce data (`null`), or another node id inside: the lease's node, nothing else.
        assert_eq!(
            read_announcement("n_2".into(), "null"),
            NodeAnnouncement::new("n_2")
        );
        let other = read_announcement("n_3".into(), r#"{"node_id":"x","gateway":true}"#);
        assert_eq!((other.node_id.as_str(), other.gateway), ("n_3", true));
    }
}
