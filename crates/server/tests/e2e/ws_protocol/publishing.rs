//! Publishing over a WebSocket: direct messages to every device of both users, idempotency
//! across HTTP and WebSocket, and a publish rate limit that rejects only the excess.

use super::*;

#[tokio::test]
async fn direct_messages_reach_every_device_of_both_users() {
    let node = TestNode::start().await;
    let (alice_id, alice) = node.user("alice").await;
    let (bob_id, bob) = node.user("bob").await;
    let mut a1 = node.connect(&alice).await;
    let mut a2 = node.connect(&alice).await;
    let mut b1 = node.connect(&bob).await;
    let mut b2 = node.connect(&bob).await;
    let r = a1
        .request(json!({"type": "publish", "conv": format!("user:{bob_id}"), "body": {"text": "psst"}, "client_msg_id": "dm-1"}), 1)
        .await;
    assert_eq!(r["type"], "published");
    assert_eq!(r["conv"], format!("user:{bob_id}"));
    for b in [&mut b1, &mut b2] {
        let m = &b.messages(&format!("user:{bob_id}"), 1).await[0];
        assert_eq!(
            (m["from"].as_str(), m["to"].as_str()),
            (Some(alice_id.as_str()), Some(bob_id.as_str()))
        );
        assert_eq!(m["body"]["text"], "psst");
    }
    for a in [&mut a1, &mut a2] {
        let m = &a.messages(&format!("user:{alice_id}"), 1).await[0];
        assert_eq!(
            m["to"],
            bob_id.as_str(),
            "the sender's copy names the recipient"
        );
    }
    // A retry returns the first answer and delivers nothing new.
    let again = a1
        .request(json!({"type": "publish", "conv": format!("user:{bob_id}"), "body": {"text": "psst"}, "client_msg_id": "dm-1"}), 2)
        .await;
    assert_eq!(
        (again["seq"].clone(), again["message_id"].clone()),
        (r["seq"].clone(), r["message_id"].clone())
    );
    let p = b1.request(json!({"type": "ping"}), 3).await;
    assert_eq!(
        p["type"], "pong",
        "a retried DM must not be delivered twice: {p}"
    );
    node.stop().await;
}

#[tokio::test]
async fn idempotency_holds_across_http_and_websocket() {
    let node = TestNode::start().await;
    let (_, alice) = node.user("alice").await;
    let room = node.http.room(&alice, "lobby", "public").await;
    let (s, first) = node
        .http
        .post(
            &format!("/v1/rooms/{room}/messages"),
            &alice,
            json!({"body": "hi", "client_msg_id": "k1"}),
        )
        .await;
    assert_eq!(s, 201);
    let mut c = node.connect(&alice).await;
    let again = c.request(json!({"type": "publish", "conv": format!("room:{room}"), "body": "hi", "client_msg_id": "k1"}), 1).await;
    assert_eq!(
        (again["seq"].clone(), again["message_id"].clone()),
        (first["seq"].clone(), first["message_id"].clone())
    );
    let (_, h) = node
        .http
        .get(&format!("/v1/rooms/{room}/messages"), &alice)
        .await;
    assert_eq!(h["messages"].as_array().unwrap().len(), 1);
    node.stop().await;
}

#[tokio::test]
async fn publish_rate_limit_rejects_only_the_excess() {
    let node = TestNode::start_with(|c| {
        c.limits.publish_rate = 5;
        c.limits.publish_burst = 10;
    })
    .await;
    let (_, alice) = node.user("alice").await;
    let room = node.http.room(&alice, "lobby", "public").await;
    let conv = format!("room:{room}");
    let mut c = node.connect(&alice).await;
    for i in 0..30u64 {
        c.send(json!({"type": "publish", "id": i, "conv": conv, "body": i}))
            .await;
    }
    let mut published = Vec::new();
    let mut limited = 0;
    while published.len() + limited < 30 {
        let v = c.next().await.unwrap();
        match v["type"].as_str() {
            Some("published") => published.push(v["seq"].as_u64().unwrap()),
            Some("error") => {
                assert_eq!(v["code"], "rate_limited");
                limited += 1;
            }
            _ => {}
        }
    }
    assert!(
        published.len() >= 10 && published.len() < 15,
        "{published:?}"
    );
    published.sort();
    assert_eq!(
        published,
        (1..=published.len() as u64).collect::<Vec<_>>(),
        "accepted publishes keep consecutive seqs"
    );
    // Still usable, and history holds exactly the accepted ones.
    assert_eq!(c.request(json!({"type": "ping"}), 99).await["type"], "pong");
    let h = c
        .request(json!({"type": "history", "conv": conv, "limit": 100}), 100)
        .await;
    assert_eq!(h["messages"].as_array().unwrap().len(), published.len());
    node.stop().await;
}
