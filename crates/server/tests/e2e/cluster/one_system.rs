//! Several nodes on one Redis behave as one system: one seq order for concurrent publishers on
//! different nodes, no traffic for a node with no interested connection, logout, kicks and
//! presence across nodes, and a resume on another node with no gap and no duplicate.

use super::{cluster_node, eventually, online};
use crate::common;
use common::*;
use serde_json::json;
use std::time::Duration;
use switchboard_testkit::RedisServer;

async fn metrics_text(node: &TestNode) -> String {
    reqwest::get(format!("http://{}/metrics", node.addr))
        .await
        .unwrap()
        .text()
        .await
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_nodes_three_publishers_one_order_and_an_idle_node_receives_nothing() {
    let redis = RedisServer::start();
    let nodes = [
        cluster_node(&redis, "n1").await,
        cluster_node(&redis, "n2").await,
        cluster_node(&redis, "n3").await,
    ];
    let idle = cluster_node(&redis, "n4").await;

    // Shared state: register on n1, use the token everywhere.
    let (_, owner) = nodes[0].user("owner").await;
    let room = nodes[1].http.room(&owner, "everywhere", "public").await;
    let conv = format!("room:{room}");
    let (idle_user, idle_token) = nodes[2].user("idle").await;
    let mut idle_client = idle.connect(&idle_token).await;

    // Two subscribers on each node.
    let mut subs = Vec::new();
    for (i, node) in nodes.iter().enumerate() {
        for j in 0..2 {
            let (_, t) = node.user(&format!("sub{i}{j}")).await;
            let mut c = node.connect(&t).await;
            let r = c
                .request(json!({"type": "subscribe", "conv": conv}), 1)
                .await;
            assert_eq!(r["type"], "subscribed", "{r}");
            subs.push(c);
        }
    }
    let before_idle = metric(
        &metrics_text(&idle).await,
        "switchboard_bus_messages_received_total",
    );

    // One publisher per node, all at once.
    const PER: u64 = 150;
    let mut pubs = Vec::new();
    for (i, node) in nodes.iter().enumerate() {
        let (_, t) = node.user(&format!("pub{i}")).await;
        let mut c = node.connect(&t).await;
        let conv = conv.clone();
        pubs.push(tokio::spawn(async move {
            for k in 0..PER {
                c.send(
                    json!({"type": "publish", "id": k, "conv": conv, "body": {"node": i, "k": k}}),
                )
                .await;
            }
            let mut acks = 0;
            while acks < PER {
                let v = c.next().await.expect("publisher closed");
                assert_ne!(v["type"], "error", "{v}");
                if v["type"] == "published" {
                    acks += 1;
                }
            }
        }));
    }
    let total = 3 * PER;
    let mut readers = Vec::new();
    for mut c in subs {
        let conv = conv.clone();
        readers.push(tokio::spawn(async move {
            let got = c.messages(&conv, total as usize).await;
            let seqs: Vec<u64> = got.iter().map(|m| m["seq"].as_u64().unwrap()).collect();
            assert_eq!(
                seqs,
                (1..=total).collect::<Vec<_>>(),
                "every subscriber sees 1..N in order"
            );
        }));
    }
    for t in pubs.into_iter().chain(readers) {
        t.await.unwrap();
    }

    // Targeted routing: n4 has a live connection but no interest in the room.
    let after_idle = metric(
        &metrics_text(&idle).await,
        "switchboard_bus_messages_received_total",
    );
    assert_eq!(
        after_idle, before_idle,
        "a node without interested connections received room traffic"
    );
    let busy = metric(
        &metrics_text(&nodes[0]).await,
        "switchboard_bus_messages_received_total",
    );
    assert!(
        busy >= total as f64,
        "n1 should have received the room's messages: {busy}"
    );

    // The idle node still gets what its own connection wants: a DM sent via another node.
    nodes[0]
        .http
        .post(
            &format!("/v1/users/{idle_user}/messages"),
            &owner,
            json!({"body": "psst"}),
        )
        .await;
    let dm = idle_client.messages(&format!("user:{idle_user}"), 1).await;
    assert_eq!(dm[0]["body"], "psst");
    for n in nodes {
        n.stop().await;
    }
    idle.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn logout_and_kick_reach_connections_on_other_nodes_and_presence_is_cluster_wide() {
    let redis = RedisServer::start();
    let a = cluster_node(&redis, "na").await;
    let b = cluster_node(&redis, "nb").await;
    let (uid, token) = a.user("roamer").await;
    let (_, token2) = a.user("roamer").await;
    let room = a.http.room(&token, "lounge", "public").await;
    let mut on_b = b.connect(&token).await;
    on_b.request(
        json!({"type": "subscribe", "conv": format!("room:{room}")}),
        1,
    )
    .await;
    let mut on_a = a.connect(&token2).await;
    assert_eq!(online(&a.http, &token2, &uid).await, 2);
    let (_, p) = a
        .http
        .get(&format!("/v1/rooms/{room}/presence"), &token2)
        .await;
    assert_eq!(p["users"], json!([{"user_id": uid, "connections": 1}]));

    let (s, _) = a
        .http
        .call("DELETE", "/v1/sessions/current", Some(&token), None)
        .await;
    assert_eq!(s, 204);
    let frames = on_b.until_closed().await;
    assert_eq!(frames.last().unwrap()["reason"], "logged_out", "{frames:?}");
    eventually(Duration::from_secs(5), "presence drops to 1", || async {
        online(&a.http, &token2, &uid).await == 1
    })
    .await;

    let (s, _) = b
        .http
        .server(&format!("/v1/server/users/{uid}/disconnect"), json!({}))
        .await;
    assert_eq!(s, 204);
    let frames = on_a.until_closed().await;
    assert_eq!(frames.last().unwrap()["reason"], "kicked");
    a.stop().await;
    b.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_resumes_on_another_node_with_no_gap_and_no_duplicate() {
    let redis = RedisServer::start();
    let a = cluster_node(&redis, "na").await;
    let b = cluster_node(&redis, "nb").await;
    let (_, token) = a.user("mover").await;
    let room = a.http.room(&token, "trail", "public").await;
    let conv = format!("room:{room}");
    let mut c = a.connect(&token).await;
    c.request(json!({"type": "subscribe", "conv": conv}), 1)
        .await;
    for i in 1..=5 {
        a.http.publish(&token, &room, json!(i)).await;
    }
    let seen = c.messages(&conv, 5).await;
    let last = seen.last().unwrap()["seq"].as_u64().unwrap();
    drop(c);
    for i in 6..=9 {
        b.http.publish(&token, &room, json!(i)).await;
    }
    let mut c = WsClient::connect(&b.ws_url()).await;
    c.send(json!({"type": "auth", "token": token, "resume": {conv.clone(): last}}))
        .await;
    let w = c.expect("welcome").await;
    assert_eq!(w["resumed"][&conv]["recovered"], true);
    a.http.publish(&token, &room, json!(10)).await;
    let rest = c.messages(&conv, 5).await;
    let seqs: Vec<u64> = rest.iter().map(|m| m["seq"].as_u64().unwrap()).collect();
    assert_eq!(seqs, vec![6, 7, 8, 9, 10]);
    a.stop().await;
    b.stop().await;
}
