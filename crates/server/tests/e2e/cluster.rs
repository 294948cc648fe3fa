//! Cluster mode on a real Redis started by the test: several nodes form one system. Tokens made
//! on one node work on all; concurrent publishers on different nodes still produce one seq
//! order; a node with no interested connection receives nothing; a crashed node's users go
//! offline within the lease; a Redis outage fails publishes fast and heals when Redis returns.

use crate::common;
use common::*;
use serde_json::json;
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

async fn metrics_text(node: &TestNode) -> String {
    reqwest::get(format!("http://{}/metrics", node.addr))
        .await
        .unwrap()
        .text()
        .await
        .unwrap()
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

/// A webhook receiver on 127.0.0.1 recording every JSON body it gets.
async fn hook_receiver() -> (
    std::sync::Arc<std::sync::Mutex<Vec<serde_json::Value>>>,
    String,
) {
    let seen: std::sync::Arc<std::sync::Mutex<Vec<serde_json::Value>>> = Default::default();
    let record = seen.clone();
    let app = axum::Router::new().route(
        "/hook",
        axum::routing::post(move |body: axum::Json<serde_json::Value>| {
            let record = record.clone();
            async move {
                record.lock().unwrap().push(body.0);
                axum::http::StatusCode::NO_CONTENT
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/hook", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    (seen, url)
}

async fn online(http: &Http, token: &str, user: &str) -> u64 {
    let (_, v) = http
        .get(&format!("/v1/presence/users?ids={user}"), token)
        .await;
    v["users"][user]["connections"].as_u64().unwrap_or(0)
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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigkill_of_a_node_makes_its_users_offline_and_they_resume_elsewhere() {
    let redis = RedisServer::start();
    let url = redis.url();
    let (hooks, hook_url) = hook_receiver().await;
    let args = [
        "--redis",
        url.as_str(),
        "--lease-ms",
        "2000",
        "--publish-rate",
        "0",
        "--webhook-url",
        hook_url.as_str(),
        "--webhook-secret",
        "a-webhook-secret-of-32-bytes-or-more",
    ];
    let d1 = tempfile::tempdir().unwrap();
    let d2 = tempfile::tempdir().unwrap();
    let d3 = tempfile::tempdir().unwrap();
    let n1 = NodeProcess::start(d1.path(), &args).await;
    let n2 = NodeProcess::start(d2.path(), &args).await;
    let mut n3 = NodeProcess::start(d3.path(), &args).await;
    let (_, alice) = n1.http.user("alice").await;
    let (bob_id, bob) = n1.http.user("bob").await;
    let room = n1.http.room(&alice, "crashy", "public").await;
    let conv = format!("room:{room}");

    let mut on3 = WsClient::connect(&format!("{}?token={bob}", n3.ws_url())).await;
    on3.expect("welcome").await;
    on3.request(json!({"type": "subscribe", "conv": conv}), 1)
        .await;
    for i in 1..=3 {
        n1.http.publish(&alice, &room, json!(i)).await;
    }
    let last = on3.messages(&conv, 3).await.last().unwrap()["seq"]
        .as_u64()
        .unwrap();
    assert_eq!(online(&n1.http, &alice, &bob_id).await, 1);

    // While he is online, a DM reaches him and fires no webhook.
    n1.http
        .post(
            &format!("/v1/users/{bob_id}/messages"),
            &alice,
            json!({"body": "online"}),
        )
        .await;
    assert_eq!(
        on3.messages(&format!("user:{bob_id}"), 1).await[0]["body"],
        "online"
    );
    n3.signal("KILL");
    n3.wait(WAIT).await;
    let killed = Instant::now();
    for i in 4..=6 {
        n1.http.publish(&alice, &room, json!(i)).await;
    }
    eventually(
        Duration::from_secs(8),
        "bob reads offline after his node died",
        || async { online(&n1.http, &alice, &bob_id).await == 0 },
    )
    .await;
    let converged = killed.elapsed();
    // A DM to him now fires the offline webhook (nothing fired while he was online).
    let (s, _) = n1
        .http
        .post(
            &format!("/v1/users/{bob_id}/messages"),
            &alice,
            json!({"body": "you there?"}),
        )
        .await;
    assert_eq!(s, 201);
    eventually(
        Duration::from_secs(15),
        "the offline webhook fires for the crashed node's user",
        || async {
            hooks
                .lock()
                .unwrap()
                .iter()
                .any(|v| v["user_id"] == bob_id.as_str())
        },
    )
    .await;
    let fired: Vec<serde_json::Value> = hooks
        .lock()
        .unwrap()
        .iter()
        .map(|v| v["message"]["body"].clone())
        .collect();
    assert_eq!(
        fired,
        vec![json!("you there?")],
        "only the DM sent after the crash fires the hook"
    );
    assert!(
        converged < Duration::from_secs(6),
        "presence took {converged:?} with a 2 s lease"
    );
    let (_, p) = n2
        .http
        .get(&format!("/v1/rooms/{room}/presence"), &alice)
        .await;
    assert_eq!(
        p["users"],
        json!([]),
        "room presence forgets the dead node's subscribers"
    );

    // Bob resumes on another node and gets exactly what he missed.
    let mut on2 = WsClient::connect(&n2.ws_url()).await;
    on2.send(json!({"type": "auth", "token": bob, "resume": {conv.clone(): last}}))
        .await;
    on2.expect("welcome").await;
    let rest = on2.messages(&conv, 3).await;
    assert_eq!(
        rest.iter()
            .map(|m| m["seq"].as_u64().unwrap())
            .collect::<Vec<_>>(),
        vec![4, 5, 6]
    );
    assert_eq!(online(&n1.http, &alice, &bob_id).await, 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_redis_outage_fails_publishes_fast_keeps_connections_and_heals() {
    let mut redis = RedisServer::start_with(true);
    let a = cluster_node(&redis, "na").await;
    let b = cluster_node(&redis, "nb").await;
    let (_, token) = a.user("steady").await;
    let room = a.http.room(&token, "outage", "public").await;
    let conv = format!("room:{room}");
    let mut sub = b.connect(&token).await;
    sub.request(json!({"type": "subscribe", "conv": conv}), 1)
        .await;
    for i in 1..=3 {
        a.http.publish(&token, &room, json!(i)).await;
    }
    sub.messages(&conv, 3).await;

    redis.stop();
    let started = Instant::now();
    let (s, v) = a
        .http
        .post(
            &format!("/v1/rooms/{room}/messages"),
            &token,
            json!({"body": "lost?"}),
        )
        .await;
    assert_eq!(s, 503, "{v}");
    assert_eq!(v["error"]["code"], "unavailable");
    assert!(
        started.elapsed() < Duration::from_secs(10),
        "publish took {:?}",
        started.elapsed()
    );
    eventually(
        Duration::from_secs(10),
        "readyz reports not ready",
        || async { a.http.call("GET", "/readyz", None, None).await.0 == 503 },
    )
    .await;
    let (s, _) = a.http.call("GET", "/healthz", None, None).await;
    assert_eq!(s, 200, "the node stays up");
    // Live connections stay open through the outage.
    assert_eq!(
        sub.request(json!({"type": "ping"}), 2).await["type"],
        "pong"
    );

    redis.restart();
    eventually(Duration::from_secs(20), "readyz recovers", || async {
        a.http.call("GET", "/readyz", None, None).await.0 == 200
    })
    .await;
    // Seqs continue where they were (nothing was stored for the failed publish)...
    let deadline = Instant::now() + Duration::from_secs(10);
    let next = loop {
        let (s, v) = a
            .http
            .post(
                &format!("/v1/rooms/{room}/messages"),
                &token,
                json!({"body": 4}),
            )
            .await;
        if s == 201 {
            break v["seq"].as_u64().unwrap();
        }
        assert!(
            Instant::now() < deadline,
            "publishing never recovered: {s} {v}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert_eq!(next, 4);
    for i in 5..=6 {
        a.http.publish(&token, &room, json!(i)).await;
    }
    // ...and the subscriber that stayed connected on the other node gets them, in order.
    let got = sub.messages(&conv, 3).await;
    let seqs: Vec<u64> = got.iter().map(|m| m["seq"].as_u64().unwrap()).collect();
    assert_eq!(seqs, vec![4, 5, 6]);
    a.stop().await;
    b.stop().await;
}

#[tokio::test]
async fn a_wrong_redis_url_is_reported_at_start_with_a_nonzero_exit() {
    let dir = tempfile::tempdir().unwrap();
    let port = switchboard_testkit::free_port();
    let out = tokio::time::timeout(
        Duration::from_secs(20),
        tokio::process::Command::new(env!("CARGO_BIN_EXE_switchboard"))
            .args([
                "serve",
                "--listen",
                "127.0.0.1:0",
                "--tcp-listen",
                "off",
                "--redis",
            ])
            .arg(format!("redis://127.0.0.1:{port}/"))
            .arg("--data-dir")
            .arg(dir.path())
            .output(),
    )
    .await
    .expect("the node must give up on an unreachable Redis quickly")
    .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains(&format!("127.0.0.1:{port}")),
        "the message names the URL: {err}"
    );
}
