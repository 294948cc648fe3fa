//! One scenario suite, run over every transport: the same stories must hold on WebSocket,
//! raw TCP and long-polling. Then what is specific to TCP framing (`tcp_framing`), to
//! long-polling (`long_poll`), and admission shared by every transport (`admission`).

use crate::common;
use common::*;
use serde_json::{Value, json};
use std::time::Duration;

mod admission;
mod long_poll;
mod tcp_framing;

/// Generates one test per transport for each scenario.
macro_rules! over_every_transport {
    ($($scenario:ident),* $(,)?) => {
        mod ws {
            $( #[tokio::test] async fn $scenario() { super::$scenario(super::Kind::Ws).await } )*
        }
        mod tcp {
            $( #[tokio::test] async fn $scenario() { super::$scenario(super::Kind::Tcp).await } )*
        }
        mod poll {
            $( #[tokio::test] async fn $scenario() { super::$scenario(super::Kind::Poll).await } )*
        }
    };
}

over_every_transport!(
    welcome_subscribe_replay_publish_and_live,
    direct_messages_and_presence,
    bad_input_gets_errors_and_the_connection_survives,
    auth_is_required_and_bad_tokens_close,
    publish_rate_limit,
    logout_disconnects,
    shutdown_sends_reconnect_then_disconnect,
    a_silent_peer_is_cut_off_and_presence_follows,
);

async fn welcome_subscribe_replay_publish_and_live(kind: Kind) {
    let node = TestNode::start().await;
    let (uid, token) = node.user("alice").await;
    let room = node.http.room(&token, "lobby", "public").await;
    let conv = format!("room:{room}");
    for i in 1..=3 {
        node.http.publish(&token, &room, json!(i)).await;
    }
    let (mut c, w) = node.connect_with_welcome(kind, &token).await;
    assert_eq!(w["user_id"].as_str(), Some(uid.as_str()));
    let r = c
        .request(json!({"type": "subscribe", "conv": conv, "since": 1}), 2)
        .await;
    assert_eq!(
        (r["head_seq"].clone(), r["recovered"].clone()),
        (json!(3), json!(true))
    );
    let got = c.messages(&conv, 2).await;
    assert_eq!(
        (got[0]["seq"].clone(), got[1]["seq"].clone()),
        (json!(2), json!(3))
    );
    let p = c
        .request(
            json!({"type": "publish", "conv": conv, "body": {"t": "x"}, "client_msg_id": "k"}),
            3,
        )
        .await;
    assert_eq!(p["seq"], 4);
    assert_eq!(c.messages(&conv, 1).await[0]["body"]["t"], "x");
    let h = c
        .request(json!({"type": "history", "conv": conv, "after": 2}), 4)
        .await;
    assert_eq!(h["messages"].as_array().unwrap().len(), 2);
    assert_eq!(
        c.request(json!({"type": "unsubscribe", "conv": conv}), 5)
            .await["type"],
        "unsubscribed"
    );
    assert_eq!(c.request(json!({"type": "ping"}), 6).await["type"], "pong");
    node.stop().await;
}

async fn direct_messages_and_presence(kind: Kind) {
    let node = TestNode::start().await;
    let (alice_id, alice) = node.user("alice").await;
    let (bob_id, bob) = node.user("bob").await;
    let mut a = node.connect_over(kind, &alice).await;
    // Bob on all three transports at once: each connection gets the DM.
    let mut b_ws = node.connect_over(Kind::Ws, &bob).await;
    let mut b_tcp = node.connect_over(Kind::Tcp, &bob).await;
    let mut b_poll = node.connect_over(Kind::Poll, &bob).await;
    let p = a
        .request(
            json!({"type": "presence", "conv": format!("user:{alice_id}")}),
            1,
        )
        .await;
    assert_eq!(p["users"], json!([{"user_id": alice_id, "connections": 1}]));
    let (_, v) = node
        .http
        .get(&format!("/v1/presence/users?ids={bob_id}"), &alice)
        .await;
    assert_eq!(v["users"][&bob_id]["connections"], 3);
    let r = a
        .request(
            json!({"type": "publish", "conv": format!("user:{bob_id}"), "body": "hey"}),
            2,
        )
        .await;
    assert_eq!(r["conv"], format!("user:{bob_id}"));
    for b in [&mut b_ws, &mut b_tcp, &mut b_poll] {
        let m = &b.messages(&format!("user:{bob_id}"), 1).await[0];
        assert_eq!(
            (m["from"].as_str(), m["body"].as_str()),
            (Some(alice_id.as_str()), Some("hey"))
        );
    }
    assert_eq!(
        a.messages(&format!("user:{alice_id}"), 1).await[0]["to"],
        bob_id.as_str()
    );
    node.stop().await;
}

async fn bad_input_gets_errors_and_the_connection_survives(kind: Kind) {
    let node = TestNode::start().await;
    let (_, token) = node.user("alice").await;
    let mut c = node.connect_over(kind, &token).await;
    if let AnyClient::Poll(p) = &c {
        // Long-polling carries frames in a JSON array: malformed JSON is an HTTP 400.
        let (s, v) = p.post_raw("[{nope".into()).await;
        assert_eq!((s, v["error"]["code"].as_str()), (400, Some("bad_request")));
        let (s, _) = p.post_raw(r#"{"type":"ping"}"#.into()).await;
        assert_eq!(s, 400, "the body must be an array");
        // A frame that is JSON but not an object reaches the session and is answered.
        c.send(json!("just a string")).await;
    } else {
        c.send_raw("{nope").await;
    }
    let e = c.expect("error").await;
    assert_eq!(
        (e["code"].as_str(), e["id"].clone()),
        (Some("bad_request"), Value::Null)
    );
    c.send_raw(r#"{"type":"warp","id":9}"#).await;
    assert_eq!(c.expect("error").await["id"], 9);
    let r = c
        .request(json!({"type": "subscribe", "conv": "room:r_missing"}), 10)
        .await;
    assert_eq!(r["code"], "not_found");
    let big = json!({"type": "publish", "id": 11, "conv": "room:r", "body": "x".repeat(70_000)});
    if let AnyClient::Poll(p) = &c {
        // A poll body is capped like any HTTP body: 413 too_large.
        let (s, v) = p.post_raw(json!([big]).to_string()).await;
        assert_eq!((s, v["error"]["code"].as_str()), (413, Some("too_large")));
    } else {
        c.send(big).await;
        assert_eq!(c.expect("error").await["code"], "too_large");
    }
    assert_eq!(c.request(json!({"type": "ping"}), 12).await["type"], "pong");
    node.stop().await;
}

async fn auth_is_required_and_bad_tokens_close(kind: Kind) {
    let node = TestNode::start_with(|c| c.limits.auth_timeout = Duration::from_millis(400)).await;
    if kind == Kind::Poll {
        // A long-poll session is authenticated when it is opened.
        let (s, v) = node.http.call("POST", "/v1/poll", None, None).await;
        assert_eq!(
            (s, v["error"]["code"].as_str()),
            (401, Some("unauthorized"))
        );
        let err = PollClient::open(&node.http, "sb_wrong", None)
            .await
            .err()
            .unwrap();
        assert_eq!(err.0, 401);
        node.stop().await;
        return;
    }
    let mut c = node.open(kind).await;
    let r = c
        .request(json!({"type": "history", "conv": "room:x"}), 1)
        .await;
    assert_eq!(r["code"], "unauthorized");
    let seen = c.until_closed().await;
    assert!(
        seen.iter().any(|f| f["code"] == "unauthorized"),
        "auth timeout: {seen:?}"
    );
    let mut c = node.open(kind).await;
    c.send(json!({"type": "auth", "id": 2, "token": "sb_wrong"}))
        .await;
    let seen = c.until_closed().await;
    assert_eq!(seen.len(), 1);
    assert_eq!(seen[0]["code"], "unauthorized");
    node.stop().await;
}

async fn publish_rate_limit(kind: Kind) {
    let node = TestNode::start_with(|c| {
        c.limits.publish_rate = 2;
        c.limits.publish_burst = 5;
    })
    .await;
    let (_, token) = node.user("alice").await;
    let room = node.http.room(&token, "r", "public").await;
    let mut c = node.connect_over(kind, &token).await;
    let mut codes = Vec::new();
    // Each publish waits for its answer (an fsync); on a loaded machine the eight can take long
    // enough for the bucket to refill (2 a second), so the refills are allowed for, measured.
    let started = std::time::Instant::now();
    for i in 0..8 {
        let r = c
            .request(
                json!({"type": "publish", "conv": format!("room:{room}"), "body": i}),
                i,
            )
            .await;
        codes.push(r["type"].as_str().unwrap().to_owned() + r["code"].as_str().unwrap_or(""));
    }
    let refills = (started.elapsed().as_secs_f64() * 2.0).floor() as usize;
    let published = codes.iter().filter(|c| *c == "published").count();
    let limited = codes.iter().filter(|c| *c == "errorrate_limited").count();
    assert!(
        (5..=5 + refills).contains(&published),
        "the burst of 5 (+{refills} refilled) passes: {codes:?}"
    );
    assert_eq!(
        published + limited,
        8,
        "the rest is rate_limited: {codes:?}"
    );
    if refills < 3 {
        assert!(limited > 0, "{codes:?}");
    }
    node.stop().await;
}

async fn logout_disconnects(kind: Kind) {
    let node = TestNode::start().await;
    let (_, token) = node.user("alice").await;
    let mut c = node.connect_over(kind, &token).await;
    let (s, _) = node
        .http
        .call("DELETE", "/v1/sessions/current", Some(&token), None)
        .await;
    assert_eq!(s, 204);
    let seen = c.until_closed().await;
    assert_eq!(seen.last().unwrap()["reason"], "logged_out", "{seen:?}");
    node.stop().await;
}

async fn shutdown_sends_reconnect_then_disconnect(kind: Kind) {
    let node = TestNode::start().await;
    let (_, token) = node.user("alice").await;
    let mut c = node.connect_over(kind, &token).await;
    let stop = tokio::spawn(node.stop());
    let seen = c.until_closed().await;
    let kinds: Vec<&str> = seen.iter().filter_map(|f| f["type"].as_str()).collect();
    assert_eq!(kinds, vec!["reconnect", "disconnect"]);
    assert_eq!(seen[1]["reason"], "shutdown");
    stop.await.unwrap();
}

async fn a_silent_peer_is_cut_off_and_presence_follows(kind: Kind) {
    if kind == Kind::Ws {
        // The WebSocket client library answers protocol pings by itself; the WebSocket case is
        // covered with a hand-made socket in ws_protocol.rs.
        return;
    }
    if kind == Kind::Poll {
        // A poll client that stops polling: its session expires after the idle time.
        let node = TestNode::start_with(|c| c.poll_idle = Duration::from_millis(1000)).await;
        let (uid, token) = node.user("alice").await;
        let mut p = PollClient::open(&node.http, &token, None).await.unwrap();
        p.expect("welcome").await;
        let (_, v) = node
            .http
            .get(&format!("/v1/presence/users?ids={uid}"), &token)
            .await;
        assert_eq!(v["users"][&uid]["connections"], 1);
        tokio::time::sleep(Duration::from_millis(1600)).await;
        let (_, v) = node
            .http
            .get(&format!("/v1/presence/users?ids={uid}"), &token)
            .await;
        assert_eq!(
            v["users"][&uid]["online"], false,
            "an abandoned poll session must expire"
        );
        node.stop().await;
        return;
    }
    let node = TestNode::start_with(|c| c.limits.heartbeat = Duration::from_millis(250)).await;
    let (uid, token) = node.user("alice").await;
    let mut tcp = TcpClient::connect(node.tcp_addr()).await;
    tcp.answer_pings = false;
    tcp.send(json!({"type": "auth", "token": token})).await;
    tcp.expect("welcome").await;
    // It sees the server's pings and does not answer; the server closes within ~3 heartbeats.
    let started = std::time::Instant::now();
    let mut pings = 0;
    while let Some(v) = tcp.next().await {
        if v["type"] == "ping" {
            pings += 1;
        }
    }
    assert!(pings >= 2, "server pings seen: {pings}");
    assert!(started.elapsed() < Duration::from_secs(3));
    let (_, v) = node
        .http
        .get(&format!("/v1/presence/users?ids={uid}"), &token)
        .await;
    assert_eq!(v["users"][&uid]["online"], false);
    node.stop().await;
}
