//! Engine.IO transports from outside, with real clients: the polling flow, WebSocket sessions,
//! the upgrade, the heartbeat, and every error answer and close of the transport layer.

mod common;

use std::time::Duration;

use axum::response::IntoResponse;
use common::*;
use switchboard_socketio::DisconnectReason;
use tokio_tungstenite::tungstenite::Message as WsMessage;

#[tokio::test]
async fn polling_handshake_and_message_flow() {
    let mut server = start(config()).await;
    let (poll, open) = Poll::open(&server).await;
    assert_eq!(open["upgrades"], serde_json::json!(["websocket"]));
    assert_eq!(open["maxPayload"], 10_000);
    assert_eq!(poll.post("40").await, (200, "ok".to_owned()));
    let (status, body) = poll.get().await;
    assert_eq!(status, 200);
    assert!(body.starts_with(r#"40{"sid":""#), "{body}");
    server.next_socket().await;
    // Two events in one POST, answered in one poll, in order.
    assert_eq!(
        poll.post("42[\"echo\",1]\x1e42[\"echo\",\"two\"]").await.0,
        200
    );
    assert_eq!(
        poll.get().await,
        (
            200,
            "42[\"echo-back\",1]\x1e42[\"echo-back\",\"two\"]".to_owned()
        )
    );
}

#[tokio::test]
async fn websocket_direct_session() {
    let server = start(config()).await;
    let mut ws = ws_connect(&server.ws_url("transport=websocket")).await;
    let open = ws_text(&mut ws).await;
    assert!(
        open.starts_with(r#"0{"sid":"#) && open.contains(r#""upgrades":[]"#),
        "{open}"
    );
    ws_send(&mut ws, "40").await;
    assert!(ws_text(&mut ws).await.starts_with("40{"));
    ws_send(&mut ws, r#"42["echo",{"a":[1,2]}]"#).await;
    assert_eq!(ws_text(&mut ws).await, r#"42["echo-back",{"a":[1,2]}]"#);
}

#[tokio::test]
async fn upgrade_from_polling_to_websocket() {
    let mut server = start(config()).await;
    let (poll, socket) = Poll::connected(&mut server).await;
    // A poll waits while the upgrade's probe is answered; it ends with a noop.
    let pending = poll.pending_get().await;
    let mut ws = ws_connect(&server.ws_url(&format!("transport=websocket&sid={}", poll.sid))).await;
    ws_send(&mut ws, "2probe").await;
    assert_eq!(ws_text(&mut ws).await, "3probe");
    assert_eq!(pending.await.unwrap(), "6");
    ws_send(&mut ws, "5").await;
    // Packets emitted around the switch arrive on the WebSocket.
    socket.emit("after", ("upgrade",)).unwrap();
    assert_eq!(ws_text(&mut ws).await, r#"42["after","upgrade"]"#);
    ws_send(&mut ws, r#"42["echo",3]"#).await;
    assert_eq!(ws_text(&mut ws).await, r#"42["echo-back",3]"#);
    // Polling is over for this session; a second WebSocket for it is closed at once.
    assert_eq!(poll.get().await.0, 400);
    let mut second =
        ws_connect(&server.ws_url(&format!("transport=websocket&sid={}", poll.sid))).await;
    assert!(ws_closed(&mut second).await);
    ws_send(&mut ws, r#"42["echo",4]"#).await;
    assert_eq!(ws_text(&mut ws).await, r#"42["echo-back",4]"#);
}

#[tokio::test]
async fn upgrade_naming_an_unknown_sid_is_refused() {
    let server = start(config()).await;
    let err = tokio_tungstenite::connect_async(server.ws_url("transport=websocket&sid=stale"))
        .await
        .unwrap_err();
    assert!(err.to_string().contains("400"), "{err}");
    let response = reqwest::get(server.url("transport=polling&sid=stale"))
        .await
        .unwrap();
    assert_eq!(response.status(), 400);
    assert_eq!(
        response.text().await.unwrap(),
        r#"{"code":1,"message":"Session ID unknown"}"#
    );
}

#[tokio::test]
async fn unknown_sid_hook_answers_instead() {
    let builder =
        switchboard_socketio::SocketIo::builder(config()).on_unknown_sid(|req, sid| async move {
            (
                axum::http::StatusCode::IM_A_TEAPOT,
                format!("{} {sid}", req.method()),
            )
                .into_response()
        });
    let server = start_with(builder).await;
    let response = reqwest::Client::new()
        .post(server.url("transport=polling&sid=elsewhere~n2"))
        .body("40")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 418);
    assert_eq!(response.text().await.unwrap(), "POST elsewhere~n2");
}

#[tokio::test]
async fn ping_timeout_closes_the_session() {
    let config = switchboard_socketio::Config {
        ping_interval: Duration::from_millis(100),
        ping_timeout: Duration::from_millis(100),
        ..config()
    };
    let mut server = start(config).await;
    // A client that answers pings stays.
    let (poll, _) = Poll::open(&server).await;
    poll.post("40").await;
    poll.get().await;
    for _ in 0..3 {
        assert_eq!(poll.get().await, (200, "2".to_owned()));
        assert_eq!(poll.post("3").await.0, 200);
    }
    // Once it stops answering, it is closed.
    assert_eq!(poll.get().await, (200, "2".to_owned()));
    tokio::time::sleep(Duration::from_millis(250)).await;
    assert_eq!(poll.get().await.0, 400);
    // So is a WebSocket client that does not answer, and its socket ends with `PingTimeout`.
    let (mut ws, _) = ws_session(&server).await;
    let first = loop {
        let socket = server.next_socket().await;
        if socket.conn().sid() != poll.sid {
            break socket;
        }
    };
    assert!(ws_closed(&mut ws).await);
    assert_eq!(first.closed().await, DisconnectReason::PingTimeout);
}

#[tokio::test]
async fn two_concurrent_polls_close_the_session() {
    let server = start(config()).await;
    let (poll, _) = Poll::open(&server).await;
    let first = tokio::spawn({
        let (http, url) = (poll.http.clone(), poll.url());
        async move {
            let r = http.get(url).send().await.unwrap();
            (r.status().as_u16(), r.text().await.unwrap())
        }
    });
    tokio::time::sleep(Duration::from_millis(50)).await;
    assert_eq!(poll.get().await.0, 400);
    assert_eq!(first.await.unwrap(), (200, "1".to_owned()));
    assert_eq!(poll.get().await.0, 400);
}

#[tokio::test]
async fn oversized_post_is_413_and_closes() {
    let server = start(config()).await;
    let (poll, _) = Poll::open(&server).await;
    assert_eq!(poll.post(format!("4{}", "x".repeat(10_001))).await.0, 413);
    assert_eq!(poll.get().await.0, 400);
    // Without a length up front (chunked), the body is cut at maxPayload all the same.
    let (poll, _) = Poll::open(&server).await;
    assert_eq!(chunked_post(&server, &poll.sid, 20, 1000).await, 413);
    assert_eq!(poll.get().await.0, 400);
}

#[tokio::test]
async fn oversized_websocket_message_closes() {
    let server = start(config()).await;
    let (mut ws, _) = ws_session(&server).await;
    ws_send(&mut ws, &format!("42[\"echo\",\"{}\"]", "x".repeat(10_001))).await;
    assert!(ws_closed(&mut ws).await);
}

#[tokio::test]
async fn bad_engine_packets_close_the_session() {
    let server = start(config()).await;
    for body in ["abc", "", "bnot-base64!", "0{}", "4x\x1e9"] {
        let (poll, _) = Poll::open(&server).await;
        assert_eq!(poll.post(body).await.0, 400, "{body:?}");
        assert_eq!(poll.get().await.0, 400, "{body:?}");
    }
    let mut ws = ws_connect(&server.ws_url("transport=websocket")).await;
    ws_text(&mut ws).await;
    ws_send(&mut ws, "x").await;
    assert!(ws_closed(&mut ws).await);
}

#[tokio::test]
async fn handshake_errors_are_the_javascript_servers() {
    let server = start(config()).await;
    let base = format!("http://{}/socket.io/", server.addr);
    let cases = [
        (
            "?EIO=4&transport=carrier-pigeon",
            r#"{"code":0,"message":"Transport unknown"}"#,
        ),
        (
            "?EIO=3&transport=polling",
            r#"{"code":5,"message":"Unsupported protocol version"}"#,
        ),
        (
            "?transport=polling",
            r#"{"code":5,"message":"Unsupported protocol version"}"#,
        ),
    ];
    for (query, body) in cases {
        let response = reqwest::get(format!("{base}{query}")).await.unwrap();
        assert_eq!(
            (response.status().as_u16(), response.text().await.unwrap()),
            (400, body.to_owned()),
            "{query}"
        );
    }
    let response = reqwest::Client::new()
        .put(format!("{base}?EIO=4&transport=polling"))
        .send()
        .await
        .unwrap();
    assert_eq!(
        response.text().await.unwrap(),
        r#"{"code":2,"message":"Bad handshake method"}"#
    );
    // A plain GET that says websocket but is no upgrade.
    let response = reqwest::get(format!("{base}?EIO=4&transport=websocket"))
        .await
        .unwrap();
    assert_eq!(
        response.text().await.unwrap(),
        r#"{"code":3,"message":"Bad request"}"#
    );
}

#[tokio::test]
async fn client_close_packet_ends_the_pending_poll_with_a_noop() {
    let mut server = start(config()).await;
    let (poll, socket) = Poll::connected(&mut server).await;
    let pending = poll.pending_get().await;
    assert_eq!(poll.post("1").await.0, 200);
    assert_eq!(pending.await.unwrap(), "6");
    assert_eq!(socket.closed().await, DisconnectReason::ClientClose);
    assert_eq!(poll.get().await.0, 400);
    // The close POST may overtake the client's poll (another connection): that poll still
    // gets its noop, and the session is gone after it.
    let (poll, _) = Poll::connected(&mut server).await;
    assert_eq!(poll.post("1").await.0, 200);
    assert_eq!(poll.get().await, (200, "6".to_owned()));
    assert_eq!(poll.get().await.0, 400);
    let mut ws = ws_connect(&server.ws_url("transport=websocket")).await;
    ws_text(&mut ws).await;
    ws.send_close().await;
}

/// POSTs `chunks` chunks of `size` bytes with chunked encoding (no length up front) over a raw
/// socket; returns the status.
async fn chunked_post(server: &Server, sid: &str, chunks: usize, size: usize) -> u16 {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut tcp = tokio::net::TcpStream::connect(server.addr).await.unwrap();
    let head = format!(
        "POST /socket.io/?EIO=4&transport=polling&sid={sid} HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n"
    );
    tcp.write_all(head.as_bytes()).await.unwrap();
    let chunk = format!("{size:x}\r\n4{}\r\n", "x".repeat(size - 1));
    for _ in 0..chunks {
        if tcp.write_all(chunk.as_bytes()).await.is_err() {
            break;
        }
    }
    let _ = tcp.write_all(b"0\r\n\r\n").await;
    let mut response = vec![0u8; 12];
    tcp.read_exact(&mut response).await.unwrap();
    String::from_utf8_lossy(&response[9..12]).parse().unwrap()
}

trait SendClose {
    async fn send_close(&mut self);
}

impl SendClose for Ws {
    async fn send_close(&mut self) {
        use futures_util::SinkExt;
        let _ = self.send(WsMessage::Close(None)).await;
    }
}
