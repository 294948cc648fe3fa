//! Subscribing over a WebSocket: checks against rooms and streams, `since`, history,
//! presence and unsubscribe, and a member removed from a private room losing its subscription.

use super::*;

#[tokio::test]
async fn subscribe_is_checked_against_rooms_and_streams() {
    let node = TestNode::start().await;
    let (alice_id, alice) = node.user("alice").await;
    let (_, bob) = node.user("bob").await;
    let private = node.http.room(&alice, "secret", "private").await;
    let mut b = node.connect(&bob).await;
    let r = b
        .request(json!({"type": "subscribe", "conv": "room:r_missing"}), 1)
        .await;
    assert_eq!(r["code"], "not_found");
    let r = b
        .request(
            json!({"type": "subscribe", "conv": format!("room:{private}")}),
            2,
        )
        .await;
    assert_eq!(r["code"], "not_member");
    let r = b
        .request(
            json!({"type": "subscribe", "conv": format!("user:{alice_id}")}),
            3,
        )
        .await;
    assert_eq!(r["code"], "forbidden");
    let r = b
        .request(
            json!({"type": "history", "conv": format!("room:{private}")}),
            4,
        )
        .await;
    assert_eq!(r["code"], "not_member");
    let r = b
        .request(
            json!({"type": "publish", "conv": format!("room:{private}"), "body": 1}),
            5,
        )
        .await;
    assert_eq!(r["code"], "not_member");
    let r = b
        .request(
            json!({"type": "publish", "conv": "user:u_nobody", "body": 1}),
            6,
        )
        .await;
    assert_eq!(r["code"], "not_found");
    // The connection survived all of it.
    assert_eq!(b.request(json!({"type": "ping"}), 7).await["type"], "pong");
    node.stop().await;
}

#[tokio::test]
async fn subscribe_since_history_presence_and_unsubscribe() {
    let node = TestNode::start().await;
    let (alice_id, alice) = node.user("alice").await;
    let room = node.http.room(&alice, "lobby", "public").await;
    let conv = format!("room:{room}");
    for i in 1..=5 {
        node.http.publish(&alice, &room, json!({"n": i})).await;
    }
    let mut c = node.connect(&alice).await;
    let r = c
        .request(json!({"type": "subscribe", "conv": conv, "since": 2}), 1)
        .await;
    assert_eq!(r["type"], "subscribed");
    assert_eq!(r["head_seq"], 5);
    assert_eq!(r["recovered"], true);
    assert!(r["epoch"].as_str().is_some_and(|e| !e.is_empty()));
    let replay = c.messages(&conv, 3).await;
    assert_eq!(
        replay
            .iter()
            .map(|m| m["seq"].as_u64().unwrap())
            .collect::<Vec<_>>(),
        vec![3, 4, 5]
    );
    assert!(
        replay.iter().all(|m| m.get("id").is_none()),
        "message frames carry no id"
    );

    let h = c
        .request(
            json!({"type": "history", "conv": conv, "before": 5, "limit": 2}),
            2,
        )
        .await;
    let seqs: Vec<u64> = h["messages"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["seq"].as_u64().unwrap())
        .collect();
    assert_eq!(seqs, vec![3, 4]);
    let h = c
        .request(json!({"type": "history", "conv": conv, "after": 3}), 3)
        .await;
    assert_eq!(h["messages"].as_array().unwrap().len(), 2);

    let p = c
        .request(json!({"type": "presence", "conv": conv}), 4)
        .await;
    assert_eq!(p["users"], json!([{"user_id": alice_id, "connections": 1}]));

    // Live delivery, then none after unsubscribe.
    node.http.publish(&alice, &room, json!({"n": 6})).await;
    assert_eq!(c.messages(&conv, 1).await[0]["seq"], 6);
    let u = c
        .request(json!({"type": "unsubscribe", "conv": conv}), 5)
        .await;
    assert_eq!(u["type"], "unsubscribed");
    node.http.publish(&alice, &room, json!({"n": 7})).await;
    let p = c.request(json!({"type": "ping"}), 6).await;
    assert_eq!(
        p["type"], "pong",
        "no message frame may arrive after unsubscribe: {p}"
    );
    node.stop().await;
}

#[tokio::test]
async fn a_member_removed_from_a_private_room_loses_its_live_subscription_at_once() {
    let node = TestNode::start().await;
    let (_, owner) = node.user("owner").await;
    let (bob_id, bob) = node.user("bob").await;
    let room = node.http.room(&owner, "inner circle", "private").await;
    let conv = format!("room:{room}");
    let (s, _) = node
        .http
        .call(
            "PUT",
            &format!("/v1/rooms/{room}/members/{bob_id}"),
            Some(&owner),
            None,
        )
        .await;
    assert_eq!(s, 204);
    let mut b = node.connect(&bob).await;
    assert_eq!(
        b.request(json!({"type": "subscribe", "conv": conv}), 1)
            .await["type"],
        "subscribed"
    );
    node.http
        .publish(&owner, &room, json!("while a member"))
        .await;
    assert_eq!(b.messages(&conv, 1).await[0]["body"], "while a member");

    let (s, _) = node
        .http
        .call(
            "DELETE",
            &format!("/v1/rooms/{room}/members/{bob_id}"),
            Some(&owner),
            None,
        )
        .await;
    assert_eq!(s, 204);
    let u = b.expect("unsubscribed").await;
    assert_eq!(
        (u["conv"].as_str(), u["reason"].as_str(), u["id"].clone()),
        (Some(conv.as_str()), Some("not_member"), Value::Null)
    );
    node.http
        .publish(&owner, &room, json!("after removal"))
        .await;
    let p = b.request(json!({"type": "ping"}), 2).await;
    assert_eq!(
        p["type"], "pong",
        "nothing of the room may arrive after removal: {p}"
    );
    let r = b
        .request(json!({"type": "subscribe", "conv": conv}), 3)
        .await;
    assert_eq!(r["code"], "not_member");
    node.stop().await;
}
