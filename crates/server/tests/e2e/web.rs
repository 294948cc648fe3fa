//! Issue 15: the web chat and ops page served by nodes with the api role (content types,
//! ETags, the Content-Security-Policy, no API route shadowed), the user lookup by username the
//! chat's direct messages use, and the ops page's stats endpoints behind the server API key,
//! on one node and across a cluster.

use crate::cluster::{cluster_node, eventually};
use crate::common::*;
use serde_json::{Value, json};
use std::time::Duration;
use switchboard_testkit::RedisServer;

async fn get(node: &TestNode, path: &str, headers: &[(&str, &str)]) -> reqwest::Response {
    let mut req = node.http.client.get(format!("{}{path}", node.http.base));
    for (k, v) in headers {
        req = req.header(*k, *v);
    }
    req.send().await.expect("HTTP request")
}

fn header(resp: &reqwest::Response, name: &str) -> String {
    resp.headers()
        .get(name)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_owned()
}

#[tokio::test]
async fn pages_and_assets_come_with_their_types_etags_and_a_strict_csp() {
    let node = TestNode::start().await;
    for (path, ty, needle) in [
        ("/", "text/html", "data-testid=\"connection-status\""),
        ("/ops", "text/html", "data-testid=\"ops-api-key\""),
        ("/assets/chat.js", "text/javascript", "v1/dispatch"),
        ("/assets/ops.js", "text/javascript", "/v1/server/nodes"),
        ("/assets/style.css", "text/css", "--accent"),
    ] {
        let resp = get(&node, path, &[]).await;
        assert_eq!(resp.status(), 200, "{path}");
        assert!(header(&resp, "content-type").starts_with(ty), "{path}");
        let csp = header(&resp, "content-security-policy");
        assert!(csp.contains("default-src 'none'"), "{path}: {csp}");
        assert!(csp.contains("script-src 'self'"), "{path}: {csp}");
        assert!(!csp.contains("unsafe"), "{path}: {csp}");
        assert_eq!(header(&resp, "x-content-type-options"), "nosniff");
        assert_eq!(header(&resp, "cache-control"), "no-cache");
        let etag = header(&resp, "etag");
        assert!(etag.starts_with('"') && etag.len() > 10, "{path}: {etag}");
        assert!(resp.text().await.unwrap().contains(needle), "{path}");
        // Revalidation: the same ETag gives 304 with no body; another gives the file.
        let again = get(&node, path, &[("if-none-match", &etag)]).await;
        assert_eq!(again.status(), 304, "{path}");
        assert!(again.bytes().await.unwrap().is_empty());
        let stale = get(&node, path, &[("if-none-match", "\"old\"")]).await;
        assert_eq!(stale.status(), 200, "{path}");
    }
    // Unknown assets are JSON 404s; no API route is shadowed by the pages.
    let resp = get(&node, "/assets/../Cargo.toml", &[]).await;
    assert_eq!(resp.status(), 404);
    let resp = get(&node, "/assets/secret.txt", &[]).await;
    assert_eq!(resp.status(), 404);
    let v: Value = resp.json().await.unwrap();
    assert_eq!(v["error"]["code"], "not_found");
    let (s, v) = node.http.call("GET", "/v1/rooms", None, None).await;
    assert_eq!(
        (s, v["error"]["code"].as_str()),
        (401, Some("unauthorized"))
    );
    let (s, _) = node.http.call("POST", "/", None, Some(json!({}))).await;
    assert_eq!(s, 405);
    node.stop().await;
}

#[tokio::test]
async fn a_node_without_the_api_role_serves_no_pages() {
    let node = TestNode::start_with(|c| c.roles.api = false).await;
    assert_eq!(get(&node, "/", &[]).await.status(), 404);
    assert_eq!(get(&node, "/ops", &[]).await.status(), 404);
    assert_eq!(get(&node, "/assets/chat.js", &[]).await.status(), 404);
    node.stop().await;
}

#[tokio::test]
async fn users_are_found_by_username_by_signed_in_users_only() {
    let node = TestNode::start().await;
    let (alice_id, _) = node.user("alice").await;
    let (_, bob) = node.user("bob").await;
    let (s, v) = node.http.get("/v1/users?username=alice", &bob).await;
    assert_eq!(s, 200, "{v}");
    assert_eq!(v, json!({"user_id": alice_id, "username": "alice"}));
    // Compared as at login: any case, NFKC (fullwidth letters).
    let (s, v) = node
        .http
        .get(
            "/v1/users?username=%EF%BD%81%EF%BD%8C%EF%BD%89%EF%BD%83%EF%BD%85",
            &bob,
        )
        .await;
    assert_eq!((s, v["user_id"].as_str()), (200, Some(alice_id.as_str())));
    let (s, v) = node.http.get("/v1/users?username=ALICE", &bob).await;
    assert_eq!((s, v["user_id"].as_str()), (200, Some(alice_id.as_str())));
    for (path, status, code) in [
        ("/v1/users?username=nobody", 404, "not_found"),
        ("/v1/users", 400, "bad_request"),
        ("/v1/users?username=", 400, "bad_request"),
    ] {
        let (s, v) = node.http.get(path, &bob).await;
        assert_eq!(
            (s, v["error"]["code"].as_str()),
            (status, Some(code)),
            "{path}"
        );
    }
    let long = "x".repeat(10_000);
    let (s, _) = node
        .http
        .get(&format!("/v1/users?username={long}"), &bob)
        .await;
    assert_eq!(s, 404);
    let (s, v) = node
        .http
        .call("GET", "/v1/users?username=alice", None, None)
        .await;
    assert_eq!(
        (s, v["error"]["code"].as_str()),
        (401, Some("unauthorized"))
    );
    node.stop().await;
}

async fn with_key(node: &TestNode, path: &str, key: Option<&str>) -> (u16, Value) {
    let headers: Vec<(&str, &str)> = key.map(|k| ("x-api-key", k)).into_iter().collect();
    let resp = get(node, path, &headers).await;
    (
        resp.status().as_u16(),
        resp.json().await.unwrap_or(Value::Null),
    )
}

#[tokio::test]
async fn stats_need_the_api_key_and_count_what_the_node_did() {
    let node = TestNode::start().await;
    for path in ["/v1/server/stats", "/v1/server/nodes"] {
        assert_eq!(with_key(&node, path, None).await.0, 401, "{path}");
        assert_eq!(with_key(&node, path, Some("wrong")).await.0, 401, "{path}");
    }
    let (s, before) = with_key(&node, "/v1/server/stats", Some(API_KEY)).await;
    assert_eq!(s, 200);
    assert_eq!(before["node_id"], "n_test");
    assert_eq!(before["roles"], json!(["gateway", "api", "dispatcher"]));
    assert_eq!(before["draining"], false);
    let (_, token) = node.user("carol").await;
    let room = node.http.room(&token, "stats", "public").await;
    for i in 0..3 {
        let (s, _) = node
            .http
            .call(
                "POST",
                &format!("/v1/rooms/{room}/messages"),
                Some(&token),
                Some(json!({"body": {"text": i}})),
            )
            .await;
        assert_eq!(s, 201);
    }
    let _ws = node.connect(&token).await;
    let (_, after) = with_key(&node, "/v1/server/stats", Some(API_KEY)).await;
    let published = |v: &Value| v["messages_published"].as_u64().unwrap();
    assert_eq!(published(&after) - published(&before), 3);
    assert!(after["connections"].as_u64().unwrap() >= 1, "{after}");
    let (s, nodes) = with_key(&node, "/v1/server/nodes", Some(API_KEY)).await;
    assert_eq!(s, 200);
    let list = nodes["nodes"].as_array().unwrap();
    assert_eq!(list.len(), 1, "{nodes}");
    assert_eq!(list[0]["stats"]["node_id"], "n_test");
    node.stop().await;

    let keyless = TestNode::start_with(|c| c.api_key = None).await;
    assert_eq!(
        with_key(&keyless, "/v1/server/stats", Some(API_KEY))
            .await
            .0,
        403
    );
    keyless.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_nodes_endpoint_reads_every_live_node_of_a_cluster() {
    let redis = RedisServer::start();
    let a = cluster_node(&redis, "web-a").await;
    let b = cluster_node(&redis, "web-b").await;
    eventually(Duration::from_secs(10), "both nodes listed", || async {
        let (s, v) = with_key(&a, "/v1/server/nodes", Some(API_KEY)).await;
        let ids: Vec<&str> = v["nodes"]
            .as_array()
            .into_iter()
            .flatten()
            .filter(|n| n["reachable"] == true)
            .filter_map(|n| n["stats"]["node_id"].as_str())
            .collect();
        s == 200 && ids.contains(&"web-a") && ids.contains(&"web-b")
    })
    .await;
    b.stop().await;
    a.stop().await;
}
