//! The SDK over every transport: publishes, direct messages, requests and unsubscribing, each
//! message delivered once and in order.

use super::*;

// ----- 1. every transport -----

pub(super) async fn publish_and_receive_each_message_once_in_order(kind: Kind) {
    let node = TestNode::start().await;
    let (alice_id, alice) = node.user("alice").await;
    let (_, bob) = node.user("bob").await;
    let room = node.http.room(&alice, "lobby", "public").await;
    let conv = format!("room:{room}");
    node.http.publish(&alice, &room, json!("before")).await;

    let (client, events) = Client::connect(config(at(node.addr), &alice, choice(kind)))
        .await
        .expect("connects");
    let mut w = Watch::new(events);
    let (node_id, t) = w.connected().await;
    assert_eq!((node_id.as_str(), t), ("n_test", transport(kind)));
    assert_eq!(client.node_id().as_deref(), Some("n_test"));
    assert_eq!(client.user_id().as_deref(), Some(alice_id.as_str()));

    let s = client.subscribe(&conv).await.unwrap();
    assert_eq!(s.head_seq, 1);
    // Alternate SDK and HTTP publishes.
    let mut expected = Vec::new();
    for i in 0..3 {
        let r = client.publish(&conv, json!({"sdk": i})).await.unwrap();
        assert_eq!(r.conv, conv);
        expected.push((r.seq, json!({"sdk": i})));
        let seq = node.http.publish(&bob, &room, json!({"http": i})).await;
        expected.push((seq, json!({"http": i})));
    }
    let got = w.messages_until(&conv, 6).await;
    assert_exactly(&got, 2, 7);
    let got_bodies: Vec<(u64, Value)> = got.iter().map(|m| (m.seq, m.body.clone())).collect();
    assert_eq!(got_bodies, expected);
    assert!(
        got[0].client_msg_id.is_some(),
        "the SDK sends a client_msg_id"
    );
    assert_eq!(got[0].from.as_deref(), Some(alice_id.as_str()));

    // Direct messages arrive on the own stream, tracked from the first connection.
    let own = format!("user:{alice_id}");
    let (st, _) = node
        .http
        .post(
            &format!("/v1/users/{alice_id}/messages"),
            &bob,
            json!({"body": "psst"}),
        )
        .await;
    assert_eq!(st, 201);
    let dm = w.messages_until(&own, 1).await;
    assert_eq!(dm[0].body, json!("psst"));

    // Requests.
    let h = client.history(&conv, Some(1), None, None).await.unwrap();
    assert_exactly(&h, 2, 7);
    let p = client.presence(&conv).await.unwrap();
    assert_eq!(p.len(), 1);
    assert_eq!(p[0].user_id, alice_id);
    match client.subscribe("room:r_nope").await {
        Err(ClientError::Server { code, .. }) => assert_eq!(code, "not_found"),
        other => panic!("{other:?}"),
    }
    let epoch = client.position(&conv).unwrap().0;
    assert_eq!(client.position(&conv), Some((epoch, 7)));

    // Exactly once: nothing more comes.
    w.settle(Duration::from_millis(300)).await;
    assert_exactly(&w.messages(&conv), 2, 7);
    assert_eq!(w.messages(&own).len(), 1);

    client.unsubscribe(&conv).await.unwrap();
    assert_eq!(client.position(&conv), None);
    node.http.publish(&bob, &room, json!("after")).await;
    w.settle(Duration::from_millis(300)).await;
    assert_eq!(w.messages(&conv).len(), 6, "nothing after unsubscribe");

    client.clone().close().await;
    w.settle(Duration::from_millis(200)).await;
    assert!(w.events.next().await.is_none(), "the stream ends on close");
    assert_eq!(
        client.publish(&conv, json!(1)).await.unwrap_err(),
        ClientError::Closed
    );
    node.stop().await;
}
