//! The SDK against a network in the way: a proxy that refuses WebSocket upgrades, a publish
//! whose answer was lost, a silent server, and heartbeats that keep a connection alive.

use super::*;

// ----- 5. WebSocket refused: long-polling through the proxy -----

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn auto_falls_back_to_long_polling_when_upgrades_are_refused() {
    with_deadline(async {
        let node = TestNode::start().await;
        let proxy = start_proxy(node.addr).await;
        let (_, alice) = node.user("alice").await;
        let room = node.http.room(&alice, "lobby", "public").await;
        let conv = conv_of(&room);
        let (client, events) =
            Client::connect(config(at(proxy.addr), &alice, TransportChoice::Auto))
                .await
                .unwrap();
        let mut w = Watch::new(events);
        let (_, t) = w.connected().await;
        assert_eq!(t, Transport::LongPoll);
        assert!(proxy.state.refused_upgrades.load(Ordering::SeqCst) >= 1);
        client.subscribe(&conv).await.unwrap();
        let r = client.publish(&conv, json!("via poll")).await.unwrap();
        assert_eq!(r.seq, 1);
        node.http.publish(&alice, &room, json!("via http")).await;
        let got = w.messages_until(&conv, 2).await;
        assert_exactly(&got, 1, 2);
        assert_eq!(got[0].body, json!("via poll"));

        // WebSocket-only cannot get through this proxy.
        let mut only_ws = config(at(proxy.addr), &alice, TransportChoice::WebSocket);
        only_ws.request_timeout = Duration::from_millis(500);
        match Client::connect(only_ws).await {
            Err(ClientError::Unreachable(e)) => assert!(e.contains("upgrade"), "{e}"),
            other => panic!("{other:?}"),
        }
        client.close().await;
        node.stop().await;
    })
    .await
}

// ----- 7. a publish whose answer was lost is resent with the same client_msg_id -----

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unanswered_publish_is_resent_with_the_same_id_and_stored_once() {
    with_deadline(async {
        let node = TestNode::start().await;
        let (http, tcp) = behind_proxies(&node).await;
        let (_, alice) = node.user("alice").await;
        let room = node.http.room(&alice, "lobby", "public").await;
        let conv = conv_of(&room);
        let (client, events) = Client::connect(config(at(http.addr), &alice, TransportChoice::Tcp))
            .await
            .unwrap();
        let mut w = Watch::new(events);
        w.connected().await;
        client.subscribe(&conv).await.unwrap();

        // The publish reaches the node, which stores it; its answer is lost.
        tcp.mute_all();
        let (c2, conv2) = (client.clone(), conv.clone());
        let pending = tokio::spawn(async move { c2.publish(&conv2, json!("once")).await });
        let deadline = Instant::now() + LONG;
        loop {
            let (_, h) = node
                .http
                .get(&format!("/v1/rooms/{room}/messages"), &alice)
                .await;
            if h["messages"].as_array().is_some_and(|m| !m.is_empty()) {
                break;
            }
            assert!(
                Instant::now() < deadline,
                "the publish never reached the node"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        assert!(!pending.is_finished());
        tcp.cut_all();

        let receipt = tokio::time::timeout(LONG, pending)
            .await
            .unwrap()
            .unwrap()
            .expect("answered after the reconnect");
        assert_eq!(receipt.seq, 1);
        assert!(w.disconnected().await.contains("closed"));
        let (_, h) = node
            .http
            .get(&format!("/v1/rooms/{room}/messages"), &alice)
            .await;
        let stored = h["messages"].as_array().unwrap();
        assert_eq!(stored.len(), 1, "stored once: {h}");
        assert_eq!(
            stored[0]["client_msg_id"].as_str(),
            Some(receipt.client_msg_id.as_str())
        );
        // Delivered once, by the resume.
        assert_exactly(&w.messages_until(&conv, 1).await, 1, 1);
        w.settle(Duration::from_millis(300)).await;
        assert_exactly(&w.messages(&conv), 1, 1);
        assert_eq!(tcp.accepted.load(Ordering::SeqCst), 2);
        client.close().await;
        node.stop().await;
    })
    .await
}

// ----- 8. a silent server is given up after 2.5 heartbeats -----

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_silent_server_is_given_up_and_the_client_reconnects() {
    with_deadline(async {
        let node = TestNode::start_with(|c| c.limits.heartbeat = Duration::from_millis(400)).await;
        let (http, tcp) = behind_proxies(&node).await;
        let (_, alice) = node.user("alice").await;
        let room = node.http.room(&alice, "lobby", "public").await;
        let conv = conv_of(&room);
        let (client, events) = Client::connect(config(at(http.addr), &alice, TransportChoice::Tcp))
            .await
            .unwrap();
        let mut w = Watch::new(events);
        w.connected().await;
        client.subscribe(&conv).await.unwrap();
        // Server pings (every 400 ms) are answered: the connection lasts.
        tokio::time::sleep(Duration::from_millis(1500)).await;
        node.http.publish(&alice, &room, json!(1)).await;
        w.messages_until(&conv, 1).await;
        assert!(
            !w.seen
                .iter()
                .any(|e| matches!(e, Event::Disconnected { .. }))
        );

        tcp.mute_all();
        let silent_at = Instant::now();
        node.http.publish(&alice, &room, json!(2)).await;
        let reason = w.disconnected().await;
        assert!(reason.contains("heartbeat"), "{reason}");
        let waited = silent_at.elapsed();
        assert!(
            waited >= Duration::from_millis(550) && waited < Duration::from_secs(5),
            "{waited:?}"
        );
        w.connected().await;
        node.http.publish(&alice, &room, json!(3)).await;
        assert_exactly(&w.messages_until(&conv, 3).await, 1, 3);
        client.close().await;
        tcp.cut_all();
        node.stop().await;
    })
    .await
}

pub(super) async fn heartbeats_are_answered_and_the_connection_lasts(kind: Kind) {
    let node = TestNode::start_with(|c| c.limits.heartbeat = Duration::from_millis(300)).await;
    let (_, alice) = node.user("alice").await;
    let room = node.http.room(&alice, "lobby", "public").await;
    let conv = conv_of(&room);
    let (client, events) = Client::connect(config(at(node.addr), &alice, choice(kind)))
        .await
        .unwrap();
    let mut w = Watch::new(events);
    w.connected().await;
    client.subscribe(&conv).await.unwrap();
    // Many server heartbeats (protocol pings on WebSocket, `ping` frames otherwise) later...
    w.settle(Duration::from_millis(2500)).await;
    node.http.publish(&alice, &room, json!(1)).await;
    assert_exactly(&w.messages_until(&conv, 1).await, 1, 1);
    // ... the first connection is still the only one.
    let connects = w
        .seen
        .iter()
        .filter(|e| matches!(e, Event::Connected { .. }))
        .count();
    assert_eq!(connects, 1, "{:#?}", w.seen);
    let text = metrics(&node).await;
    assert_eq!(metric(&text, "switchboard_connections_opened_total"), 1.0);
    client.close().await;
    node.stop().await;
}
