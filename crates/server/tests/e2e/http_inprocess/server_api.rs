//! The server API: its key, publishing as nobody, tokens for its own users.

use crate::common::*;
use axum::body::Bytes;
use serde_json::{Value, json};

#[tokio::test]
async fn the_server_publishes_with_its_key_as_nobody() {
    let node = InProcess::start().await;
    let (_, alice) = node.user("alice").await;
    let room = node.room(&alice, "news", "private").await;
    let conv = format!("room:{room}");
    let body =
        json!({"conv": conv, "body": {"text": "maintenance at noon"}, "client_msg_id": "srv-1"});

    let (s, first) = node.server("/v1/server/publish", body.clone()).await;
    assert_eq!(s, 201, "{first}");
    assert_eq!(first["conv"], conv);
    assert_eq!(first["seq"], 1);
    let (s, again) = node.server("/v1/server/publish", body.clone()).await;
    assert_eq!(s, 201);
    assert_eq!(
        again, first,
        "a retried server publish gets the first answer"
    );

    let (_, v) = node
        .get(&format!("/v1/rooms/{room}/messages"), &alice)
        .await;
    assert_eq!(seqs(&v), vec![1]);
    assert_eq!(v["messages"][0]["from"], Value::Null);
    assert_eq!(v["messages"][0]["body"]["text"], "maintenance at noon");

    let wrong = node
        .raw("POST", "/v1/server/publish")
        .header("x-api-key", "wrong");
    let (s, _, v) = node.send_json(wrong, &body).await;
    assert_error((s, v), 401, "unauthorized");
    let missing = node.raw("POST", "/v1/server/publish");
    let (s, _, v) = node.send_json(missing, &body).await;
    assert_error((s, v), 401, "unauthorized");
    // A user's bearer token is not an API key.
    assert_error(
        node.post("/v1/server/publish", &alice, body).await,
        401,
        "unauthorized",
    );

    assert_error(
        node.server(
            "/v1/server/publish",
            json!({"conv": "room:r_nope", "body": 1}),
        )
        .await,
        404,
        "not_found",
    );
    assert_error(
        node.server("/v1/server/publish", json!({"conv": "nonsense", "body": 1}))
            .await,
        400,
        "bad_request",
    );
    node.stop().await;
}

#[tokio::test]
async fn the_server_issues_tokens_for_its_own_users() {
    let node = InProcess::start().await;
    let before = now_ms();
    let (s, v) = node
        .server("/v1/server/users/ext-42/tokens", json!({"ttl_s": 120}))
        .await;
    assert_eq!(s, 201, "{v}");
    assert_eq!(v["user_id"], "ext-42");
    let token = v["token"].as_str().expect("token").to_owned();
    let expires_at = v["expires_at"].as_u64().expect("expires_at");
    assert!(
        expires_at >= before + 115_000 && expires_at <= now_ms() + 125_000,
        "expires_at {expires_at} is not about now + 120 s (now {before})"
    );

    let (s, me) = node.get("/v1/me", &token).await;
    assert_eq!(s, 200, "{me}");
    assert_eq!(me["user_id"], "ext-42");

    // Without a body: the default lifetime; the user already exists and keeps its id.
    let keyed = node
        .raw("POST", "/v1/server/users/ext-42/tokens")
        .header("x-api-key", API_KEY);
    let (s, _, v) = node.send(keyed, Bytes::new()).await;
    assert_eq!(s, 201, "{v}");
    assert_eq!(v["user_id"], "ext-42");
    assert!(
        v["expires_at"].as_u64().unwrap() > now_ms() + 3_600_000,
        "{v}"
    );

    let keyless = node.raw("POST", "/v1/server/users/ext-42/tokens");
    let (s, _, v) = node.send_json(keyless, &json!({})).await;
    assert_error((s, v), 401, "unauthorized");
    assert_error(
        node.server("/v1/server/users/has%20space/tokens", json!({}))
            .await,
        400,
        "bad_request",
    );
    node.stop().await;
}

#[tokio::test]
async fn server_and_user_publishes_do_not_share_idempotency_keys() {
    let node = InProcess::start().await;
    let (_, alice) = node.user("alice").await;
    let room = node.room(&alice, "lobby", "public").await;
    let conv = format!("room:{room}");
    let (s, srv) = node
        .server(
            "/v1/server/publish",
            json!({"conv": conv, "body": "from the server", "client_msg_id": "same"}),
        )
        .await;
    assert_eq!(s, 201);
    let (s, usr) = node
        .post(
            &format!("/v1/rooms/{room}/messages"),
            &alice,
            json!({"body": "from alice", "client_msg_id": "same"}),
        )
        .await;
    assert_eq!(s, 201);
    assert_eq!(
        (srv["seq"].as_u64(), usr["seq"].as_u64()),
        (Some(1), Some(2))
    );

    // "@server" is the server's own idempotency owner: the server API must not hand out a user
    // token for it, or that user's publishes would be answered with the server's receipts.
    assert_error(
        node.server("/v1/server/users/@server/tokens", json!({}))
            .await,
        400,
        "bad_request",
    );
    node.stop().await;
}

#[tokio::test]
async fn a_server_token_stops_working_when_its_ttl_runs_out() {
    let node = InProcess::start().await;
    let (s, v) = node
        .server("/v1/server/users/ext-short/tokens", json!({"ttl_s": 1}))
        .await;
    assert_eq!(s, 201, "{v}");
    let token = v["token"].as_str().unwrap().to_owned();
    let (s, me) = node.get("/v1/me", &token).await;
    assert_eq!(s, 200, "{me}");
    eventually(|| async {
        let (s, v) = node.get("/v1/me", &token).await;
        if s == 401 && v["error"]["code"] == "unauthorized" {
            Ok(())
        } else {
            Err(format!("{s} {v}"))
        }
    })
    .await;
    node.stop().await;
}
