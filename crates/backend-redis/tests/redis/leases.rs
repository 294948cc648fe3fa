//! The registry is tied to node leases: a node that stops renewing (a crash) disappears from
//! presence within about one lease, its entries are swept from Redis, and it leaves the list of
//! live nodes. A node whose lease vanished while it was alive registers everything again.

use crate::common;
use common::conn;

use common::{connect, eventually};
use std::time::{Duration, Instant};
use switchboard_backend_redis::RedisConfig;
use switchboard_conformance::RecordingSink;
use switchboard_core::backend::{Lifecycle, NodeAnnouncement, Registry};
use switchboard_proto::frame::PresenceEntry;
use switchboard_testkit::RedisServer;

const LEASE: Duration = Duration::from_secs(1);

fn node_config(redis: &RedisServer, node: &str) -> RedisConfig {
    let mut c = common::config(redis, "sb:", node);
    c.lease = LEASE;
    c.announce = NodeAnnouncement {
        public_url: Some(format!("http://{node}.example")),
        ..NodeAnnouncement::new(node)
    };
    c
}

/// `INTEGER` from an inline command's `:<n>` reply.
fn int(reply: &str) -> i64 {
    reply
        .trim()
        .strip_prefix(':')
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("not an integer reply: {reply:?}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_crashed_nodes_connections_vanish_within_two_leases() {
    let redis = RedisServer::start();
    let a = connect(node_config(&redis, "a"), RecordingSink::new()).await;
    let b = connect(node_config(&redis, "b"), RecordingSink::new()).await;
    let users = vec!["u".to_owned()];

    let on_b = conn("c_b1", "u");
    b.add_connection(&on_b).await.expect("add_connection");
    b.add_room_subscriber("r1", &on_b)
        .await
        .expect("add_room_subscriber");
    assert_eq!(
        a.user_connections(&users).await.unwrap(),
        vec![1],
        "A sees u online"
    );
    assert_eq!(
        a.room_presence("r1").await.unwrap(),
        vec![PresenceEntry {
            user_id: "u".into(),
            connections: 1
        }],
        "A sees u in the room"
    );
    let nodes: Vec<String> = a
        .live_nodes()
        .await
        .unwrap()
        .into_iter()
        .map(|n| n.node_id)
        .collect();
    assert_eq!(nodes, vec!["a", "b"]);
    let announce = &a.live_nodes().await.unwrap()[1];
    assert_eq!(
        announce.public_url.as_deref(),
        Some("http://b.example"),
        "the announce value is kept"
    );

    b.stop_renewing_for_test();
    let crashed = Instant::now();
    let offline = eventually(LEASE * 2, "A sees u offline", || async {
        a.user_connections(&users).await.unwrap() == vec![0]
    })
    .await;
    eventually(LEASE * 2, "the room is empty for A", || async {
        a.room_presence("r1").await.unwrap().is_empty()
    })
    .await;
    eventually(LEASE * 3, "B's entries are swept from Redis", || async {
        int(&redis.command("HLEN sb:conns:u")) == 0
            && int(&redis.command("HLEN sb:roomsubs:r1")) == 0
            && int(&redis.command("SCARD sb:nodeentries:b")) == 0
            && int(&redis.command("SISMEMBER sb:nodes b")) == 0
    })
    .await;
    let swept = crashed.elapsed();
    let nodes: Vec<String> = a
        .live_nodes()
        .await
        .unwrap()
        .into_iter()
        .map(|n| n.node_id)
        .collect();
    assert_eq!(nodes, vec!["a"], "B is no longer a live node");
    eprintln!("lease {LEASE:?}: offline for A after {offline:?}, swept after {swept:?}");

    a.close().await;
    b.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_whose_lease_vanished_registers_its_connections_again() {
    let redis = RedisServer::start();
    let a = connect(node_config(&redis, "a"), RecordingSink::new()).await;
    let b = connect(node_config(&redis, "b"), RecordingSink::new()).await;
    let users = vec!["u".to_owned(), "v".to_owned()];
    b.add_connection(&conn("c1", "u")).await.unwrap();
    b.add_connection(&conn("c2", "v")).await.unwrap();
    b.add_room_subscriber("r1", &conn("c1", "u")).await.unwrap();

    // As if B had been unreachable for a whole lease and A had swept it.
    assert!(redis.command("DEL sb:node:b").starts_with(":1"));
    assert_eq!(
        a.user_connections(&users).await.unwrap(),
        vec![0, 0],
        "B's lease is gone"
    );
    eventually(LEASE * 3, "B registers again", || async {
        a.user_connections(&users).await.unwrap() == vec![1, 1]
            && a.room_presence("r1").await.unwrap().len() == 1
    })
    .await;
    assert!(b.ready().await);
    a.close().await;
    b.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn closing_a_node_removes_its_entries_at_once() {
    let redis = RedisServer::start();
    let a = connect(node_config(&redis, "a"), RecordingSink::new()).await;
    let b = connect(node_config(&redis, "b"), RecordingSink::new()).await;
    b.add_connection(&conn("c1", "u")).await.unwrap();
    b.add_room_subscriber("r1", &conn("c1", "u")).await.unwrap();
    b.close().await;
    assert_eq!(a.user_connections(&["u".into()]).await.unwrap(), vec![0]);
    assert_eq!(int(&redis.command("HLEN sb:conns:u")), 0);
    assert_eq!(int(&redis.command("HLEN sb:roomsubs:r1")), 0);
    assert_eq!(int(&redis.command("EXISTS sb:node:b")), 0);
    let nodes: Vec<String> = a
        .live_nodes()
        .await
        .unwrap()
        .into_iter()
        .map(|n| n.node_id)
        .collect();
    assert_eq!(nodes, vec!["a"]);
    a.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restarted_node_clears_what_its_previous_run_left() {
    let redis = RedisServer::start();
    let first = connect(node_config(&redis, "b"), RecordingSink::new()).await;
    first.add_connection(&conn("c1", "u")).await.unwrap();
    first.stop_renewing_for_test();
    drop(first); // a crash: no close

    let again = connect(node_config(&redis, "b"), RecordingSink::new()).await;
    assert_eq!(
        again.user_connections(&["u".into()]).await.unwrap(),
        vec![0],
        "the previous run's connections died with it"
    );
    again.close().await;
}
