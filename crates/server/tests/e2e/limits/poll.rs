//! Finding 4: one token opened 300 long-poll sessions in 0.2 s, each counted as a connection
//! and in presence without ever polling. And from finding 2: a session's buffer was bounded in
//! frames only, and an ended session kept its frames one more idle period.

use super::{assert_limited, call, server};
use crate::common::{Client, JsonApi, PollClient, TestNode, eventually};
use serde_json::{Value, json};
use std::time::Duration;

/// Opens a session without reading anything from it; returns its id.
async fn open_unread(node: &TestNode, token: &str) -> (u16, Value, Option<u64>) {
    call(&node.http, "POST", "/v1/poll", Some(token), None).await
}

async fn connections_of(node: &TestNode, token: &str, uid: &str) -> u64 {
    let (_, v) = node
        .http
        .get(&format!("/v1/presence/users?ids={uid}"), token)
        .await;
    v["users"][uid]["connections"].as_u64().unwrap_or(0)
}

#[tokio::test]
async fn a_user_holds_at_most_the_cap_of_poll_sessions() {
    let node = TestNode::start_with(|c| c.limits.abuse.poll_sessions_per_user = 4).await;
    let (_, alice) = node.user("alice").await;
    let (_, bob) = node.user("bob").await;
    let mut opened = Vec::new();
    for _ in 0..4 {
        let (s, v, _) = open_unread(&node, &alice).await;
        assert_eq!(s, 201, "{v}");
        opened.push(v["session"].as_str().unwrap().to_owned());
    }
    // The attack: many more, as fast as they go. Every one past the cap is refused.
    for _ in 0..50 {
        assert_limited(&open_unread(&node, &alice).await);
    }
    // Others are not affected; closing a session frees its place.
    let (s, _, _) = open_unread(&node, &bob).await;
    assert_eq!(s, 201);
    let (s, _) = node
        .http
        .call("DELETE", &format!("/v1/poll/{}", opened[0]), None, None)
        .await;
    assert_eq!(s, 204);
    eventually(|| async {
        match open_unread(&node, &alice).await.0 {
            201 => Ok(()),
            s => Err(format!("status {s}")),
        }
    })
    .await;
    node.stop().await;
}

#[tokio::test]
async fn a_poll_session_never_polled_expires_and_leaves_presence() {
    let node = TestNode::start_with(|c| c.poll_first_get = Duration::from_millis(800)).await;
    let (uid, token) = node.user("alice").await;
    for _ in 0..5 {
        assert_eq!(open_unread(&node, &token).await.0, 201);
    }
    // A polled one lives on (its idle time is the usual 60 s).
    let mut kept = PollClient::open(&node.http, &token, None).await.unwrap();
    kept.expect("welcome").await;
    assert_eq!(connections_of(&node, &token, &uid).await, 6);
    tokio::time::sleep(Duration::from_millis(1500)).await;
    eventually(|| async {
        match connections_of(&node, &token, &uid).await {
            1 => Ok(()),
            n => Err(format!("{n} connections")),
        }
    })
    .await;
    let (_, info) = node.http.call("GET", "/v1/node", None, None).await;
    assert_eq!(info["connections"], 1, "{info}");
    node.stop().await;
}

/// A session subscribed to `room` whose client collected only its `welcome`.
async fn subscribed_unread(node: &TestNode, token: &str, room: &str) -> PollClient {
    let mut p = PollClient::open(&node.http, token, None).await.unwrap();
    p.expect("welcome").await;
    let r = p
        .request(
            json!({"type": "subscribe", "conv": format!("room:{room}")}),
            1,
        )
        .await;
    assert_eq!(r["type"], "subscribed", "{r}");
    p
}

/// Everything one GET after `after` returns: (status, frames).
async fn get_all(node: &TestNode, p: &PollClient, after: u64) -> (u16, Vec<Value>) {
    let (s, v) = node
        .http
        .call(
            "GET",
            &format!("/v1/poll/{}?after={after}&wait_ms=0", p.session),
            None,
            None,
        )
        .await;
    (s, v.as_array().cloned().unwrap_or_default())
}

#[tokio::test]
async fn a_poll_buffer_is_bounded_in_bytes() {
    let node = TestNode::start_with(|c| {
        c.poll_buffer_bytes = 64 << 10;
        c.limits.outbound_queue = 4;
        // A queue that does not move for this long is cut (10 s by default).
        c.limits.write_timeout = Duration::from_secs(1);
    })
    .await;
    let (_, alice) = node.user("alice").await;
    let room = node.http.room(&alice, "big", "public").await;
    let p = subscribed_unread(&node, &alice, &room).await;
    let big = "x".repeat(30_000);
    for _ in 0..30 {
        let (s, v, _) = server(
            &node.http,
            "/v1/server/publish",
            json!({"conv": format!("room:{room}"), "body": {"text": big}}),
        )
        .await;
        assert_eq!(s, 201, "{v}");
    }
    // Before: all 30 (900 KB) waited in the buffer. Now at most 64 KiB wait, and the session,
    // unable to drain its queue, is cut as a slow consumer.
    tokio::time::sleep(Duration::from_millis(300)).await;
    let (_, frames) = get_all(&node, &p, p.after).await;
    let bytes: usize = frames.iter().map(|f| f.to_string().len()).sum();
    assert!(bytes <= (64 << 10) + 31_000, "{bytes} bytes buffered");
    eventually(|| async {
        let (s, frames) = get_all(&node, &p, 0).await;
        let cut = frames
            .iter()
            .any(|f| f["type"] == "disconnect" && f["reason"] == "slow_consumer");
        (s == 404 || cut)
            .then_some(())
            .ok_or(format!("{s} {} frames", frames.len()))
    })
    .await;
    node.stop().await;
}

#[tokio::test]
async fn an_ended_poll_session_keeps_only_its_last_frame() {
    let node = TestNode::start().await;
    let (uid, alice) = node.user("alice").await;
    let room = node.http.room(&alice, "lobby", "public").await;
    let p = subscribed_unread(&node, &alice, &room).await;
    for i in 0..20 {
        node.http.publish(&alice, &room, json!({"n": i})).await;
    }
    // Kicked by the application: the session ends with frames nobody collected.
    let (s, v, _) = server(
        &node.http,
        &format!("/v1/server/users/{uid}/disconnect"),
        json!({}),
    )
    .await;
    assert_eq!(s, 204, "{v}");
    eventually(|| async {
        let (s, frames) = get_all(&node, &p, p.after).await;
        match frames.as_slice() {
            // What a late GET needs: how the session ended; the messages were released.
            [last] if last["type"] == "disconnect" => Ok(()),
            other => Err(format!("{s}: {} frames", other.len())),
        }
    })
    .await;
    node.stop().await;
}
