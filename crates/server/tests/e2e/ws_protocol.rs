//! The WebSocket protocol, frame by frame: auth in its three forms, every request frame,
//! resume, direct messages across devices, rate limits, and bad input of every kind.

use crate::common;
use common::*;
use futures_util::{SinkExt, StreamExt};
use serde_json::{Value, json};
use std::time::Duration;
use tokio_tungstenite::tungstenite::Message as WsMessage;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;

#[tokio::test]
async fn auth_by_frame_header_or_query_and_bad_tokens() {
    let node = TestNode::start().await;
    let (uid, token) = node.user("alice").await;

    // By frame: welcome echoes the id and describes the connection.
    let mut c = WsClient::connect(&node.ws_url()).await;
    c.send(json!({"type": "auth", "id": 7, "token": token}))
        .await;
    let w = c.expect("welcome").await;
    assert_eq!(w["id"], 7);
    assert_eq!(w["user_id"], uid.as_str());
    assert_eq!(w["node_id"], "n_test");
    assert!(w["conn_id"].as_str().unwrap().starts_with("c_"));
    assert_eq!(w["heartbeat_ms"], 25_000);

    // By header: welcome comes unasked, with a null id.
    let mut req = node.ws_url().into_client_request().unwrap();
    req.headers_mut()
        .insert("authorization", format!("Bearer {token}").parse().unwrap());
    let (ws, _) = tokio_tungstenite::connect_async(req).await.unwrap();
    let mut c = WsClient { ws };
    let w = c.expect("welcome").await;
    assert_eq!(w["id"], Value::Null);
    assert_eq!(w["user_id"], uid.as_str());

    // By query.
    let mut c = WsClient::connect(&format!("{}?token={token}", node.ws_url())).await;
    assert_eq!(c.expect("welcome").await["user_id"], uid.as_str());

    // A bad token on the upgrade is refused with 401.
    let err = tokio_tungstenite::connect_async(format!("{}?token=nope", node.ws_url()))
        .await
        .unwrap_err();
    match err {
        tokio_tungstenite::tungstenite::Error::Http(resp) => assert_eq!(resp.status(), 401),
        other => panic!("expected HTTP 401, got {other:?}"),
    }

    // A bad token in the frame: unauthorized, then the connection is closed.
    let mut c = WsClient::connect(&node.ws_url()).await;
    c.send(json!({"type": "auth", "id": 1, "token": "sb_bogus"}))
        .await;
    let seen = c.until_closed().await;
    assert_eq!(seen.len(), 1, "{seen:?}");
    assert_eq!(seen[0]["type"], "error");
    assert_eq!(seen[0]["code"], "unauthorized");
    assert_eq!(seen[0]["id"], 1);
    node.stop().await;
}

#[tokio::test]
async fn frames_before_auth_are_refused_and_silence_is_cut_off() {
    let node = TestNode::start_with(|c| c.limits.auth_timeout = Duration::from_millis(500)).await;
    let mut c = WsClient::connect(&node.ws_url()).await;
    c.send(json!({"type": "subscribe", "id": 3, "conv": "room:x"}))
        .await;
    let e = c.expect("error").await;
    assert_eq!(
        (e["id"].clone(), e["code"].clone()),
        (json!(3), json!("unauthorized"))
    );
    // ping works before auth, and the connection is still open...
    let p = c.request(json!({"type": "ping"}), 4).await;
    assert_eq!(p["type"], "pong");
    // ...until the auth timeout closes it.
    let started = std::time::Instant::now();
    let seen = c.until_closed().await;
    assert!(started.elapsed() < Duration::from_secs(3));
    assert!(seen.iter().any(|f| f["code"] == "unauthorized"), "{seen:?}");
    node.stop().await;
}

#[tokio::test]
async fn malformed_unknown_and_oversized_frames_get_errors_and_the_connection_survives() {
    let node = TestNode::start().await;
    let (_, token) = node.user("alice").await;
    let mut c = node.connect(&token).await;

    c.send_raw("{not json").await;
    let e = c.expect("error").await;
    assert_eq!(e["code"], "bad_request");
    assert_eq!(e["id"], Value::Null);

    c.send_raw(r#"{"type":"teleport","id":"x1"}"#).await;
    let e = c.expect("error").await;
    assert_eq!(
        (e["id"].clone(), e["code"].clone()),
        (json!("x1"), json!("bad_request"))
    );

    c.send_raw(r#"{"type":"publish","id":5,"conv":"room:r"}"#)
        .await;
    let e = c.expect("error").await;
    assert_eq!(e["id"], 5);
    assert!(e["message"].as_str().unwrap().contains("body"), "{e}");

    c.send_raw(r#"{"type":"subscribe","id":6,"conv":"lobby"}"#)
        .await;
    assert_eq!(c.expect("error").await["code"], "bad_request");

    // Over 64 KiB: too_large, and the connection goes on.
    let big = json!({"type": "publish", "id": 8, "conv": "room:r", "body": "x".repeat(70_000)});
    c.send(big).await;
    assert_eq!(c.expect("error").await["code"], "too_large");
    assert_eq!(c.request(json!({"type": "ping"}), 9).await["type"], "pong");

    // Far over the limit: the socket is closed with 1009 (message too big), and the node is fine.
    let huge = "y".repeat(1_000_000);
    let _ = c.ws.send(WsMessage::text(huge)).await;
    assert_eq!(close_code(&mut c).await, 1009);
    let (s, _) = node.http.call("GET", "/healthz", None, None).await;
    assert_eq!(s, 200);
    node.stop().await;
}

/// Reads until the server's close frame and returns its status code; panics if the connection
/// ends without one.
async fn close_code(c: &mut WsClient) -> u16 {
    loop {
        match tokio::time::timeout(WAIT, c.ws.next()).await {
            Err(_) => panic!("no close frame within {WAIT:?}"),
            Ok(Some(Ok(WsMessage::Close(Some(frame))))) => return frame.code.into(),
            Ok(Some(Ok(WsMessage::Close(None)))) => panic!("a close frame without a code"),
            Ok(Some(Ok(_))) => continue,
            Ok(Some(Err(e))) => panic!("the connection failed before its close frame: {e}"),
            Ok(None) => panic!("the connection ended without a close frame"),
        }
    }
}

#[tokio::test]
async fn a_connection_that_keeps_sending_garbage_is_closed() {
    let node = TestNode::start().await;
    let (_, token) = node.user("alice").await;
    let mut c = node.connect(&token).await;
    for _ in 0..30 {
        if c.ws.send(WsMessage::text("garbage")).await.is_err() {
            break;
        }
    }
    let seen = c.until_closed().await;
    let last = seen.last().unwrap();
    assert_eq!(last["type"], "disconnect");
    assert_eq!(last["reason"], "protocol_error");
    node.stop().await;
}

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
async fn a_refused_resume_entry_names_its_conversation() {
    let node = TestNode::start().await;
    let (_, alice) = node.user("alice").await;
    let (bob_id, bob) = node.user("bob").await;
    let secret = node.http.room(&bob, "secret", "private").await;
    let (theirs, private) = (format!("user:{bob_id}"), format!("room:{secret}"));
    let mut c = WsClient::connect(&node.ws_url()).await;
    let resume = json!({theirs.clone(): 0, private.clone(): 0});
    c.send(json!({"type": "auth", "id": 1, "token": alice, "resume": resume}))
        .await;
    let w = c.expect("welcome").await;
    assert!(w["resumed"].get(&theirs).is_none() && w["resumed"].get(&private).is_none());
    let mut refused = Vec::new();
    for _ in 0..2 {
        let e = c.expect("error").await;
        assert_eq!(e["id"], 1);
        let conv = e["conv"]
            .as_str()
            .expect("the refused conv, structured")
            .to_owned();
        assert!(
            e["message"]
                .as_str()
                .unwrap()
                .starts_with(&format!("{conv}: "))
        );
        refused.push((conv, e["code"].as_str().unwrap().to_owned()));
    }
    refused.sort();
    let mut want = vec![
        (theirs, "forbidden".to_owned()),
        (private, "not_member".to_owned()),
    ];
    want.sort();
    assert_eq!(refused, want);
}

#[tokio::test]
async fn resume_on_auth_replays_then_goes_live_and_says_when_history_is_gone() {
    let node = TestNode::start_with(|c| c.history_max_messages = 5).await;
    let (_, alice) = node.user("alice").await;
    let room = node.http.room(&alice, "lobby", "public").await;
    let conv = format!("room:{room}");
    for i in 1..=4 {
        node.http.publish(&alice, &room, json!(i)).await;
    }
    let mut c = WsClient::connect(&node.ws_url()).await;
    c.send(json!({"type": "auth", "id": 1, "token": alice, "resume": {conv.clone(): 2}}))
        .await;
    let w = c.expect("welcome").await;
    assert_eq!(w["resumed"][&conv]["recovered"], true);
    assert_eq!(w["resumed"][&conv]["from_seq"], 3);
    let got = c.messages(&conv, 2).await;
    assert_eq!(
        (got[0]["seq"].clone(), got[1]["seq"].clone()),
        (json!(3), json!(4))
    );
    // resume subscribed the connection: live messages follow.
    node.http.publish(&alice, &room, json!(5)).await;
    assert_eq!(c.messages(&conv, 1).await[0]["seq"], 5);

    // History keeps 5 messages: a client at seq 2 of 20 cannot be recovered.
    for i in 6..=20 {
        node.http.publish(&alice, &room, json!(i)).await;
    }
    let mut c = WsClient::connect(&node.ws_url()).await;
    c.send(json!({"type": "auth", "token": alice, "resume": {conv.clone(): 2}}))
        .await;
    let w = c.expect("welcome").await;
    assert_eq!(w["resumed"][&conv]["recovered"], false);
    assert_eq!(w["resumed"][&conv]["from_seq"], 16);
    let got = c.messages(&conv, 5).await;
    assert_eq!(
        got.iter()
            .map(|m| m["seq"].as_u64().unwrap())
            .collect::<Vec<_>>(),
        vec![16, 17, 18, 19, 20]
    );

    // Another epoch: not recovered either.
    let mut c = node.connect(&alice).await;
    let r = c
        .request(
            json!({"type": "subscribe", "conv": conv, "since": 18, "epoch": "some-other-epoch"}),
            2,
        )
        .await;
    assert_eq!(r["recovered"], false);
    node.stop().await;
}

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

#[tokio::test]
async fn dead_peers_are_dropped_after_two_missed_heartbeats() {
    let node = TestNode::start_with(|c| c.limits.heartbeat = Duration::from_millis(300)).await;
    let (uid, token) = node.user("alice").await;
    // A raw TCP client that completes the upgrade by hand and then never answers pings.
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut s = tokio::net::TcpStream::connect(node.addr).await.unwrap();
    let req = format!(
        "GET /v1/ws?token={token} HTTP/1.1\r\nHost: {}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n",
        node.addr
    );
    s.write_all(req.as_bytes()).await.unwrap();
    let online = |n: u64| {
        let http = node.http.clone();
        let (uid, token) = (uid.clone(), token.clone());
        async move {
            let deadline = std::time::Instant::now() + Duration::from_secs(5);
            loop {
                let (_, v) = http
                    .get(&format!("/v1/presence/users?ids={uid}"), &token)
                    .await;
                if v["users"][&uid]["connections"].as_u64().unwrap_or(0) == n {
                    return;
                }
                assert!(
                    std::time::Instant::now() < deadline,
                    "presence never reached {n}: {v}"
                );
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
    };
    online(1).await;
    // Keep reading (so writes do not block) but never answer.
    let reader = tokio::spawn(async move {
        let mut buf = [0u8; 4096];
        while let Ok(n) = s.read(&mut buf).await {
            if n == 0 {
                break;
            }
        }
    });
    online(0).await;
    reader.abort();
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

#[tokio::test]
async fn shutdown_reaches_connections_that_never_authenticated() {
    let node = TestNode::start().await;
    let mut anon = WsClient::connect(&node.ws_url()).await;
    // Make sure the connection is open on the server before shutting down.
    assert_eq!(
        anon.request(json!({"type": "ping"}), 1).await["type"],
        "pong"
    );
    let started = std::time::Instant::now();
    let stop = tokio::spawn(node.stop());
    let frames = anon.until_closed().await;
    let kinds: Vec<&str> = frames.iter().filter_map(|f| f["type"].as_str()).collect();
    assert_eq!(kinds, vec!["reconnect", "disconnect"], "{frames:?}");
    stop.await.unwrap();
    assert!(
        started.elapsed() < Duration::from_secs(3),
        "shutdown waited {:?}",
        started.elapsed()
    );
}
