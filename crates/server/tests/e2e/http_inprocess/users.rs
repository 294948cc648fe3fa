//! Users and sessions: registration, login, the bearer token, profiles, and the body limit.

use crate::common::*;
use axum::body::Bytes;
use serde_json::json;

#[tokio::test]
async fn a_new_user_registers_and_the_name_is_then_taken() {
    let node = InProcess::start().await;
    let (s, v) = node
        .call(
            "POST",
            "/v1/users",
            None,
            Some(json!({"username": "alice", "password": PASSWORD})),
        )
        .await;
    assert_eq!(s, 201, "{v}");
    assert_eq!(v["username"], "alice");
    assert!(
        v["user_id"].as_str().is_some_and(|id| !id.is_empty()),
        "{v}"
    );

    let again = node
        .call(
            "POST",
            "/v1/users",
            None,
            Some(json!({"username": "alice", "password": "another password"})),
        )
        .await;
    assert_error(again, 409, "username_taken");
    node.stop().await;
}

#[tokio::test]
async fn registration_rejects_bad_bodies_with_bad_request() {
    let node = InProcess::start().await;
    let missing = node
        .call(
            "POST",
            "/v1/users",
            None,
            Some(json!({"username": "alice"})),
        )
        .await;
    assert_error(missing, 400, "bad_request");
    let mistyped = node
        .call(
            "POST",
            "/v1/users",
            None,
            Some(json!({"username": 5, "password": PASSWORD})),
        )
        .await;
    assert_error(mistyped, 400, "bad_request");
    let short = node
        .call(
            "POST",
            "/v1/users",
            None,
            Some(json!({"username": "bob", "password": "short"})),
        )
        .await;
    assert_error(short, 400, "bad_request");

    let req = node
        .raw("POST", "/v1/users")
        .header("content-type", "application/json");
    let (s, _, v) = node.send(req, "{\"username\": \"carol\",").await;
    assert_error((s, v), 400, "bad_request");

    // The failures stored nothing: the names are still free.
    let (s, v) = node
        .call(
            "POST",
            "/v1/users",
            None,
            Some(json!({"username": "bob", "password": PASSWORD})),
        )
        .await;
    assert_eq!(s, 201, "{v}");
    node.stop().await;
}

#[tokio::test]
async fn a_body_over_64_kib_is_refused_as_too_large() {
    let node = InProcess::start().await;
    let huge = "x".repeat(70_000);
    let got = node
        .call(
            "POST",
            "/v1/users",
            None,
            Some(json!({"username": huge, "password": PASSWORD})),
        )
        .await;
    assert_error(got, 413, "too_large");
    node.stop().await;
}

#[tokio::test]
async fn login_gives_a_token_and_wrong_credentials_get_unauthorized() {
    let node = InProcess::start().await;
    let creds = json!({"username": "alice", "password": PASSWORD});
    let (s, reg) = node
        .call("POST", "/v1/users", None, Some(creds.clone()))
        .await;
    assert_eq!(s, 201);
    let (s, v) = node.call("POST", "/v1/sessions", None, Some(creds)).await;
    assert_eq!(s, 201, "{v}");
    assert!(v["token"].as_str().is_some_and(|t| !t.is_empty()), "{v}");
    assert_eq!(v["user_id"], reg["user_id"]);
    assert!(
        v["expires_at"].as_u64().is_some_and(|e| e > now_ms()),
        "{v}"
    );

    let wrong = node
        .call(
            "POST",
            "/v1/sessions",
            None,
            Some(json!({"username": "alice", "password": "not the password"})),
        )
        .await;
    assert_error(wrong, 401, "unauthorized");
    let unknown = node
        .call(
            "POST",
            "/v1/sessions",
            None,
            Some(json!({"username": "nobody", "password": PASSWORD})),
        )
        .await;
    assert_error(unknown, 401, "unauthorized");
    let missing = node
        .call(
            "POST",
            "/v1/sessions",
            None,
            Some(json!({"username": "alice"})),
        )
        .await;
    assert_error(missing, 400, "bad_request");
    node.stop().await;
}

#[tokio::test]
async fn me_needs_a_valid_bearer_token() {
    let node = InProcess::start().await;
    let (alice_id, alice) = node.user("alice").await;
    let (s, v) = node.get("/v1/me", &alice).await;
    assert_eq!(s, 200, "{v}");
    assert_eq!(v["user_id"], alice_id);
    assert_eq!(v["username"], "alice");

    assert_error(
        node.call("GET", "/v1/me", None, None).await,
        401,
        "unauthorized",
    );
    assert_error(
        node.get("/v1/me", "garbage-token").await,
        401,
        "unauthorized",
    );
    let basic = node
        .raw("GET", "/v1/me")
        .header("authorization", "Basic YWxpY2U6Y29ycmVjdCBob3JzZQ==");
    let (s, _, v) = node.send(basic, Bytes::new()).await;
    assert_error((s, v), 401, "unauthorized");
    node.stop().await;
}

#[tokio::test]
async fn a_user_profile_is_readable_by_id() {
    let node = InProcess::start().await;
    let (_, alice) = node.user("alice").await;
    let (bob_id, _) = node.user("bob").await;
    let (s, v) = node.get(&format!("/v1/users/{bob_id}"), &alice).await;
    assert_eq!(s, 200, "{v}");
    assert_eq!(v, json!({"user_id": bob_id, "username": "bob"}));
    assert_error(
        node.get("/v1/users/u_nobody", &alice).await,
        404,
        "not_found",
    );
    assert_error(
        node.call("GET", &format!("/v1/users/{bob_id}"), None, None)
            .await,
        401,
        "unauthorized",
    );
    node.stop().await;
}
