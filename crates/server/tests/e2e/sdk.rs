//! End-to-end tests of the Rust client SDK (`switchboard-client`) against real in-process nodes
//! over real sockets: every transport, restarts, `reconnect` frames, lost history, the
//! WebSocket-to-long-polling fallback behind a proxy that refuses upgrades, and logout.

use crate::common;
use common::*;
use serde_json::{Value, json};
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::Duration;
use switchboard_client::{
    Client, ClientConfig, ClientError, Event, Events, Message, Transport, TransportChoice,
};
use tokio::time::Instant;

#[path = "sdk_proxies.rs"]
mod proxies;
use proxies::{behind_proxies, start_proxy};

/// Longest wait for one expected event (restarts include a drain and a dispatcher 503 with
/// `Retry-After` of up to 5 s).
const LONG: Duration = Duration::from_secs(30);
/// Every test ends within this.
const DEADLINE: Duration = Duration::from_secs(90);

async fn with_deadline<F: std::future::Future<Output = ()>>(f: F) {
    tokio::time::timeout(DEADLINE, f)
        .await
        .expect("test deadline passed");
}

fn choice(kind: Kind) -> TransportChoice {
    match kind {
        Kind::Ws => TransportChoice::WebSocket,
        Kind::Tcp => TransportChoice::Tcp,
        Kind::Poll => TransportChoice::LongPoll,
    }
}

fn transport(kind: Kind) -> Transport {
    match kind {
        Kind::Ws => Transport::WebSocket,
        Kind::Tcp => Transport::Tcp,
        Kind::Poll => Transport::LongPoll,
    }
}

fn config(dispatcher: String, token: &str, transport: TransportChoice) -> ClientConfig {
    let mut c = ClientConfig::new(dispatcher, token);
    c.transport = transport;
    c.backoff_base = Duration::from_millis(50);
    c.backoff_max = Duration::from_millis(500);
    c.request_timeout = Duration::from_secs(10);
    c
}

fn at(addr: SocketAddr) -> String {
    format!("http://{addr}")
}

/// The event stream, with everything seen kept for later assertions.
struct Watch {
    events: Events,
    seen: Vec<Event>,
}

impl Watch {
    fn new(events: Events) -> Watch {
        Watch {
            events,
            seen: Vec::new(),
        }
    }

    /// Waits for an event matching `pred`; every event seen meanwhile is kept.
    async fn until<T>(&mut self, what: &str, mut pred: impl FnMut(&Event) -> Option<T>) -> T {
        let deadline = Instant::now() + LONG;
        loop {
            let e = tokio::time::timeout_at(deadline, self.events.next())
                .await
                .unwrap_or_else(|_| panic!("timed out waiting for {what}; seen {:#?}", self.seen))
                .unwrap_or_else(|| panic!("events ended while waiting for {what}"));
            self.seen.push(e.clone());
            if let Some(t) = pred(&e) {
                return t;
            }
        }
    }

    fn messages(&self, conv: &str) -> Vec<Message> {
        self.seen
            .iter()
            .filter_map(|e| match e {
                Event::Message(m) if m.conv == conv => Some(m.clone()),
                _ => None,
            })
            .collect()
    }

    /// Waits until `n` messages of `conv` were seen in all; returns them.
    async fn messages_until(&mut self, conv: &str, n: usize) -> Vec<Message> {
        while self.messages(conv).len() < n {
            let c = conv.to_owned();
            self.until(&format!("message {} of {conv}", n), |e| {
                matches!(e, Event::Message(m) if m.conv == c).then_some(())
            })
            .await;
        }
        self.messages(conv)
    }

    /// Collects whatever arrives within `d` (to show nothing more comes).
    async fn settle(&mut self, d: Duration) {
        let deadline = Instant::now() + d;
        while let Ok(Some(e)) = tokio::time::timeout_at(deadline, self.events.next()).await {
            self.seen.push(e);
        }
    }

    async fn connected(&mut self) -> (String, Transport) {
        self.until("Connected", |e| match e {
            Event::Connected { node_id, transport } => Some((node_id.clone(), *transport)),
            _ => None,
        })
        .await
    }

    async fn disconnected(&mut self) -> String {
        self.until("Disconnected", |e| match e {
            Event::Disconnected { reason } => Some(reason.clone()),
            _ => None,
        })
        .await
    }
}

fn seqs(ms: &[Message]) -> Vec<u64> {
    ms.iter().map(|m| m.seq).collect()
}

/// Asserts `ms` is exactly `from..=to`, each once, in order.
fn assert_exactly(ms: &[Message], from: u64, to: u64) {
    assert_eq!(seqs(ms), (from..=to).collect::<Vec<_>>(), "{ms:#?}");
}

async fn metrics(node: &TestNode) -> String {
    node.http
        .client
        .get(format!("{}/metrics", node.http.base))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap()
}

/// Generates one test per transport for each scenario.
macro_rules! over_every_transport {
    ($($scenario:ident),* $(,)?) => {
        mod ws {
            $( #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
               async fn $scenario() { super::with_deadline(super::$scenario(super::Kind::Ws)).await } )*
        }
        mod tcp {
            $( #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
               async fn $scenario() { super::with_deadline(super::$scenario(super::Kind::Tcp)).await } )*
        }
        mod poll {
            $( #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
               async fn $scenario() { super::with_deadline(super::$scenario(super::Kind::Poll)).await } )*
        }
    };
}

over_every_transport!(
    publish_and_receive_each_message_once_in_order,
    restart_resumes_without_gap_and_a_publish_made_while_down_lands_once,
    logout_ends_the_stream_without_reconnecting,
    a_refused_token_fails_connect,
    heartbeats_are_answered_and_the_connection_lasts,
);

// ----- 1. every transport -----

async fn publish_and_receive_each_message_once_in_order(kind: Kind) {
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

// ----- 2. restart on the same port -----

async fn restart_resumes_without_gap_and_a_publish_made_while_down_lands_once(kind: Kind) {
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

fn conv_of(room: &str) -> String {
    format!("room:{room}")
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

// ----- 6. logout -----

async fn logout_ends_the_stream_without_reconnecting(kind: Kind) {
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

async fn a_refused_token_fails_connect(kind: Kind) {
    let node = TestNode::start().await;
    let bad = format!("sb_{}", "0".repeat(64));
    match Client::connect(config(at(node.addr), &bad, choice(kind))).await {
        Err(ClientError::Server { code, .. }) => assert_eq!(code, "unauthorized"),
        other => panic!("{other:?}"),
    }
    node.stop().await;
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

async fn heartbeats_are_answered_and_the_connection_lasts(kind: Kind) {
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
