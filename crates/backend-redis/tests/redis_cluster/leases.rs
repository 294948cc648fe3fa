//! Registry, leases and presence on the cluster, where a node's lease and index, a user's
//! connections and a room's subscribers are in different slots: a crashed node's entries stop
//! counting within a lease and are swept from every slot; closing removes them at once.

use crate::common::{conn, connect, eventually};
use std::sync::Arc;
use std::time::Duration;
use switchboard_backend_redis::RedisBackend;
use switchboard_backend_redis::key_slot;
use switchboard_conformance::RecordingSink;
use switchboard_core::backend::{Lifecycle, Registry};
use switchboard_testkit::RedisCluster;

const LEASE: Duration = Duration::from_secs(1);

/// Two nodes on the shared cluster under one fresh prefix, with `lease`: (a, b, prefix, b's id).
async fn two_nodes(lease: Duration) -> (Arc<RedisBackend>, Arc<RedisBackend>, String, String) {
    let mut ca = crate::config(crate::shared());
    ca.lease = lease;
    let mut cb = ca.clone();
    cb.node_id = format!("{}-b", ca.node_id);
    let (p, b_id) = (ca.key_prefix.clone(), cb.node_id.clone());
    let a = connect(ca, RecordingSink::new()).await;
    let b = connect(cb, RecordingSink::new()).await;
    (a, b, p, b_id)
}

/// A command on the master of `key`'s slot, as an integer.
fn int(cluster: &RedisCluster, args: &[&str], key: &str) -> i64 {
    let master = cluster.master_of_slot(key_slot(key)).expect("a master");
    let mut all = vec![args[0], key];
    all.extend(&args[1..]);
    let out = cluster.run(master, &all);
    out.trim()
        .parse()
        .unwrap_or_else(|_| panic!("not an integer: {out:?}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_crashed_nodes_entries_vanish_and_are_swept_from_every_slot() {
    let cluster = crate::shared();
    let (a, b, p, b_id) = two_nodes(LEASE).await;
    let users = vec!["u".to_owned()];
    let on_b = conn("c_b1", "u");
    b.add_connection(&on_b).await.unwrap();
    b.add_room_subscriber("r1", &on_b).await.unwrap();
    assert_eq!(a.user_connections(&users).await.unwrap(), vec![1]);
    assert_eq!(a.room_presence("r1").await.unwrap().len(), 1);
    assert_eq!(a.live_nodes().await.unwrap().len(), 2);

    b.stop_renewing_for_test();
    eventually(LEASE * 3, "A sees u offline", || async {
        a.user_connections(&users).await.unwrap() == vec![0]
            && a.room_presence("r1").await.unwrap().is_empty()
    })
    .await;
    let conns = format!("{p}{{user:u}}:conns");
    let subs = format!("{p}{{room:r1}}:subs");
    let entries = format!("{p}{{node:{b_id}}}:entries");
    let nodes = format!("{p}nodes");
    eventually(LEASE * 4, "B's entries are swept", || async {
        int(cluster, &["HLEN"], &conns) == 0
            && int(cluster, &["HLEN"], &subs) == 0
            && int(cluster, &["SCARD"], &entries) == 0
            && int(cluster, &["SISMEMBER", &b_id], &nodes) == 0
    })
    .await;
    assert_eq!(a.live_nodes().await.unwrap().len(), 1, "B is gone");
    a.close().await;
    b.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn closing_a_node_removes_its_entries_at_once() {
    let cluster = crate::shared();
    let (a, b, p, b_id) = two_nodes(Duration::from_secs(3)).await;
    b.add_connection(&conn("c1", "u")).await.unwrap();
    b.add_room_subscriber("r1", &conn("c1", "u")).await.unwrap();
    b.close().await;
    assert_eq!(a.user_connections(&["u".into()]).await.unwrap(), vec![0]);
    assert_eq!(int(cluster, &["HLEN"], &format!("{p}{{user:u}}:conns")), 0);
    assert_eq!(int(cluster, &["HLEN"], &format!("{p}{{room:r1}}:subs")), 0);
    assert_eq!(
        int(cluster, &["EXISTS"], &format!("{p}{{node:{b_id}}}:lease")),
        0
    );
    assert_eq!(a.live_nodes().await.unwrap().len(), 1);
    a.close().await;
}
