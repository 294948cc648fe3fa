//! Socket.IO from outside, with real clients: namespaces, acknowledgements both ways, binary
//! attachments both ways, bad packets and ack ids, the connect timeout, the bounded queue,
//! server-side disconnects and closing every session.

mod common;

use std::time::Duration;

use bytes::Bytes;
use common::*;
use serde_json::json;
use switchboard_socketio::{Config, DisconnectReason, EncodedPacket, SocketIo};
use tokio_tungstenite::tungstenite::Message as WsMessage;

#[tokio::test]
async fn namespaces_and_an_invalid_one() {
    let mut server = start(config()).await;
    let (mut ws, reply) = ws_session(&server).await;
    assert!(reply.starts_with(r#"40{"sid":""#));
    ws_send(&mut ws, r#"40/other,{"token":"t"}"#).await;
    assert!(ws_text(&mut ws).await.starts_with(r#"40/other,{"sid":""#));
    ws_send(&mut ws, "40/nowhere,").await;
    assert_eq!(
        ws_text(&mut ws).await,
        r#"44/nowhere,{"message":"Invalid namespace"}"#
    );
    // A refused CONNECT carries the namespace's payload; the session stays.
    ws_send(&mut ws, r#"40/other,{"refuse":true}"#).await;
    // (already connected to /other: the repeat is ignored) so leave first
    ws_send(&mut ws, "41/other,").await;
    ws_send(&mut ws, r#"40/other,{"refuse":true}"#).await;
    assert_eq!(
        ws_text(&mut ws).await,
        r#"44/other,{"data":{"code":"unauthorized"},"message":"refused"}"#
    );
    // Events are routed by namespace; those for a namespace not joined are dropped.
    ws_send(&mut ws, r#"42/other,["echo",1]"#).await;
    ws_send(&mut ws, r#"42["echo",2]"#).await;
    assert_eq!(ws_text(&mut ws).await, r#"42["echo-back",2]"#);
    let mut reasons = vec![];
    let mut auths = vec![];
    for _ in 0..6 {
        match server.next_seen().await {
            Seen::Connected(_, auth) => auths.push(auth),
            Seen::Disconnected(reason) => reasons.push(reason),
            Seen::Event(..) => {}
        }
        if reasons.len() == 1 && auths.len() == 2 {
            break;
        }
    }
    assert_eq!(auths, vec![None, Some(json!({"token": "t"}))]);
    assert_eq!(reasons, vec![DisconnectReason::ClientNamespaceDisconnect]);
}

#[tokio::test]
async fn the_handshake_request_is_kept_unless_turned_off() {
    for keep in [true, false] {
        let config = Config {
            keep_handshake: keep,
            ..config()
        };
        let server = start(config).await;
        for query in ["transport=websocket", "transport=websocket&x=1"] {
            let mut ws = ws_connect(&server.ws_url(query)).await;
            ws_text(&mut ws).await;
            ws_send(&mut ws, r#"40{"request":true}"#).await;
            let reply = ws_text(&mut ws).await;
            let reply: serde_json::Value = serde_json::from_str(&reply[2..]).unwrap();
            if keep {
                assert!(reply["uri"].as_str().unwrap().ends_with(query), "{reply}");
                assert!(reply["host"].as_str().is_some(), "{reply}");
            } else {
                assert_eq!(reply, json!({"uri": "/", "host": null}));
            }
        }
    }
}

#[tokio::test]
async fn acknowledgements_both_ways() {
    let mut server = start(config()).await;
    let (mut ws, _) = ws_session(&server).await;
    let socket = server.next_socket().await;
    ws_send(&mut ws, r#"4217["ack",{"x":[1,"2"]},null]"#).await;
    assert_eq!(ws_text(&mut ws).await, r#"4317[{"x":[1,"2"]},null]"#);
    // The server asks; the client answers; a late or unknown ack id is ignored.
    let asking = tokio::spawn({
        let socket = socket.clone();
        async move {
            socket
                .emit_with_ack("question", ("why",), Duration::from_secs(5))
                .await
        }
    });
    let question = ws_text(&mut ws).await;
    assert_eq!(question, r#"420["question","why"]"#);
    ws_send(&mut ws, r#"4399["stray"]"#).await;
    ws_send(&mut ws, r#"430["because",42]"#).await;
    let answer = asking.await.unwrap().unwrap();
    assert_eq!(
        answer.args.iter().map(|a| a.get()).collect::<Vec<_>>(),
        vec![r#""because""#, "42"]
    );
    // An ack that never comes times out; one whose socket ends fails.
    let err = socket
        .emit_with_ack("question", ("again",), Duration::from_millis(50))
        .await
        .unwrap_err();
    assert!(
        matches!(err, switchboard_socketio::AckError::Timeout),
        "{err}"
    );
    ws_text(&mut ws).await;
    let waiting = tokio::spawn({
        let socket = socket.clone();
        async move {
            socket
                .emit_with_ack("question", ("last",), Duration::from_secs(5))
                .await
        }
    });
    ws_text(&mut ws).await;
    ws_send(&mut ws, "41").await;
    assert!(matches!(
        waiting.await.unwrap(),
        Err(switchboard_socketio::AckError::Closed)
    ));
}

#[tokio::test]
async fn binary_attachments_both_ways() {
    let mut server = start(config()).await;
    let (mut ws, _) = ws_session(&server).await;
    let socket = server.next_socket().await;
    ws_send(
        &mut ws,
        r#"452-["echo",{"_placeholder":true,"num":0},{"k":{"_placeholder":true,"num":1}}]"#,
    )
    .await;
    ws.send_binary(&[1, 2, 3]).await;
    ws.send_binary(&[]).await;
    assert_eq!(
        ws_text(&mut ws).await,
        r#"452-["echo-back",{"_placeholder":true,"num":0},{"k":{"_placeholder":true,"num":1}}]"#
    );
    assert_eq!(
        ws_next(&mut ws).await,
        Some(WsMessage::Binary(Bytes::from_static(&[1, 2, 3])))
    );
    assert_eq!(
        ws_next(&mut ws).await,
        Some(WsMessage::Binary(Bytes::new()))
    );
    // A binary ack, and a server-side binary emit, over polling this time (base64 with `b`).
    let (poll, polled) = Poll::connected(&mut server).await;
    assert_eq!(
        poll.post("451-5[\"ack\",{\"_placeholder\":true,\"num\":0}]\x1ebAQID")
            .await
            .0,
        200
    );
    assert_eq!(
        poll.get().await.1,
        "461-5[{\"_placeholder\":true,\"num\":0}]\x1ebAQID"
    );
    polled
        .emit_binary(
            "file",
            (json!({"_placeholder": true, "num": 0}),),
            vec![Bytes::from_static(b"hi")],
        )
        .unwrap();
    assert_eq!(
        poll.get().await.1,
        "451-[\"file\",{\"_placeholder\":true,\"num\":0}]\x1ebaGk="
    );
    drop(socket);
}

#[tokio::test]
async fn bad_packets_close_the_session() {
    let mut server = start(config()).await;
    let bad = [
        "4abc",                                          // unknown packet type
        "42{}",                                          // EVENT that is not an array
        r#"42abc["ack",1]"#,                             // ack id that is not a number
        r#"4299999999999999999999["ack",1]"#,            // ack id too large
        r#"42[1,"no name"]"#,                            // event name not a string
        r#"43["no id"]"#,                                // ACK without an id
        "41{}",                                          // DISCONNECT with data
        r#"44{"message":"x"}"#,                          // CONNECT_ERROR from a client
        r#"45x-["echo"]"#,                               // bad attachment count
        r#"4599-["echo"]"#,                              // too many attachments
        r#"451-["echo",{"_placeholder":true,"num":3}]"#, // placeholder past the attachments
        "42[\"echo\",[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[1]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]", // too deep
    ];
    for packet in bad {
        let (mut ws, _) = ws_session(&server).await;
        let socket = server.next_socket().await;
        ws_send(&mut ws, packet).await;
        if packet.starts_with("451-") {
            ws.send_binary(&[0]).await;
        }
        assert!(ws_closed(&mut ws).await, "{packet}");
        assert_eq!(
            socket.closed().await,
            DisconnectReason::ParseError,
            "{packet}"
        );
    }
    // A binary message that no packet announced.
    let (mut ws, _) = ws_session(&server).await;
    ws.send_binary(&[1]).await;
    assert!(ws_closed(&mut ws).await);
}

#[tokio::test]
async fn connect_timeout_closes_a_session_that_never_connects() {
    let config = Config {
        connect_timeout: Duration::from_millis(150),
        ..config()
    };
    let server = start(config).await;
    let mut ws = ws_connect(&server.ws_url("transport=websocket")).await;
    ws_text(&mut ws).await;
    assert!(ws_closed(&mut ws).await);
    // One that connects in time stays past the timeout.
    let (mut ws, _) = ws_session(&server).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    ws_send(&mut ws, r#"42["echo",1]"#).await;
    assert_eq!(ws_text(&mut ws).await, r#"42["echo-back",1]"#);
}

#[tokio::test]
async fn a_full_queue_closes_the_session() {
    let config = Config {
        max_queued_packets: 8,
        ..config()
    };
    let mut server = start(config).await;
    let (poll, _) = Poll::open(&server).await;
    poll.post("40").await;
    let socket = server.next_socket().await;
    // Nobody polls: the CONNECT reply and 7 events fill the queue; the next one overflows.
    assert_eq!(socket.queue_room(), 7);
    for i in 0..7 {
        socket.emit("n", (i,)).unwrap();
    }
    let err = socket.emit("n", (7,)).unwrap_err();
    assert!(err.to_string().contains("full"), "{err}");
    assert_eq!(socket.closed().await, DisconnectReason::QueueFull);
    assert_eq!(socket.queue_room(), 0);
    // The queue is bounded in bytes too.
    let config = Config {
        max_queued_bytes: 1000,
        ..common::config()
    };
    let mut server = start(config).await;
    let (_poll, socket) = Poll::connected(&mut server).await;
    let big = "x".repeat(400);
    socket.emit("big", (&big,)).unwrap();
    socket.emit("big", (&big,)).unwrap();
    assert!(socket.emit("big", (&big,)).is_err());
    assert_eq!(socket.closed().await, DisconnectReason::QueueFull);
    assert_eq!(poll.get().await.0, 400);
}

#[tokio::test]
async fn one_encoding_many_sockets() {
    let mut server = start(config()).await;
    let (mut a, _) = ws_session(&server).await;
    let (mut b, _) = ws_session(&server).await;
    let sockets = [server.next_socket().await, server.next_socket().await];
    let packet =
        EncodedPacket::event("/", "message", (json!({"conv": "room:1", "seq": 3}), "7")).unwrap();
    for socket in &sockets {
        socket.send(&packet).unwrap();
    }
    for ws in [&mut a, &mut b] {
        assert_eq!(
            ws_text(ws).await,
            r#"42["message",{"conv":"room:1","seq":3},"7"]"#
        );
    }
    assert!(EncodedPacket::event("/", "x", json!({"not": "an array"})).is_err());
    // Arguments already JSON are written as they are.
    sockets[0]
        .emit_json("message", r#"[{"conv":"room:1","seq":4},"8"]"#)
        .unwrap();
    assert_eq!(
        ws_text(&mut a).await,
        r#"42["message",{"conv":"room:1","seq":4},"8"]"#
    );
    assert!(EncodedPacket::event_json("/", "x", "{}").is_err());
    ws_send(&mut b, r#"429["ack"]"#).await;
    assert_eq!(ws_text(&mut b).await, "439[]");
    ws_send(&mut b, r#"4210["ack-json"]"#).await;
    assert_eq!(ws_text(&mut b).await, r#"4310["raw",1]"#);
}

#[tokio::test]
async fn server_disconnect_and_custom_reply() {
    let mut server = start(config()).await;
    let mut ws = ws_connect(&server.ws_url("transport=websocket")).await;
    ws_text(&mut ws).await;
    ws_send(&mut ws, r#"40{"pid":"p-1"}"#).await;
    let reply = ws_text(&mut ws).await;
    let socket = server.next_socket().await;
    assert_eq!(
        reply,
        format!(r#"40{{"pid":"p-1","sid":"{}"}}"#, socket.id())
    );
    socket.disconnect();
    assert_eq!(ws_text(&mut ws).await, "41");
    assert_eq!(
        socket.closed().await,
        DisconnectReason::ServerNamespaceDisconnect
    );
    assert!(socket.emit("late", ("x",)).is_err());
    // The session stays: the client may connect again.
    ws_send(&mut ws, "40").await;
    assert!(ws_text(&mut ws).await.starts_with("40{"));
}

#[tokio::test]
async fn close_all_flushes_then_closes_every_session() {
    let mut server = start(config()).await;
    let (mut ws, _) = ws_session(&server).await;
    let ws_socket = server.next_socket().await;
    let (poll, poll_socket) = Poll::connected(&mut server).await;
    ws_socket
        .emit("switchboard:reconnect", (json!({"reason": "drain"}),))
        .unwrap();
    poll_socket
        .emit("switchboard:reconnect", (json!({"reason": "drain"}),))
        .unwrap();
    server.io.close_all();
    assert_eq!(
        ws_text(&mut ws).await,
        r#"42["switchboard:reconnect",{"reason":"drain"}]"#
    );
    assert!(ws_closed(&mut ws).await);
    assert_eq!(
        poll.get().await.1,
        "42[\"switchboard:reconnect\",{\"reason\":\"drain\"}]\x1e1"
    );
    assert_eq!(ws_socket.closed().await, DisconnectReason::ServerShutdown);
    assert_eq!(poll_socket.closed().await, DisconnectReason::ServerShutdown);
    assert_eq!(poll.get().await.0, 400);
    assert_eq!(server.io.engine().session_count(), 0);
}

#[tokio::test]
async fn engine_sids_come_from_the_generator_and_socket_ids_are_the_librarys() {
    let counter = std::sync::atomic::AtomicU32::new(0);
    let builder = SocketIo::builder(config()).sid_generator(move || {
        format!(
            "s{}~node7",
            counter.fetch_add(1, std::sync::atomic::Ordering::Relaxed)
        )
    });
    let mut server = start_with(builder).await;
    let (poll, _) = Poll::open(&server).await;
    assert!(poll.sid.ends_with("~node7"), "{}", poll.sid);
    poll.post("40").await;
    // A socket's id is the library's own (20 random URL-safe characters, as socket.io's): it
    // is never routed on, so it does not name the node.
    let id = server.next_socket().await.id().to_owned();
    assert_eq!(id.len(), 20, "{id}");
    assert!(
        id.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_'),
        "{id}"
    );
    assert_ne!(id, poll.sid);
}

trait SendBinary {
    async fn send_binary(&mut self, data: &[u8]);
}

impl SendBinary for Ws {
    async fn send_binary(&mut self, data: &[u8]) {
        use futures_util::SinkExt;
        self.send(WsMessage::Binary(Bytes::copy_from_slice(data)))
            .await
            .unwrap();
    }
}
