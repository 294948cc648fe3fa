//! Health, unknown routes, wrong methods, and errors made by the HTTP layer.

use crate::common::*;
use axum::body::Bytes;
use serde_json::json;

// ----- health -----

#[tokio::test]
async fn health_and_readiness_answer_200() {
    let node = InProcess::start().await;
    for path in ["/healthz", "/readyz"] {
        let (s, v) = node.call("GET", path, None, None).await;
        assert_eq!(s, 200, "{path}: {v}");
    }
    node.stop().await;
}

// ----- unknown routes and methods -----

#[tokio::test]
async fn unknown_routes_and_wrong_methods_get_json_errors() {
    let node = InProcess::start().await;
    let (_, alice) = node.user("alice").await;
    assert_error(
        node.call("GET", "/v1/nope", None, None).await,
        404,
        "not_found",
    );
    assert_error(
        node.get("/v1/rooms/r_1/nope", &alice).await,
        404,
        "not_found",
    );

    let delete_me = node
        .raw("DELETE", "/v1/me")
        .header("authorization", format!("Bearer {alice}"));
    let (s, headers, v) = node.send(delete_me, Bytes::new()).await;
    assert_eq!(s, 405, "wrong method status: {v}");
    assert!(
        v["error"]["code"].is_string() && v["error"]["message"].is_string(),
        "wrong method body: {v}"
    );
    let allow = headers
        .get("allow")
        .map(|a| a.to_str().unwrap().to_owned())
        .unwrap_or_default();
    assert!(allow.contains("GET"), "Allow header: {allow:?}");
    let (s, v) = node
        .call("PATCH", "/v1/rooms", Some(&alice), Some(json!({})))
        .await;
    assert_eq!(s, 405, "wrong method status: {v}");
    assert!(v["error"]["code"].is_string(), "wrong method body: {v}");
    node.stop().await;
}

#[tokio::test]
async fn errors_made_by_the_http_layer_still_use_the_json_shape() {
    let node = InProcess::start().await;
    let (_, token) = node.user("alice").await;
    // Bad percent-encoding in a path segment.
    let (s, v) = node.get("/v1/rooms/%FF", &token).await;
    assert_eq!(s, 400, "{v}");
    assert_eq!(v["error"]["code"], "bad_request");
    // A plain GET on the WebSocket route.
    let (s, v) = node.get("/v1/ws", &token).await;
    assert!((400..500).contains(&s), "{s}");
    assert!(v["error"]["code"].is_string(), "{v}");
    assert!(v["error"]["message"].is_string(), "{v}");
    // `me` is reserved and cannot be claimed through the server API.
    let (s, v) = node.server("/v1/server/users/me/tokens", json!({})).await;
    assert_eq!(s, 400, "{v}");
    node.stop().await;
}
