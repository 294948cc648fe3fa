//! How the SDK finds a node again: a restart on the same port, a `reconnect` frame, history
//! lost while away (`recovered: false`), and a dead chosen node skipped for the alternates.

use super::*;

// ----- 2. restart on the same port -----

pub(super) async fn restart_resumes_without_gap_and_a_publish_made_while_down_lands_once(
    kind: Kind,
) {
    let node = TestNode::start().await;
    let port = node.addr.port();
    let (_, alice) = node.user("alice").await;
    let room = node.http.room(&alice, "lobby", "public").await;
    let conv = format!("room:{room}");
    let (client, events) = Client::connect(config(at(node.addr), &alice, choice(kind)))
        .await
        .unwrap();
    let mut w = Watch::new(events);
    w.connected().await;
    client.subscribe(&conv).await.unwrap();
    for i in 1..=2 {
        node.http.publish(&alice, &room, json!(i)).await;
    }
    client.publish(&conv, json!(3)).await.unwrap();
    assert_exactly(&w.messages_until(&conv, 3).await, 1, 3);

    // A graceful stop sends `reconnect` (then `disconnect`): the SDK goes back to the dispatcher.
    let dir = node.stop().await;
    assert_eq!(w.disconnected().await, "shutdown");
    assert_eq!(client.node_id(), None);

    // Published while no node runs: waits for the reconnect, then is sent once.
    let (c2, conv2) = (client.clone(), conv.clone());
    let pending = tokio::spawn(async move { c2.publish(&conv2, json!("while down")).await });
    tokio::time::sleep(Duration::from_millis(300)).await;

    let node = TestNode::start_in(dir, |c| {
        c.listen = format!("127.0.0.1:{port}");
        c.node_id = "n_again".into();
    })
    .await;
    let (node_id, t) = w.connected().await;
    assert_eq!((node_id.as_str(), t), ("n_again", transport(kind)));
    let receipt = tokio::time::timeout(LONG, pending)
        .await
        .expect("the publish completes after the reconnect")
        .unwrap()
        .expect("published");
    for i in 0..2 {
        node.http.publish(&alice, &room, json!({"after": i})).await;
    }
    let got = w.messages_until(&conv, 6).await;
    assert_exactly(&got, 1, 6);
    assert!((4..=6).contains(&receipt.seq), "{receipt:?}");
    // The resume of the room was complete.
    assert!(w.seen.iter().any(|e| matches!(e,
        Event::Resumed { conv: c, recovered: true, from_seq: 4 } if *c == conv)));

    // Stored exactly once.
    let (_, h) = node
        .http
        .get(&format!("/v1/rooms/{room}/messages"), &alice)
        .await;
    let stored: Vec<&Value> = h["messages"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|m| m["body"] == json!("while down"))
        .collect();
    assert_eq!(stored.len(), 1, "{h}");
    assert_eq!(
        stored[0]["client_msg_id"].as_str(),
        Some(receipt.client_msg_id.as_str())
    );

    w.settle(Duration::from_millis(300)).await;
    assert_exactly(&w.messages(&conv), 1, 6);
    client.close().await;
    node.stop().await;
}

// ----- 3. the `reconnect` frame sends the SDK back to the dispatcher -----

/// The node comes back on the same HTTP port but another TCP port and node id: only a client
/// that asks the dispatcher again finds it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reconnect_frame_sends_the_client_back_to_the_dispatcher() {
    with_deadline(async {
        let node = TestNode::start().await;
        let port = node.addr.port();
        let old_tcp = node.tcp_addr();
        let (_, alice) = node.user("alice").await;
        let room = node.http.room(&alice, "lobby", "public").await;
        let conv = conv_of(&room);
        let (client, events) = Client::connect(config(at(node.addr), &alice, TransportChoice::Tcp))
            .await
            .unwrap();
        let mut w = Watch::new(events);
        w.connected().await;
        client.subscribe(&conv).await.unwrap();
        node.http.publish(&alice, &room, json!(1)).await;
        w.messages_until(&conv, 1).await;

        let dir = node.stop().await;
        assert_eq!(w.disconnected().await, "shutdown");
        let node = TestNode::start_in(dir, |c| {
            c.listen = format!("127.0.0.1:{port}");
            c.node_id = "n_moved".into();
        })
        .await;
        assert_ne!(node.tcp_addr(), old_tcp);
        let (node_id, t) = w.connected().await;
        assert_eq!((node_id.as_str(), t), ("n_moved", Transport::Tcp));
        assert_eq!(client.node_id().as_deref(), Some("n_moved"));
        node.http.publish(&alice, &room, json!(2)).await;
        assert_exactly(&w.messages_until(&conv, 2).await, 1, 2);
        client.close().await;
        node.stop().await;
    })
    .await
}

// ----- 4. history lost while away: recovered:false, for real -----

/// The client is cut off (`slow_consumer`, which it resumes from) while the dispatcher is held
/// (503); meanwhile more messages are published than history keeps. On the resume the node
/// answers `recovered: false` and the SDK goes on from `from_seq`. Gap filling on a live
/// subscription cannot be forced on one node (the node fills gaps itself); the crate's unit
/// tests drive it with fake frames.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lost_history_is_reported_and_delivery_goes_on_from_from_seq() {
    with_deadline(async {
        let node = TestNode::start_with(|c| c.history_max_messages = 3).await;
        let proxy = start_proxy(node.addr).await;
        let (alice_id, alice) = node.user("alice").await;
        let (_, bob) = node.user("bob").await;
        let room = node.http.room(&alice, "lobby", "public").await;
        let conv = conv_of(&room);
        let own = format!("user:{alice_id}");
        // TCP endpoints are not rewritten: dispatch goes through the proxy, TCP straight to the node.
        let (client, events) =
            Client::connect(config(at(proxy.addr), &alice, TransportChoice::Tcp))
                .await
                .unwrap();
        let mut w = Watch::new(events);
        w.connected().await;
        client.subscribe(&conv).await.unwrap();
        for i in 1..=2 {
            node.http.publish(&bob, &room, json!(i)).await;
        }
        assert_exactly(&w.messages_until(&conv, 2).await, 1, 2);

        proxy.state.block_dispatch.store(true, Ordering::SeqCst);
        let (s, _) = node
            .http
            .server(
                &format!("/v1/server/users/{alice_id}/disconnect"),
                json!({"reason": "slow_consumer"}),
            )
            .await;
        assert_eq!(s, 204);
        assert_eq!(w.disconnected().await, "slow_consumer");
        for i in 3..=12 {
            node.http.publish(&bob, &room, json!(i)).await;
        }
        let (s, _) = node
            .http
            .post(
                &format!("/v1/users/{alice_id}/messages"),
                &bob,
                json!({"body": "while away"}),
            )
            .await;
        assert_eq!(s, 201);
        proxy.state.block_dispatch.store(false, Ordering::SeqCst);

        w.connected().await;
        let got = w.messages_until(&conv, 5).await;
        assert_eq!(
            seqs(&got),
            vec![1, 2, 10, 11, 12],
            "history keeps only 10..12"
        );
        assert!(
            w.seen.iter().any(|e| matches!(e,
                Event::Resumed { conv: c, recovered: false, from_seq: 10 } if *c == conv)),
            "{:#?}",
            w.seen
        );
        // The own stream was resumed too: the direct message sent while away arrives.
        assert_eq!(w.messages_until(&own, 1).await[0].body, json!("while away"));
        assert!(w.seen.iter().any(|e| matches!(e,
            Event::Resumed { conv: c, recovered: true, .. } if *c == own)));
        assert_eq!(client.position(&conv).unwrap().1, 12);
        node.http.publish(&bob, &room, json!(13)).await;
        assert_eq!(seqs(&w.messages_until(&conv, 6).await)[5], 13);
        client.close().await;
        node.stop().await;
    })
    .await
}

// ----- the dispatcher's alternates -----

/// A stand-in dispatcher whose chosen node is dead and whose alternate is the real node: the
/// client tries the chosen node, then the alternate. Every connection starts with a dispatch.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dead_chosen_node_is_skipped_for_the_alternates() {
    with_deadline(async {
        let node = TestNode::start().await;
        let (_, alice) = node.user("alice").await;
        let dead = {
            let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
            l.local_addr().unwrap()
        };
        let answer = json!({
            "node_id": "n_dead",
            "endpoints": {"ws": format!("ws://{dead}/v1/ws"), "poll": format!("http://{dead}/v1/poll"),
                          "tcp": format!("tcp://{dead}")},
            "alternates": [{"node_id": "n_test", "endpoints": {
                "ws": format!("ws://{}/v1/ws", node.addr), "poll": format!("http://{}/v1/poll", node.addr),
                "tcp": format!("tcp://{}", node.tcp_addr())}}],
            "ttl_ms": 30000, "backoff": {"base_ms": 50, "max_ms": 200},
        });
        let dispatches = Arc::new(AtomicUsize::new(0));
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let dispatcher = listener.local_addr().unwrap();
        let count = dispatches.clone();
        let app = axum::Router::new().route(
            "/v1/dispatch",
            axum::routing::get(move || {
                count.fetch_add(1, Ordering::SeqCst);
                let answer = answer.clone();
                async move { axum::Json(answer) }
            }),
        );
        tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        for kind in [Kind::Ws, Kind::Tcp, Kind::Poll] {
            let before = dispatches.load(Ordering::SeqCst);
            let (client, events) = Client::connect(config(at(dispatcher), &alice, choice(kind)))
                .await
                .unwrap();
            let mut w = Watch::new(events);
            let (node_id, t) = w.connected().await;
            assert_eq!((node_id.as_str(), t), ("n_test", transport(kind)));
            assert_eq!(dispatches.load(Ordering::SeqCst), before + 1);
            // Kicked with a reason that allows a reconnect: a fresh dispatch, the dead node
            // again first, then the alternate.
            let uid = client.user_id().unwrap();
            node.http
                .server(
                    &format!("/v1/server/users/{uid}/disconnect"),
                    json!({"reason": "slow_consumer"}),
                )
                .await;
            assert_eq!(w.disconnected().await, "slow_consumer");
            w.connected().await;
            assert_eq!(dispatches.load(Ordering::SeqCst), before + 2);
            client.close().await;
        }
        node.stop().await;
    })
    .await
}
