//! The HTTP API where sockets matter: what involves WebSocket clients (logout, kicks, presence)
//! and a restart; where clients are sent and whether they are let in, with the node's own
//! report (`dispatch`); the metrics (`metrics`). The request/response checks of every endpoint
//! run in-process, in `http_inprocess.rs`.

mod dispatch;
mod metrics;

use crate::common;
use common::*;
use serde_json::{Value, json};

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
