//! What the server ends for the SDK: the session on logout, a refused token, and a
//! subscription when the user is removed from a private room.

use super::*;

// ----- 6. logout -----

pub(super) async fn logout_ends_the_stream_without_reconnecting(kind: Kind) {
    let node = TestNode::start().await;
    let (_, alice) = node.user("alice").await;
    let (client, events) = Client::connect(config(at(node.addr), &alice, choice(kind)))
        .await
        .unwrap();
    let mut w = Watch::new(events);
    w.connected().await;
    let opened = metric(
        &metrics(&node).await,
        "switchboard_connections_opened_total",
    );

    let (s, _) = node
        .http
        .call("DELETE", "/v1/sessions/current", Some(&alice), None)
        .await;
    assert_eq!(s, 204);
    let reason = w
        .until("ServerDisconnect", |e| match e {
            Event::ServerDisconnect { reason } => Some(reason.clone()),
            _ => None,
        })
        .await;
    assert_eq!(reason, "logged_out");
    let end = tokio::time::timeout(LONG, w.events.next()).await.unwrap();
    assert_eq!(end, None, "the stream ends after ServerDisconnect");
    assert!(
        !w.seen
            .iter()
            .any(|e| matches!(e, Event::Disconnected { .. })),
        "{:#?}",
        w.seen
    );

    // No reconnect attempt follows.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let text = metrics(&node).await;
    assert_eq!(
        metric(&text, "switchboard_connections_opened_total"),
        opened
    );
    assert_eq!(metric(&text, "switchboard_connections"), 0.0);
    assert_eq!(
        client.publish("room:x", json!(1)).await.unwrap_err(),
        ClientError::Closed
    );
    assert_eq!(client.node_id(), None);
    node.stop().await;
}

pub(super) async fn a_refused_token_fails_connect(kind: Kind) {
    let node = TestNode::start().await;
    let bad = format!("sb_{}", "0".repeat(64));
    match Client::connect(config(at(node.addr), &bad, choice(kind))).await {
        Err(ClientError::Server { code, .. }) => assert_eq!(code, "unauthorized"),
        other => panic!("{other:?}"),
    }
    node.stop().await;
}

// ----- subscriptions the server ends -----

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn removal_from_a_private_room_ends_the_subscription_live_and_on_resume() {
    with_deadline(async {
        let node = TestNode::start().await;
        let (http, _tcp) = behind_proxies(&node).await;
        let (_, alice) = node.user("alice").await;
        let (bob_id, bob) = node.user("bob").await;
        let room = node.http.room(&alice, "secret", "private").await;
        let conv = conv_of(&room);
        let member = format!("/v1/rooms/{room}/members/{bob_id}");
        let (s, _) = node.http.call("PUT", &member, Some(&alice), None).await;
        assert_eq!(s, 204);
        let (client, events) = Client::connect(config(at(http.addr), &bob, TransportChoice::Tcp))
            .await
            .unwrap();
        let mut w = Watch::new(events);
        w.connected().await;

        // Live: the server's unasked `unsubscribed`.
        client.subscribe(&conv).await.unwrap();
        let (s, _) = node.http.call("DELETE", &member, Some(&alice), None).await;
        assert_eq!(s, 204);
        let reason = w
            .until("Unsubscribed", |e| match e {
                Event::Unsubscribed { conv: c, reason } if *c == conv => Some(reason.clone()),
                _ => None,
            })
            .await;
        assert_eq!(reason, "not_member");
        assert_eq!(client.position(&conv), None);
        match client.subscribe(&conv).await {
            Err(ClientError::Server { code, .. }) => assert_eq!(code, "not_member"),
            other => panic!("{other:?}"),
        }

        // On resume: removed while away, the resume of the room is refused.
        let (s, _) = node.http.call("PUT", &member, Some(&alice), None).await;
        assert_eq!(s, 204);
        client.subscribe(&conv).await.unwrap();
        http.state.block_dispatch.store(true, Ordering::SeqCst);
        let (s, _) = node
            .http
            .server(
                &format!("/v1/server/users/{bob_id}/disconnect"),
                json!({"reason": "protocol_error"}),
            )
            .await;
        assert_eq!(s, 204);
        assert_eq!(w.disconnected().await, "protocol_error");
        let (s, _) = node.http.call("DELETE", &member, Some(&alice), None).await;
        assert_eq!(s, 204);
        http.state.block_dispatch.store(false, Ordering::SeqCst);
        w.connected().await;
        let reason = w
            .until("Unsubscribed after the resume", |e| match e {
                Event::Unsubscribed { conv: c, reason } if *c == conv => Some(reason.clone()),
                _ => None,
            })
            .await;
        assert_eq!(reason, "not_member");
        assert_eq!(client.position(&conv), None);
        client.close().await;
        node.stop().await;
    })
    .await
}
