//! The HTTP API where sockets matter: what involves WebSocket clients (logout, kicks, presence,
//! connection counts, refused upgrades) and a restart. The request/response checks of every
//! endpoint run in-process, in `http_inprocess.rs`.

use crate::common;
use common::*;
use serde_json::{Value, json};
use tokio_tungstenite::tungstenite;

// ----- helpers -----

/// Sends a hand-built request; returns (status, headers, JSON body or Null).
async fn send(req: reqwest::RequestBuilder) -> (u16, reqwest::header::HeaderMap, Value) {
    let resp = req.send().await.expect("HTTP request");
    let status = resp.status().as_u16();
    let headers = resp.headers().clone();
    let text = resp.text().await.unwrap_or_default();
    (
        status,
        headers,
        serde_json::from_str(&text).unwrap_or(Value::Null),
    )
}

/// A request to `path` on `node` with nothing added.
fn raw(node: &TestNode, method: reqwest::Method, path: &str) -> reqwest::RequestBuilder {
    node.http
        .client
        .request(method, format!("{}{path}", node.http.base))
}

async fn metrics_text(node: &TestNode) -> String {
    let resp = node
        .http
        .client
        .get(format!("{}/metrics", node.http.base))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status().as_u16(), 200);
    resp.text().await.unwrap()
}

/// Expects a WebSocket upgrade to be refused with this HTTP status.
async fn assert_upgrade_refused(url: &str, status: u16) {
    match tokio_tungstenite::connect_async(url).await {
        Err(tungstenite::Error::Http(resp)) => {
            assert_eq!(
                resp.status().as_u16(),
                status,
                "upgrade refused with the wrong status"
            );
            let body: Value = serde_json::from_slice(resp.body().as_deref().unwrap_or_default())
                .unwrap_or(Value::Null);
            assert!(
                body["error"]["code"].is_string(),
                "upgrade refusal body is not a JSON error: {body}"
            );
        }
        Err(e) => panic!("expected an HTTP {status} at the upgrade, got {e}"),
        Ok(_) => panic!("expected an HTTP {status} at the upgrade, but it was accepted"),
    }
}

// ----- users and sessions -----

#[tokio::test]
async fn logout_revokes_only_that_token_and_ends_only_its_connections() {
    let node = TestNode::start().await;
    let (_, first) = node.user("alice").await;
    let (_, second) = node.user("alice").await;
    assert_ne!(first, second);
    let mut ws_first = node.connect(&first).await;
    let mut ws_second = node.connect(&second).await;

    let (s, _) = node
        .http
        .call("DELETE", "/v1/sessions/current", Some(&first), None)
        .await;
    assert_eq!(s, 204);
    assert_error(node.http.get("/v1/me", &first).await, 401, "unauthorized");
    assert_error(
        node.http
            .call("DELETE", "/v1/sessions/current", Some(&first), None)
            .await,
        401,
        "unauthorized",
    );
    let (s, _) = node.http.get("/v1/me", &second).await;
    assert_eq!(s, 200);

    let d = ws_first.expect("disconnect").await;
    assert_eq!(d["reason"], "logged_out", "{d}");
    let after = ws_first.until_closed().await;
    assert!(after.is_empty(), "frames after disconnect: {after:?}");

    let pong = ws_second.request(json!({"type": "ping"}), 1).await;
    assert_eq!(pong["type"], "pong", "{pong}");
    node.stop().await;
}

// ----- rooms -----

// ----- members -----

// ----- room messages -----

#[tokio::test]
async fn idempotency_and_tokens_survive_a_restart() {
    let node = TestNode::start().await;
    let (_, alice) = node.user("alice").await;
    let room = node.http.room(&alice, "lobby", "public").await;
    let path = format!("/v1/rooms/{room}/messages");
    let (s, first) = node
        .http
        .post(
            &path,
            &alice,
            json!({"body": "once", "client_msg_id": "k-1"}),
        )
        .await;
    assert_eq!(s, 201);

    let node = TestNode::start_in(node.stop().await, |_| {}).await;
    let (s, retry) = node
        .http
        .post(
            &path,
            &alice,
            json!({"body": "once", "client_msg_id": "k-1"}),
        )
        .await;
    assert_eq!(s, 201, "the token still works after a restart: {retry}");
    assert_eq!(retry, first);
    let (_, v) = node.http.get(&path, &alice).await;
    assert_eq!(seqs(&v), vec![1]);
    node.stop().await;
}

// ----- direct messages -----

// ----- presence -----

#[tokio::test]
async fn user_presence_counts_live_connections() {
    let node = TestNode::start().await;
    let (alice_id, alice) = node.user("alice").await;
    let (bob_id, bob) = node.user("bob").await;
    let mut first = node.connect(&alice).await;
    let _second = node.connect(&alice).await;

    let path = format!("/v1/presence/users?ids={alice_id},{bob_id}");
    let (s, v) = node.http.get(&path, &bob).await;
    assert_eq!(s, 200, "{v}");
    assert_eq!(
        v["users"][&alice_id],
        json!({"online": true, "connections": 2}),
        "{v}"
    );
    assert_eq!(v["users"][&bob_id]["online"], false, "{v}");

    first.ws.close(None).await.expect("close");
    drop(first);
    eventually(|| async {
        let (_, v) = node.http.get(&path, &bob).await;
        if v["users"][&alice_id] == json!({"online": true, "connections": 1}) {
            Ok(())
        } else {
            Err(v.to_string())
        }
    })
    .await;

    assert_error(
        node.http.get("/v1/presence/users", &bob).await,
        400,
        "bad_request",
    );
    assert_error(
        node.http.call("GET", &path, None, None).await,
        401,
        "unauthorized",
    );
    node.stop().await;
}

#[tokio::test]
async fn room_presence_lists_the_users_subscribed_to_the_room() {
    let node = TestNode::start().await;
    let (alice_id, alice) = node.user("alice").await;
    let (_, bob) = node.user("bob").await;
    let (_, carol) = node.user("carol").await;
    let room = node.http.room(&alice, "lobby", "public").await;
    let private = node.http.room(&alice, "secret", "private").await;
    let path = format!("/v1/rooms/{room}/presence");

    let (s, v) = node.http.get(&path, &bob).await;
    assert_eq!(s, 200, "{v}");
    assert_eq!(v["users"], json!([]));

    // Bob is connected but not subscribed: he is not listed.
    let _bob_ws = node.connect(&bob).await;
    let mut ws = node.connect(&alice).await;
    let r = ws
        .request(
            json!({"type": "subscribe", "conv": format!("room:{room}")}),
            1,
        )
        .await;
    assert_eq!(r["type"], "subscribed", "{r}");
    eventually(|| async {
        let (_, v) = node.http.get(&path, &carol).await;
        if v["users"] == json!([{"user_id": alice_id, "connections": 1}]) {
            Ok(())
        } else {
            Err(v.to_string())
        }
    })
    .await;

    assert_error(
        node.http
            .get(&format!("/v1/rooms/{private}/presence"), &bob)
            .await,
        403,
        "not_member",
    );
    assert_error(
        node.http.get("/v1/rooms/r_nope/presence", &bob).await,
        404,
        "not_found",
    );
    node.stop().await;
}

// ----- server API -----

#[tokio::test]
async fn the_server_kicks_every_connection_of_a_user() {
    let node = TestNode::start().await;
    let (alice_id, alice) = node.user("alice").await;
    let (_, alice2) = node.user("alice").await;
    let (_, bob) = node.user("bob").await;
    let mut a1 = node.connect(&alice).await;
    let mut a2 = node.connect(&alice2).await;
    let mut b = node.connect(&bob).await;

    let (s, v) = node
        .http
        .server(
            &format!("/v1/server/users/{alice_id}/disconnect"),
            json!({}),
        )
        .await;
    assert_eq!(s, 204, "{v}");
    for ws in [&mut a1, &mut a2] {
        let d = ws.expect("disconnect").await;
        assert_eq!(d["reason"], "kicked", "{d}");
        ws.until_closed().await;
    }
    let pong = b.request(json!({"type": "ping"}), 7).await;
    assert_eq!(pong["type"], "pong");

    let (s, _, v) = send(raw(
        &node,
        reqwest::Method::POST,
        &format!("/v1/server/users/{alice_id}/disconnect"),
    ))
    .await;
    assert_error((s, v), 401, "unauthorized");
    node.stop().await;
}

// ----- dispatch, node info, health, metrics -----

#[tokio::test]
async fn dispatch_points_at_a_websocket_that_welcomes_a_token() {
    let node = TestNode::start().await;
    let (alice_id, alice) = node.user("alice").await;
    let (s, v) = node.http.call("GET", "/v1/dispatch", None, None).await;
    assert_eq!(s, 200, "{v}");
    assert_eq!(v["node_id"], "n_test");
    assert_eq!(v["alternates"], json!([]));
    assert!(v["ttl_ms"].as_u64().is_some_and(|t| t > 0), "{v}");
    let (base, max) = (
        v["backoff"]["base_ms"].as_u64().unwrap(),
        v["backoff"]["max_ms"].as_u64().unwrap(),
    );
    assert!(base > 0 && max >= base, "{v}");
    let ws = v["endpoints"]["ws"]
        .as_str()
        .expect("endpoints.ws")
        .to_owned();
    assert!(ws.starts_with("ws://"), "{ws}");
    let (s, authed) = node.http.get("/v1/dispatch", &alice).await;
    assert_eq!(s, 200);
    assert_eq!(authed["endpoints"]["ws"], ws.as_str());

    let mut c = WsClient::connect(&format!("{ws}?token={alice}")).await;
    let w = c.next().await.expect("a frame");
    assert_eq!(w["type"], "welcome", "{w}");
    assert_eq!(w["user_id"], alice_id);
    assert_eq!(w["node_id"], "n_test");
    node.stop().await;
}

#[tokio::test]
async fn a_full_node_is_refused_by_dispatch_and_at_the_upgrade() {
    let node = TestNode::start_with(|cfg| cfg.limits.max_connections = 2).await;
    let (_, alice) = node.user("alice").await;
    let _one = node.connect(&alice).await;
    let _two = node.connect(&alice).await;

    let (s, headers, v) = send(raw(&node, reqwest::Method::GET, "/v1/dispatch")).await;
    assert_error((s, v), 503, "overloaded");
    let retry_after = headers
        .get("retry-after")
        .expect("Retry-After header")
        .to_str()
        .unwrap();
    assert!(
        retry_after.parse::<u64>().is_ok_and(|n| n > 0),
        "Retry-After: {retry_after}"
    );

    assert_upgrade_refused(&format!("{}?token={alice}", node.ws_url()), 503).await;
    assert_upgrade_refused(&node.ws_url(), 503).await;
    node.stop().await;
}

#[tokio::test]
async fn a_bad_token_on_the_upgrade_is_refused_with_401() {
    let node = TestNode::start().await;
    assert_upgrade_refused(&format!("{}?token=not-a-token", node.ws_url()), 401).await;
    node.stop().await;
}

#[tokio::test]
async fn node_info_reports_the_open_connections() {
    let node = TestNode::start_with(|cfg| {
        cfg.limits.max_connections = 50;
        cfg.weight = 3;
    })
    .await;
    let (_, alice) = node.user("alice").await;
    let (s, v) = node.http.call("GET", "/v1/node", None, None).await;
    assert_eq!(s, 200, "{v}");
    assert_eq!(v["node_id"], "n_test");
    assert_eq!(v["connections"], 0);
    assert_eq!(v["max_connections"], 50);
    assert_eq!(v["weight"], 3);
    assert_eq!(v["draining"], false);
    assert!(
        v["endpoints"]["ws"]
            .as_str()
            .is_some_and(|w| w.starts_with("ws://")),
        "{v}"
    );
    assert!(v["version"].as_str().is_some_and(|s| !s.is_empty()), "{v}");

    let _one = node.connect(&alice).await;
    let mut two = node.connect(&alice).await;
    let (_, v) = node.http.call("GET", "/v1/node", None, None).await;
    assert_eq!(v["connections"], 2, "{v}");

    two.ws.close(None).await.expect("close");
    drop(two);
    eventually(|| async {
        let (_, v) = node.http.call("GET", "/v1/node", None, None).await;
        if v["connections"] == 1 {
            Ok(())
        } else {
            Err(v.to_string())
        }
    })
    .await;
    node.stop().await;
}

#[tokio::test]
async fn metrics_expose_the_contract_series_and_count_publishes() {
    let node = TestNode::start().await;
    let (_, alice) = node.user("alice").await;
    let room = node.http.room(&alice, "lobby", "public").await;
    let _ws = node.connect(&alice).await;

    let text = metrics_text(&node).await;
    for name in [
        "switchboard_connections",
        "switchboard_messages_published_total",
        "switchboard_messages_delivered_total",
        "switchboard_bus_messages_received_total",
        "switchboard_publish_latency_seconds_count",
    ] {
        assert!(metric(&text, name).is_finite(), "{name} in\n{text}");
    }
    assert_eq!(metric(&text, "switchboard_connections"), 1.0);
    let errors_before = metric(&text, "switchboard_errors_total{code=\"unauthorized\"}");
    let not_found_before = metric(&text, "switchboard_errors_total{code=\"not_found\"}");
    let published_before = metric(&text, "switchboard_messages_published_total");
    let latency_before = metric(&text, "switchboard_publish_latency_seconds_count");

    node.http.publish(&alice, &room, json!("hello")).await;
    assert_error(
        node.http.get("/v1/me", "garbage-token").await,
        401,
        "unauthorized",
    );

    let text = metrics_text(&node).await;
    assert_eq!(
        metric(&text, "switchboard_messages_published_total"),
        published_before + 1.0
    );
    assert_eq!(
        metric(&text, "switchboard_publish_latency_seconds_count"),
        latency_before + 1.0
    );
    assert_eq!(
        metric(&text, "switchboard_errors_total{code=\"unauthorized\"}"),
        errors_before + 1.0
    );
    // Every HTTP error is counted, not only authentication failures.
    assert_error(
        node.http.get("/v1/rooms/r_missing", &alice).await,
        404,
        "not_found",
    );
    let text = metrics_text(&node).await;
    assert_eq!(
        metric(&text, "switchboard_errors_total{code=\"not_found\"}"),
        not_found_before + 1.0
    );
    node.stop().await;
}

#[tokio::test]
async fn metrics_count_group_commits_and_the_messages_in_them() {
    let node = TestNode::start().await;
    let (_, alice) = node.user("alice").await;
    let (bob_id, _) = node.user("bob").await;
    let room = node.http.room(&alice, "commits", "public").await;

    let text = metrics_text(&node).await;
    let commits_before = metric(&text, "switchboard_commit_seconds_count");
    let message_commits_before = metric(&text, "switchboard_commit_messages_count");
    let messages_before = metric(&text, "switchboard_commit_messages_sum");
    assert!(
        commits_before >= 1.0,
        "creating users and a room committed:\n{text}"
    );

    // One at a time: each publish is answered after its own commit.
    for i in 0..3 {
        node.http.publish(&alice, &room, json!({"i": i})).await;
    }
    let (s, _) = node
        .http
        .post(
            &format!("/v1/users/{bob_id}/messages"),
            &alice,
            json!({"body": "dm"}),
        )
        .await;
    assert_eq!(s, 201);

    let text = metrics_text(&node).await;
    let message_commits =
        metric(&text, "switchboard_commit_messages_count") - message_commits_before;
    assert!(
        (1.0..=4.0).contains(&message_commits),
        "4 publishes took {message_commits} commits with messages"
    );
    assert_eq!(
        metric(&text, "switchboard_commit_messages_sum") - messages_before,
        5.0,
        "three room messages and a DM's two copies"
    );
    assert!(metric(&text, "switchboard_commit_seconds_count") - commits_before >= message_commits);
    assert!(metric(&text, "switchboard_commit_seconds_sum") > 0.0);
    // Exported from the start (a small test database never reaches a checkpoint).
    assert!(metric(&text, "switchboard_checkpoint_seconds_count") >= 0.0);
    assert!(
        metric(&text, "switchboard_commit_messages_bucket{le=\"1.0\"}").is_finite(),
        "a histogram with buckets:\n{text}"
    );
    node.stop().await;
}

// ----- unknown routes and methods -----
