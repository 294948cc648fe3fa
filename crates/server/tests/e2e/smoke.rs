//! The quickest story: two people chat through one node.

use crate::common;
use common::*;
use serde_json::json;

#[tokio::test]
async fn two_users_chat_in_a_room() {
    let node = TestNode::start().await;
    let (_alice_id, alice) = node.user("alice").await;
    let (bob_id, bob) = node.user("bob").await;
    let room = node.http.room(&alice, "lobby", "public").await;
    let (s, _) = node
        .http
        .call(
            "PUT",
            &format!("/v1/rooms/{room}/members/{bob_id}"),
            Some(&bob),
            None,
        )
        .await;
    assert_eq!(s, 204);

    let conv = format!("room:{room}");
    let mut a = node.connect(&alice).await;
    let mut b = node.connect(&bob).await;
    for c in [&mut a, &mut b] {
        let r = c
            .request(json!({"type": "subscribe", "conv": conv}), 1)
            .await;
        assert_eq!(r["type"], "subscribed", "{r}");
    }
    let r = a
        .request(
            json!({"type": "publish", "conv": conv, "body": {"text": "hi bob"}}),
            2,
        )
        .await;
    assert_eq!(r["type"], "published");
    assert_eq!(r["seq"], 1);
    let got = b.messages(&conv, 1).await;
    assert_eq!(got[0]["body"]["text"], "hi bob");
    assert_eq!(got[0]["seq"], 1);
    node.stop().await;
}
