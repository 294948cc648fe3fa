//! Socket.IO clients that open their WebSocket directly (`/socket.io/?EIO=4&transport=websocket`,
//! no `sid`), which the node runs as one core session on the socket: the open packet, the
//! CONNECT and its refusals, the heartbeat, events and their refusals, and bad input from a
//! raw client, the way an attacker would send it. (socket.io-client itself is in
//! tests/socketio.)

use crate::common::{TestNode, WAIT};
use futures_util::{SinkExt, StreamExt};
use serde_json::{Value, json};
use std::time::Duration;
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::Message as WsMessage;
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};

type Ws = WebSocketStream<MaybeTlsStream<TcpStream>>;

fn url(node: &TestNode) -> String {
    format!("ws://{}/socket.io/?EIO=4&transport=websocket", node.addr)
}

/// The next text message, answering pings (`2`) on the way; `None` once the server closed.
async fn next_text(ws: &mut Ws) -> Option<String> {
    loop {
        let msg = tokio::time::timeout(WAIT, ws.next())
            .await
            .expect("the server answers in time");
        match msg {
            Some(Ok(WsMessage::Text(t))) if t.as_str() == "2" => {
                ws.send(WsMessage::text("3")).await.ok()?;
            }
            Some(Ok(WsMessage::Text(t))) => return Some(t.to_string()),
            Some(Ok(WsMessage::Close(_))) | None | Some(Err(_)) => return None,
            Some(Ok(_)) => {}
        }
    }
}

/// Whether the server ends the connection (within `WAIT`), whatever it sends first.
async fn ends(ws: &mut Ws) -> bool {
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        match tokio::time::timeout_at(deadline, ws.next()).await {
            Err(_) => return false,
            Ok(Some(Ok(WsMessage::Close(_))) | None | Some(Err(_))) => return true,
            Ok(Some(Ok(_))) => {}
        }
    }
}

/// A WebSocket with its open packet read: the packet's JSON.
async fn open(node: &TestNode) -> (Ws, Value) {
    let (mut ws, _) = tokio_tungstenite::connect_async(url(node)).await.unwrap();
    let open = next_text(&mut ws).await.expect("the open packet");
    let json = open.strip_prefix('0').expect("an open packet first");
    (ws, serde_json::from_str(json).unwrap())
}

/// A socket connected to `/` as the holder of `token`: the CONNECT reply's JSON.
async fn connect(node: &TestNode, token: &str) -> (Ws, Value) {
    let (mut ws, _) = open(node).await;
    ws.send(WsMessage::text(format!("40{}", json!({ "token": token }))))
        .await
        .unwrap();
    let reply = next_text(&mut ws).await.expect("the CONNECT reply");
    let json = reply.strip_prefix("40").expect("connected");
    (ws, serde_json::from_str(json).unwrap())
}

/// The acknowledgement `id`'s arguments (events in between are skipped).
async fn ack(ws: &mut Ws, id: u64) -> Value {
    let prefix = format!("43{id}");
    loop {
        let t = next_text(ws).await.expect("an acknowledgement");
        if let Some(args) = t.strip_prefix(&prefix) {
            return serde_json::from_str(args).unwrap();
        }
    }
}

#[tokio::test]
async fn the_open_packet_the_connect_reply_and_the_heartbeat() {
    let node = TestNode::start_with(|c| {
        c.socketio_ping_interval = Duration::from_millis(300);
        c.socketio_ping_timeout = Duration::from_millis(500);
    })
    .await;
    let (_, token) = node.user("ada").await;
    let (mut ws, open) = open(&node).await;
    assert_eq!(open["upgrades"], json!([]), "{open}");
    assert_eq!(open["pingInterval"], 300);
    assert_eq!(open["pingTimeout"], 500);
    assert_eq!(open["maxPayload"], node_max_payload(&node));
    assert!(open["sid"].as_str().is_some_and(|s| !s.is_empty()));
    ws.send(WsMessage::text(format!("40{}", json!({ "token": token }))))
        .await
        .unwrap();
    let reply = next_text(&mut ws).await.unwrap();
    let reply: Value = serde_json::from_str(reply.strip_prefix("40").unwrap()).unwrap();
    assert_eq!(reply["sid"].as_str().map(str::len), Some(20), "{reply}");
    assert_eq!(reply["pid"].as_str().map(str::len), Some(32), "{reply}");
    // Pings come every interval; answered, the connection lives on.
    for _ in 0..4 {
        let t = tokio::time::timeout(WAIT, ws.next()).await.unwrap();
        let Some(Ok(WsMessage::Text(t))) = t else {
            panic!("a ping, got {t:?}")
        };
        assert_eq!(t.as_str(), "2");
        ws.send(WsMessage::text("3")).await.unwrap();
    }
    // Unanswered, it ends within two intervals and a bit.
    let started = tokio::time::Instant::now();
    assert!(ends(&mut ws).await, "a silent client is dropped");
    assert!(started.elapsed() < Duration::from_secs(3));
}

/// `maxPayload` as the node announces it: its largest frame.
fn node_max_payload(_node: &TestNode) -> u64 {
    switchboard_core::config::Limits::default().max_frame_bytes as u64
}

#[tokio::test]
async fn refused_connects_then_an_accepted_one_on_the_same_websocket() {
    let node = TestNode::start().await;
    let (bea, token) = node.user("bea").await;
    let presence = format!(r#"421["presence","user:{bea}"]"#);
    let (mut ws, _) = open(&node).await;
    // An event before any CONNECT is for no socket: dropped.
    ws.send(WsMessage::text(presence.replace("421", "427")))
        .await
        .unwrap();
    ws.send(WsMessage::text(r#"40{"token":"not-a-token"}"#))
        .await
        .unwrap();
    let refused = next_text(&mut ws).await.unwrap();
    let data: Value = serde_json::from_str(refused.strip_prefix("44").unwrap()).unwrap();
    assert_eq!(data["data"]["code"], "unauthorized", "{refused}");
    ws.send(WsMessage::text("40")).await.unwrap();
    let refused = next_text(&mut ws).await.unwrap();
    assert!(refused.starts_with("44{"), "no token: {refused}");
    ws.send(WsMessage::text(format!(
        "40/admin,{}",
        json!({ "token": token })
    )))
    .await
    .unwrap();
    assert_eq!(
        next_text(&mut ws).await.unwrap(),
        r#"44/admin,{"message":"Invalid namespace"}"#
    );
    ws.send(WsMessage::text(format!("40{}", json!({ "token": token }))))
        .await
        .unwrap();
    let accepted = next_text(&mut ws).await.unwrap();
    assert!(accepted.starts_with("40{"), "{accepted}");
    // Guessing tokens ends the connection at the eighth refusal.
    let (mut guesser, _) = open(&node).await;
    for i in 0..8 {
        let guess = format!(r#"40{{"token":"guess-{i}"}}"#);
        let _ = guesser.send(WsMessage::text(guess)).await;
    }
    for _ in 0..8 {
        let refused = next_text(&mut guesser).await.expect("refused");
        assert!(refused.starts_with("44{"), "{refused}");
    }
    assert!(ends(&mut guesser).await, "closed after the eighth");
    // A repeat CONNECT is ignored; the socket works.
    ws.send(WsMessage::text(format!("40{}", json!({ "token": token }))))
        .await
        .unwrap();
    ws.send(WsMessage::text(presence)).await.unwrap();
    let args = ack(&mut ws, 1).await;
    assert!(args[0]["error"].is_null(), "{args}");
}

#[tokio::test]
async fn events_their_refusals_and_a_message_with_its_offset() {
    let node = TestNode::start().await;
    let (cy, token) = node.user("cy").await;
    let (mut ws, _) = connect(&node, &token).await;
    // Unknown events and bad arguments are refused in their acknowledgement.
    ws.send(WsMessage::text(r#"421["shout","x"]"#))
        .await
        .unwrap();
    let args = ack(&mut ws, 1).await;
    assert_eq!(args[0]["error"]["code"], "bad_request", "{args}");
    ws.send(WsMessage::text(r#"422["subscribe",5]"#))
        .await
        .unwrap();
    let args = ack(&mut ws, 2).await;
    assert_eq!(args[0]["error"]["code"], "bad_request", "{args}");
    // A publish with a binary attachment: read whole, refused, and the socket goes on.
    ws.send(WsMessage::text(format!(
        r#"451-3["publish",{{"conv":"user:{cy}","body":{{"_placeholder":true,"num":0}}}}]"#
    )))
    .await
    .unwrap();
    ws.send(WsMessage::binary(vec![1u8, 2, 3])).await.unwrap();
    let args = ack(&mut ws, 3).await;
    assert_eq!(args[0]["error"]["code"], "bad_request", "{args}");
    // A publish to the own stream: its ack, then its message with an offset.
    ws.send(WsMessage::text(format!(
        r#"424["publish",{{"conv":"user:{cy}","body":{{"hello":1}}}}]"#
    )))
    .await
    .unwrap();
    let args = ack(&mut ws, 4).await;
    let seq = args[0]["seq"].as_u64().unwrap_or_else(|| panic!("{args}"));
    let event = loop {
        let t = next_text(&mut ws).await.unwrap();
        if let Some(rest) = t.strip_prefix("42") {
            break serde_json::from_str::<Value>(rest).unwrap();
        }
    };
    assert_eq!(event[0], "message", "{event}");
    assert_eq!(event[1]["seq"], seq, "{event}");
    assert_eq!(event[1]["body"], json!({"hello": 1}), "{event}");
    assert!(event[2].as_str().is_some_and(|o| !o.is_empty()), "{event}");
    // A WebSocket ping is answered with a pong carrying its data.
    ws.send(WsMessage::Ping(b"hi".to_vec().into()))
        .await
        .unwrap();
    loop {
        match tokio::time::timeout(WAIT, ws.next()).await.unwrap() {
            Some(Ok(WsMessage::Pong(p))) => break assert_eq!(&p[..], b"hi"),
            Some(Ok(WsMessage::Text(_))) => {}
            other => panic!("a pong, got {other:?}"),
        }
    }
    // Leaving the namespace ends the connection.
    ws.send(WsMessage::text("41")).await.unwrap();
    assert!(ends(&mut ws).await);
}

#[tokio::test]
async fn malformed_input_closes_only_its_own_connection() {
    let node = TestNode::start_with(|c| c.limits.max_frame_bytes = 4096).await;
    let (dee, token) = node.user("dee").await;
    let nested = format!("42[\"publish\",{}{}]", "[".repeat(100), "]".repeat(100));
    let cases: Vec<(&str, Vec<WsMessage>)> = vec![
        ("an unknown Engine.IO type", vec![WsMessage::text("9")]),
        ("an unknown Socket.IO type", vec![WsMessage::text("49")]),
        ("JSON cut short", vec![WsMessage::text(r#"42["publish",{"#)]),
        (
            "an event that is not an array",
            vec![WsMessage::text(r#"42{"a":1}"#)],
        ),
        ("JSON nested 100 deep", vec![WsMessage::text(nested)]),
        (
            "an ack id past 2^53",
            vec![WsMessage::text(
                r#"4299999999999999999["presence","user:dee"]"#,
            )],
        ),
        (
            "too many attachments",
            vec![WsMessage::text(r#"4511-["publish",{}]"#)],
        ),
        (
            "an attachment with no packet",
            vec![WsMessage::binary(vec![0u8; 8])],
        ),
        (
            "text while attachments are due",
            vec![
                WsMessage::text(r#"452-["publish",{"_placeholder":true,"num":0}]"#),
                WsMessage::text(r#"42["presence","user:dee"]"#),
            ],
        ),
        (
            "attachments over maxPayload",
            vec![
                WsMessage::text(r#"452-["publish",{"_placeholder":true,"num":1}]"#),
                WsMessage::binary(vec![0u8; 3000]),
                WsMessage::binary(vec![0u8; 3000]),
            ],
        ),
        (
            "a message over maxPayload",
            vec![WsMessage::text(format!(
                "42[\"x\",\"{}\"]",
                "y".repeat(5000)
            ))],
        ),
        ("an open packet from the client", vec![WsMessage::text("0")]),
        (
            "an upgrade packet without an upgrade",
            vec![WsMessage::text("5")],
        ),
        (
            "a CONNECT_ERROR from the client",
            vec![WsMessage::text("44{}")],
        ),
    ];
    for (what, messages) in cases {
        let (mut ws, _) = connect(&node, &token).await;
        for m in messages {
            // The server may close before the last one: a failed send is its answer.
            let _ = ws.send(m).await;
        }
        assert!(ends(&mut ws).await, "{what}: the connection is closed");
    }
    // The node is fine: a new socket works.
    let (mut ws, _) = connect(&node, &token).await;
    ws.send(WsMessage::text(format!(r#"421["presence","user:{dee}"]"#)))
        .await
        .unwrap();
    let args = ack(&mut ws, 1).await;
    assert!(args[0]["error"].is_null(), "{args}");
}

#[tokio::test]
async fn a_full_node_refuses_the_upgrade() {
    let node = TestNode::start_with(|c| c.limits.max_connections = 1).await;
    let (_, token) = node.user("eve").await;
    let (_first, _) = connect(&node, &token).await;
    let refused = tokio_tungstenite::connect_async(url(&node)).await;
    match refused {
        Err(tokio_tungstenite::tungstenite::Error::Http(resp)) => {
            assert_eq!(resp.status(), 503, "{resp:?}");
        }
        other => panic!("expected 503, got {other:?}"),
    }
}

#[tokio::test]
async fn refused_events_are_answered_in_order_and_the_socket_goes_on() {
    let node = TestNode::start().await;
    let (hal, token) = node.user("hal").await;
    let (mut ws, _) = connect(&node, &token).await;
    // An app's own events (not served here), many at once, between two requests.
    let presence = |id: u32| format!(r#"42{id}["presence","user:{hal}"]"#);
    ws.send(WsMessage::text(presence(1))).await.unwrap();
    for i in 2..=41 {
        ws.send(WsMessage::text(format!(r#"42{i}["typing",{{"n":{i}}}]"#)))
            .await
            .unwrap();
    }
    ws.send(WsMessage::text(presence(42))).await.unwrap();
    for id in 1..=42 {
        let t = next_text(&mut ws).await.expect("every answer");
        let prefix = format!("43{id}[");
        assert!(t.starts_with(&prefix), "answer {id} in order: {t}");
        let args: Value = serde_json::from_str(&t[prefix.len() - 1..]).unwrap();
        let refused = (2..=41).contains(&id);
        assert_eq!(args[0]["error"]["code"] == "bad_request", refused, "{t}");
    }
}

#[tokio::test]
async fn a_client_that_asks_and_never_reads_is_closed_not_buffered() {
    let node = TestNode::start_with(|c| c.limits.max_frame_bytes = 4096).await;
    let (_, token) = node.user("gus").await;
    let (mut ws, _) = connect(&node, &token).await;
    // Each is answered beside the session (Invalid namespace); the answers pile up only until
    // the node's bound for them, well below what is sent here, then the connection ends.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    let mut sent = 0;
    while tokio::time::Instant::now() < deadline && sent < 400_000 {
        if ws.send(WsMessage::text("40/nowhere,")).await.is_err() {
            break;
        }
        sent += 1;
    }
    assert!(sent < 400_000, "the connection was closed ({sent} sent)");
}
