//! Durability: a restart keeps users, tokens, rooms, history and seq; a SIGKILL in the middle
//! of heavy publishing loses no message whose `published` answer was sent; SIGTERM tells every
//! client to reconnect, then exits cleanly.

use crate::common;
use common::*;
use serde_json::json;
use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

#[tokio::test]
async fn a_restart_keeps_tokens_rooms_history_and_seq() {
    let node = TestNode::start().await;
    let (alice_id, alice) = node.user("alice").await;
    let (bob_id, bob) = node.user("bob").await;
    let room = node.http.room(&alice, "keep", "private").await;
    node.http
        .call(
            "PUT",
            &format!("/v1/rooms/{room}/members/{bob_id}"),
            Some(&alice),
            None,
        )
        .await;
    for i in 1..=3 {
        node.http.publish(&alice, &room, json!({"i": i})).await;
    }
    let (s, _) = node
        .http
        .post(
            &format!("/v1/users/{bob_id}/messages"),
            &alice,
            json!({"body": "dm", "client_msg_id": "once"}),
        )
        .await;
    assert_eq!(s, 201);
    let dir = node.stop().await;

    let node = TestNode::start_in(dir, |_| {}).await;
    let (s, me) = node.http.get("/v1/me", &alice).await;
    assert_eq!(
        (s, me["user_id"].as_str()),
        (200, Some(alice_id.as_str())),
        "the token survives a restart"
    );
    let (s, _) = node.http.get(&format!("/v1/rooms/{room}"), &bob).await;
    assert_eq!(s, 200, "membership survives");
    let (_, h) = node
        .http
        .get(&format!("/v1/rooms/{room}/messages"), &bob)
        .await;
    let seqs: Vec<u64> = h["messages"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["seq"].as_u64().unwrap())
        .collect();
    assert_eq!(seqs, vec![1, 2, 3]);
    assert_eq!(
        node.http.publish(&alice, &room, json!({"i": 4})).await,
        4,
        "seq continues"
    );
    // Idempotency survives too.
    let (_, again) = node
        .http
        .post(
            &format!("/v1/users/{bob_id}/messages"),
            &alice,
            json!({"body": "dm", "client_msg_id": "once"}),
        )
        .await;
    assert_eq!(again["seq"], 1);
    let (_, bobs) = node.http.get("/v1/users/me/messages", &bob).await;
    assert_eq!(bobs["messages"].as_array().unwrap().len(), 1);
    // Login still works (password hashes persisted).
    let (s, _) = node
        .http
        .call(
            "POST",
            "/v1/sessions",
            None,
            Some(json!({"username": "bob", "password": PASSWORD})),
        )
        .await;
    assert_eq!(s, 201);
    node.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigkill_loses_no_acknowledged_message() {
    let dir = tempfile::tempdir().unwrap();
    let mut proc = NodeProcess::start(dir.path(), &["--publish-rate", "0"]).await;
    let (_, token) = proc.http.user("alice").await;
    let room = proc.http.room(&token, "crash", "public").await;

    // Eight concurrent publishers record every acknowledged (seq, message_id).
    let acked: Arc<Mutex<BTreeMap<u64, String>>> = Arc::default();
    let mut tasks = Vec::new();
    for p in 0..8 {
        let (http, token, room, acked) = (
            proc.http.clone(),
            token.clone(),
            room.clone(),
            acked.clone(),
        );
        tasks.push(tokio::spawn(async move {
            for i in 0.. {
                let req = http
                    .client
                    .post(format!("{}/v1/rooms/{room}/messages", http.base))
                    .bearer_auth(&token)
                    .json(&json!({"body": {"p": p, "i": i}}))
                    .send()
                    .await;
                let Ok(resp) = req else { return };
                if resp.status() != 201 {
                    return;
                }
                let Ok(v) = resp.json::<serde_json::Value>().await else {
                    return;
                };
                acked.lock().unwrap().insert(
                    v["seq"].as_u64().unwrap(),
                    v["message_id"].as_str().unwrap().to_owned(),
                );
            }
        }));
    }
    // Let them run, then kill -9 in the middle of it.
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    while acked.lock().unwrap().len() < 300 && std::time::Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    proc.signal("KILL");
    proc.wait(WAIT).await;
    for t in tasks {
        t.await.unwrap();
    }
    let acked = acked.lock().unwrap().clone();
    assert!(
        acked.len() >= 300,
        "only {} messages were acknowledged before the kill",
        acked.len()
    );

    let proc = NodeProcess::start(dir.path(), &[]).await;
    let mut stored = BTreeMap::new();
    let mut after = 0;
    loop {
        let (s, h) = proc
            .http
            .get(
                &format!("/v1/rooms/{room}/messages?after={after}&limit=500"),
                &token,
            )
            .await;
        assert_eq!(s, 200);
        let page = h["messages"].as_array().unwrap().clone();
        for m in &page {
            after = m["seq"].as_u64().unwrap();
            stored.insert(after, m["message_id"].as_str().unwrap().to_owned());
        }
        if page.len() < 500 {
            break;
        }
    }
    for (seq, id) in &acked {
        assert_eq!(
            stored.get(seq),
            Some(id),
            "acknowledged seq {seq} was lost or changed by the crash"
        );
    }
    let head = *stored.keys().last().unwrap();
    assert_eq!(
        stored.keys().copied().collect::<Vec<_>>(),
        (1..=head).collect::<Vec<_>>(),
        "stored seqs have no gap"
    );
    let next = proc
        .http
        .publish(&token, &room, json!("after the crash"))
        .await;
    assert_eq!(next, head + 1, "seq continues after the crash");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_tells_clients_to_reconnect_then_exits_cleanly() {
    let dir = tempfile::tempdir().unwrap();
    let mut proc = NodeProcess::start(dir.path(), &["--reconnect-jitter-ms", "3000"]).await;
    let (_, token) = proc.http.user("alice").await;
    let room = proc.http.room(&token, "bye", "public").await;
    proc.http.publish(&token, &room, json!("before")).await;
    let mut clients = Vec::new();
    for _ in 0..3 {
        let mut c = WsClient::connect(&format!("{}?token={token}", proc.ws_url())).await;
        c.expect("welcome").await;
        clients.push(c);
    }
    proc.signal("TERM");
    for c in &mut clients {
        let frames = c.until_closed().await;
        let kinds: Vec<&str> = frames.iter().filter_map(|f| f["type"].as_str()).collect();
        assert_eq!(kinds, vec!["reconnect", "disconnect"], "{frames:?}");
        assert!(frames[0]["delay_ms"].as_u64().unwrap() < 3000);
        assert_eq!(frames[1]["reason"], "shutdown");
    }
    assert_eq!(
        proc.wait(Duration::from_secs(30)).await,
        Some(0),
        "clean exit code"
    );
    // The store was closed cleanly: everything is there on the next start.
    let proc = NodeProcess::start(dir.path(), &[]).await;
    let (_, h) = proc
        .http
        .get(&format!("/v1/rooms/{room}/messages"), &token)
        .await;
    assert_eq!(h["messages"][0]["body"], "before");
}
