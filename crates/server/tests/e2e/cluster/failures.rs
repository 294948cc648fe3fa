//! What happens when part of a cluster fails: a node killed with SIGKILL (its users go offline
//! within the lease, the offline webhook fires, they resume elsewhere), a Redis outage (publishes
//! fail fast, connections stay, everything heals), and a wrong Redis URL at start.

use super::{cluster_node, eventually, online};
use crate::common;
use common::*;
use serde_json::json;
use std::time::{Duration, Instant};
use switchboard_testkit::RedisServer;

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
