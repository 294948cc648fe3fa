//! Issue 13, finding 10: `/metrics` on a listener of its own (and then not on `--listen`), and
//! the server API key compared without regard to its length.

use crate::common::*;
use serde_json::json;

#[tokio::test]
async fn metrics_listen_serves_metrics_on_its_own_address_only() {
    let node = TestNode::start_with(|c| c.metrics_listen = Some("127.0.0.1:0".into())).await;
    let metrics_addr = node
        .server
        .as_ref()
        .and_then(|s| s.metrics_addr)
        .expect("a metrics listener");
    assert_ne!(metrics_addr, node.addr);
    let resp = reqwest::get(format!("http://{metrics_addr}/metrics"))
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    let text = resp.text().await.unwrap();
    assert!(text.contains("# EOF"), "{text}");
    let main = reqwest::get(format!("http://{}/metrics", node.addr))
        .await
        .unwrap();
    assert_eq!(main.status(), 404, "/metrics is still on --listen");
    // Only /metrics lives there.
    let other = reqwest::get(format!("http://{metrics_addr}/healthz"))
        .await
        .unwrap();
    assert_eq!(other.status(), 404);
    let (s, _) = node.http.call("GET", "/healthz", None, None).await;
    assert_eq!(s, 200);
    node.stop().await;
}

#[tokio::test]
async fn the_api_key_is_checked_whole_whatever_the_length_given() {
    let node = TestNode::start().await;
    let url = format!("{}/v1/server/users/app-user/tokens", node.http.base);
    let longer = format!("{API_KEY}{API_KEY}");
    for wrong in [
        "",
        "t",
        &API_KEY[..API_KEY.len() - 1],
        &longer,
        "test-api-kez",
    ] {
        let resp = node
            .http
            .client
            .post(&url)
            .header("x-api-key", wrong)
            .json(&json!({}))
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), 401, "key {wrong:?}");
    }
    let (s, v) = node
        .http
        .server("/v1/server/users/app-user/tokens", json!({}))
        .await;
    assert_eq!(s, 201, "{v}");
    node.stop().await;
}
