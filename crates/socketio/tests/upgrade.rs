//! The upgrade of a polling session to a WebSocket when it goes wrong, from outside: a bad
//! probe, a probe that never finishes, a session closed mid-probe, a retry after a failed
//! upgrade, the heartbeat on either side of the upgrade, and a probe and its `5` in one segment
//! while a poll waits.

mod common;

use common::*;
use futures_util::StreamExt;
use std::time::Duration;
use switchboard_socketio::DisconnectReason;
use tokio_tungstenite::tungstenite::Message as WsMessage;

/// A WebSocket opened to upgrade `poll`'s session, the probe sent and answered (`5` not sent).
async fn probed(server: &Server, poll: &Poll) -> Ws {
    let mut ws = upgrade_socket(server, poll).await;
    ws_send(&mut ws, "2probe").await;
    assert_eq!(ws_text(&mut ws).await, "3probe");
    ws
}

/// A WebSocket opened to upgrade `poll`'s session, nothing sent on it yet.
async fn upgrade_socket(server: &Server, poll: &Poll) -> Ws {
    ws_connect(&server.ws_url(&format!("transport=websocket&sid={}", poll.sid))).await
}

#[tokio::test]
async fn a_bad_probe_closes_the_websocket_and_a_second_upgrade_works() {
    let mut server = start(config()).await;
    let (poll, socket) = Poll::connected(&mut server).await;
    let mut ws = upgrade_socket(&server, &poll).await;
    ws_send(&mut ws, "garbage").await;
    assert!(ws_closed(&mut ws).await);
    // Still on polling.
    socket.emit("x", (1,)).unwrap();
    assert_eq!(poll.get().await, (200, r#"42["x",1]"#.to_owned()));
    let mut ws = probed(&server, &poll).await;
    ws_send(&mut ws, "5").await;
    socket.emit("after", (2,)).unwrap();
    assert_eq!(ws_text(&mut ws).await, r#"42["after",2]"#);
}

#[tokio::test]
async fn a_probe_that_never_finishes_leaves_the_session_on_polling_with_its_heartbeat() {
    let cfg = switchboard_socketio::Config {
        upgrade_timeout: Duration::from_millis(200),
        ping_interval: Duration::from_millis(150),
        ping_timeout: Duration::from_millis(300),
        ..config()
    };
    let mut server = start(cfg).await;
    let (poll, _socket) = Poll::connected(&mut server).await;
    let mut ws = probed(&server, &poll).await;
    // The client never sends `5`: the upgrade times out and the WebSocket is closed.
    assert!(ws_closed(&mut ws).await);
    // The polling heartbeat is still driven.
    for _ in 0..3 {
        let (s, b) = poll.get().await;
        assert_eq!(s, 200);
        if b == "2" {
            assert_eq!(poll.post("3").await.0, 200);
        }
    }
    let mut ws = probed(&server, &poll).await;
    ws_send(&mut ws, "5").await;
    // Now the heartbeat is the WebSocket's: pings come on it, and pongs keep it open.
    let mut pings = 0;
    while pings < 3 {
        match tokio::time::timeout(Duration::from_secs(2), ws.next())
            .await
            .unwrap()
        {
            Some(Ok(WsMessage::Text(t))) if t.as_str() == "2" => {
                pings += 1;
                ws_send(&mut ws, "3").await;
            }
            other => panic!("{other:?}"),
        }
    }
}

#[tokio::test]
async fn an_upgraded_session_without_pongs_times_out() {
    let cfg = switchboard_socketio::Config {
        ping_interval: Duration::from_millis(100),
        ping_timeout: Duration::from_millis(100),
        ..config()
    };
    let mut server = start(cfg).await;
    let (poll, socket) = Poll::connected(&mut server).await;
    let mut ws = probed(&server, &poll).await;
    ws_send(&mut ws, "5").await;
    assert!(ws_closed(&mut ws).await);
    assert_eq!(socket.closed().await, DisconnectReason::PingTimeout);
}

#[tokio::test]
async fn a_session_closed_during_the_probe_closes_the_websocket_and_tells_the_poll() {
    let mut server = start(config()).await;
    let (poll, socket) = Poll::connected(&mut server).await;
    let mut ws = probed(&server, &poll).await;
    socket.conn().close(DisconnectReason::ServerClose);
    ws_send(&mut ws, "5").await;
    assert!(ws_closed(&mut ws).await);
    let (_, b) = poll.get().await;
    assert!(b.split('\x1e').any(|p| p == "1"), "{b:?}");
    assert_eq!(socket.closed().await, DisconnectReason::ServerClose);
}

/// A client that sends `2probe` and `5` in one segment while a GET waits: the probe wakes the
/// GET, the session moves to the WebSocket, and its task may start waiting before the GET
/// runs. The GET must then answer (noop) without taking the task's place as the writer to
/// wake: the next packet, and the close, still reach the WebSocket at once. (Found in review:
/// with the GET waiting as the task does, both waited up to a heartbeat interval.)
async fn upgraded_in_one_segment(server: &Server, poll: &Poll) -> Ws {
    use futures_util::SinkExt;
    let pending = poll.pending_get().await;
    let mut ws = upgrade_socket(server, poll).await;
    ws.feed(WsMessage::Text("2probe".into())).await.unwrap();
    ws.feed(WsMessage::Text("5".into())).await.unwrap();
    ws.flush().await.unwrap();
    assert_eq!(ws_text(&mut ws).await, "3probe");
    let answer = tokio::time::timeout(Duration::from_secs(5), pending)
        .await
        .expect("the waiting GET answers")
        .unwrap();
    assert_eq!(answer, "6", "a noop ends the waiting GET");
    ws
}

/// After such an upgrade on hyper's connection (where every packet is written by the task, so
/// it must be woken), a packet emitted reaches the WebSocket.
async fn a_packet_reaches_the_task_after_an_upgrade_in_one_segment() {
    let mut server = start_axum(switchboard_socketio::SocketIo::builder(config())).await;
    let (poll, socket) = Poll::connected(&mut server).await;
    let mut ws = upgraded_in_one_segment(&server, &poll).await;
    socket.emit("after", (2,)).unwrap();
    assert_eq!(ws_text(&mut ws).await, r#"42["after",2]"#);
}

#[tokio::test]
async fn a_probe_and_its_upgrade_in_one_segment_leave_the_task_woken_by_packets() {
    a_packet_reaches_the_task_after_an_upgrade_in_one_segment().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_probe_and_its_upgrade_in_one_segment_on_two_threads() {
    a_packet_reaches_the_task_after_an_upgrade_in_one_segment().await;
}

#[tokio::test]
async fn a_probe_and_its_upgrade_in_one_segment_leave_the_task_woken_by_the_close() {
    let mut server = start(config()).await;
    let (poll, socket) = Poll::connected(&mut server).await;
    let mut ws = upgraded_in_one_segment(&server, &poll).await;
    socket.conn().close(DisconnectReason::ServerClose);
    assert!(ws_closed(&mut ws).await);
}
