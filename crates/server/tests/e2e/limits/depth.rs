//! Finding 3: a body nested 200 deep (401 bytes) was stored, and a client whose JSON parser
//! stops at 128 levels (the Rust SDK's) could then read nothing after it. Now a body deeper
//! than `--max-body-depth` is `bad_request` on every path, and nothing is stored.

use super::{call, server};
use crate::common::{Client, JsonApi, Kind, TestNode, assert_error};
use serde_json::{Value, json};

/// `[[[...]]]`, `depth` levels deep, as a JSON value.
fn nested(depth: usize) -> Value {
    let text = format!("{}{}", "[".repeat(depth), "]".repeat(depth));
    serde_json::from_str(&text).expect("within serde_json's own depth limit")
}

/// A raw frame publishing a body `depth + 1` deep, as text (serde_json's own parser stops at
/// 128 levels, so the poison cannot be a `Value`).
fn deep_publish(conv: &str, depth: usize, id: u64) -> String {
    format!(
        r#"{{"type":"publish","id":{id},"conv":"{conv}","body":{{"x":{}{}}}}}"#,
        "[".repeat(depth),
        "]".repeat(depth)
    )
}

#[tokio::test]
async fn a_body_nested_past_the_limit_is_refused_on_every_path() {
    let node = TestNode::start().await;
    let (_, alice) = node.user("alice").await;
    let (bob_id, bob) = node.user("bob").await;
    let room = node.http.room(&alice, "lobby", "public").await;
    let poison = format!("{}{}", "[".repeat(200), "]".repeat(200));
    let raw = |path: String, token: &str| {
        let req = node
            .http
            .client
            .post(format!("{}{path}", node.http.base))
            .bearer_auth(token)
            .header("content-type", "application/json")
            .body(format!(r#"{{"body":{poison}}}"#));
        async move {
            let resp = req.send().await.unwrap();
            let s = resp.status().as_u16();
            (s, resp.json::<Value>().await.unwrap_or(Value::Null))
        }
    };
    // HTTP: a room message and a direct message (the jam: anyone may DM anyone).
    assert_error(
        raw(format!("/v1/rooms/{room}/messages"), &alice).await,
        400,
        "bad_request",
    );
    assert_error(
        raw(format!("/v1/users/{bob_id}/messages"), &alice).await,
        400,
        "bad_request",
    );
    // The server API.
    let resp = node
        .http
        .client
        .post(format!("{}/v1/server/publish", node.http.base))
        .header("x-api-key", crate::common::API_KEY)
        .body(format!(r#"{{"conv":"user:{bob_id}","body":{poison}}}"#))
        .send()
        .await
        .unwrap();
    let s = resp.status().as_u16();
    assert_error((s, resp.json().await.unwrap()), 400, "bad_request");
    // Frames over WebSocket, TCP and long-polling, to the room and to bob's stream.
    for kind in [Kind::Ws, Kind::Tcp, Kind::Poll] {
        let mut c = node.connect_over(kind, &alice).await;
        for (i, conv) in [format!("room:{room}"), format!("user:{bob_id}")]
            .iter()
            .enumerate()
        {
            let id = 10 + i as u64;
            c.send_raw(&deep_publish(conv, 200, id)).await;
            let reply = loop {
                let v = c.next().await.expect("a reply");
                if v["id"] == json!(id) {
                    break v;
                }
            };
            assert_eq!(reply["type"], "error", "{kind:?}: {reply}");
            assert_eq!(reply["code"], "bad_request", "{kind:?}: {reply}");
        }
        // The connection is kept: a normal publish still works.
        let ok = c
            .request(
                json!({"type":"publish","conv":format!("room:{room}"),"body":{"ok":1}}),
                20,
            )
            .await;
        assert_eq!(ok["type"], "published", "{kind:?}: {ok}");
    }
    // At the limit (64) a body is accepted; nothing deeper was stored anywhere.
    let (s, v, _) = call(
        &node.http,
        "POST",
        &format!("/v1/rooms/{room}/messages"),
        Some(&alice),
        Some(json!({"body": nested(64)})),
    )
    .await;
    assert_eq!(s, 201, "{v}");
    let (_, page) = node.http.get("/v1/users/me/messages", &bob).await;
    assert_eq!(page["messages"].as_array().unwrap().len(), 0, "{page}");
    let (_, page) = node
        .http
        .get(&format!("/v1/rooms/{room}/messages"), &alice)
        .await;
    assert_eq!(page["messages"].as_array().unwrap().len(), 4, "{page}");
    node.stop().await;
}

#[tokio::test]
async fn the_depth_limit_is_configurable() {
    let node = TestNode::start_with(|c| c.limits.max_body_depth = 4).await;
    let (_, alice) = node.user("alice").await;
    let room = node.http.room(&alice, "lobby", "public").await;
    let path = format!("/v1/rooms/{room}/messages");
    // `{"x":[[[1]]]}` is 4 deep; one more level is refused. Strings do not count.
    let ok = json!({"body": {"x": [[[1]]], "s": "[[[[[[[[{{{{"}});
    let (s, v, _) = call(&node.http, "POST", &path, Some(&alice), Some(ok)).await;
    assert_eq!(s, 201, "{v}");
    let deep = json!({"body": {"x": [[[[1]]]]}});
    let (s, v, _) = call(&node.http, "POST", &path, Some(&alice), Some(deep.clone())).await;
    assert_error((s, v), 400, "bad_request");
    let (s, v, _) = server(
        &node.http,
        "/v1/server/publish",
        json!({"conv": format!("room:{room}"), "body": deep["body"]}),
    )
    .await;
    assert_error((s, v), 400, "bad_request");
    node.stop().await;
}
