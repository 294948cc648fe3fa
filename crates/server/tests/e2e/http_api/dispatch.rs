//! Where clients are sent and whether they are let in: `/v1/dispatch` pointing at a WebSocket
//! that welcomes the token, a full node refused at dispatch and at the upgrade, a bad token
//! refused at the upgrade, and `/v1/node`, the node's own report of its connections.

use super::{raw, send};
use crate::common;
use common::*;
use serde_json::{Value, json};
use tokio_tungstenite::tungstenite;

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
