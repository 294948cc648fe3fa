//! Revoking tokens everywhere (issue 13, finding 6): `DELETE /v1/sessions` ends every token of
//! the caller, `PUT /v1/me/password` every token but the caller's, and the server API's
//! `POST /v1/server/users/{id}/revoke` every token of a user. A revoked token gets 401 over HTTP
//! and at the WebSocket upgrade, and every connection opened with one, on any node, receives
//! `disconnect` and is closed.

use crate::cluster::cluster_node;
use crate::common;
use common::*;
use serde_json::{Value, json};
use switchboard_testkit::RedisServer;

/// Logs `name` in once more (the user exists); returns the new token.
async fn login(http: &Http, name: &str, password: &str) -> (u16, Value) {
    http.call(
        "POST",
        "/v1/sessions",
        None,
        Some(json!({"username": name, "password": password})),
    )
    .await
}

async fn token_of(http: &Http, name: &str) -> String {
    let (s, v) = login(http, name, PASSWORD).await;
    assert_eq!(s, 201, "{v}");
    v["token"].as_str().expect("token").to_owned()
}

/// The token is refused over HTTP and at the WebSocket upgrade.
async fn assert_revoked(node: &TestNode, token: &str) {
    let (s, v) = node.http.get("/v1/me", token).await;
    assert_error((s, v), 401, "unauthorized");
    match tokio_tungstenite::connect_async(format!("{}?token={token}", node.ws_url())).await {
        Err(tokio_tungstenite::tungstenite::Error::Http(resp)) => {
            assert_eq!(resp.status().as_u16(), 401)
        }
        Err(other) => panic!("expected HTTP 401 at the upgrade, got {other:?}"),
        Ok(_) => panic!("a revoked token opened a WebSocket"),
    }
}

/// The connection receives `disconnect` with `reason`, then is closed.
async fn assert_disconnected(c: &mut WsClient, reason: &str) {
    let seen = c.until_closed().await;
    let last = seen.last().expect("a disconnect frame before the close");
    assert_eq!(last["type"], "disconnect", "{seen:?}");
    assert_eq!(last["reason"], reason, "{seen:?}");
}

#[tokio::test]
async fn delete_sessions_revokes_every_token_of_the_caller() {
    let node = TestNode::start().await;
    let (_, t1) = node.user("alice").await;
    let t2 = token_of(&node.http, "alice").await;
    let (_, other) = node.user("bob").await;
    let (mut c1, mut c2) = (node.connect(&t1).await, node.connect(&t2).await);
    let mut bob = node.connect(&other).await;

    let (s, v) = node
        .http
        .call("DELETE", "/v1/sessions", Some(&t1), None)
        .await;
    assert_eq!(s, 204, "{v}");
    assert_disconnected(&mut c1, "logged_out").await;
    assert_disconnected(&mut c2, "logged_out").await;
    assert_revoked(&node, &t1).await;
    assert_revoked(&node, &t2).await;
    // Another user is untouched, and alice can log in again.
    let pong = bob.request(json!({"type": "ping"}), 1).await;
    assert_eq!(pong["type"], "pong");
    assert_eq!(node.http.get("/v1/me", &other).await.0, 200);
    let again = token_of(&node.http, "alice").await;
    assert_eq!(node.http.get("/v1/me", &again).await.0, 200);
    node.stop().await;
}

#[tokio::test]
async fn a_password_change_revokes_every_other_token() {
    let node = TestNode::start().await;
    let (_, mine) = node.user("carol").await;
    let stolen = token_of(&node.http, "carol").await;
    let mut thief = node.connect(&stolen).await;
    let mut own = node.connect(&mine).await;
    let change = |password: &str| json!({"password": password, "new_password": "a new passphrase"});

    let (s, v) = node
        .http
        .call(
            "PUT",
            "/v1/me/password",
            Some(&mine),
            Some(change("wrong guess")),
        )
        .await;
    assert_error((s, v), 401, "unauthorized");
    let (s, v) = node
        .http
        .call(
            "PUT",
            "/v1/me/password",
            Some(&mine),
            Some(change(PASSWORD)),
        )
        .await;
    assert_eq!(s, 204, "{v}");

    assert_disconnected(&mut thief, "logged_out").await;
    assert_revoked(&node, &stolen).await;
    // The caller's own token and connection go on.
    assert_eq!(node.http.get("/v1/me", &mine).await.0, 200);
    let pong = own.request(json!({"type": "ping"}), 7).await;
    assert_eq!(pong["type"], "pong");
    assert_eq!(login(&node.http, "carol", PASSWORD).await.0, 401);
    assert_eq!(login(&node.http, "carol", "a new passphrase").await.0, 201);
    node.stop().await;
}

#[tokio::test]
async fn the_server_api_revokes_every_token_of_a_user() {
    let node = TestNode::start().await;
    let (uid, t1) = node.user("dave").await;
    let (s, v) = node
        .http
        .server(&format!("/v1/server/users/{uid}/tokens"), json!({}))
        .await;
    assert_eq!(s, 201, "{v}");
    let t2 = v["token"].as_str().expect("token").to_owned();
    let (mut c1, mut c2) = (node.connect(&t1).await, node.connect(&t2).await);

    let (s, v) = node
        .http
        .server(
            &format!("/v1/server/users/{uid}/revoke"),
            json!({"reason": "kicked"}),
        )
        .await;
    assert_eq!(s, 204, "{v}");
    assert_disconnected(&mut c1, "kicked").await;
    assert_disconnected(&mut c2, "kicked").await;
    assert_revoked(&node, &t1).await;
    assert_revoked(&node, &t2).await;
    node.stop().await;
}

/// Two nodes sharing a Redis: a revoke on one node ends the connections on both, and the
/// tokens are refused by both.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn revocation_reaches_connections_on_every_node() {
    let redis = RedisServer::start();
    let a = cluster_node(&redis, "na").await;
    let b = cluster_node(&redis, "nb").await;
    let (uid, t1) = a.user("erin").await;
    let t2 = token_of(&b.http, "erin").await;
    let (mut on_a, mut on_b) = (a.connect(&t1).await, b.connect(&t2).await);

    let (s, v) = a.http.call("DELETE", "/v1/sessions", Some(&t1), None).await;
    assert_eq!(s, 204, "{v}");
    assert_disconnected(&mut on_a, "logged_out").await;
    assert_disconnected(&mut on_b, "logged_out").await;
    for node in [&a, &b] {
        assert_revoked(node, &t1).await;
        assert_revoked(node, &t2).await;
    }

    // The server API's revoke, called on b, reaches a connection on a.
    let t3 = token_of(&a.http, "erin").await;
    let mut again = a.connect(&t3).await;
    let (s, v) = b
        .http
        .server(&format!("/v1/server/users/{uid}/revoke"), json!({}))
        .await;
    assert_eq!(s, 204, "{v}");
    assert_disconnected(&mut again, "logged_out").await;
    assert_revoked(&a, &t3).await;
    assert_revoked(&b, &t3).await;
    a.stop().await;
    b.stop().await;
}
