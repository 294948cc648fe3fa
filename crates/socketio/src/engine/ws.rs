//! The WebSocket transport: a session opened directly on a WebSocket, the upgrade of a polling
//! session (`2probe` / `3probe`, the pending poll ended with a noop, then `5`), and the task
//! that runs a WebSocket session: it writes the queued packets, reads the client's, and runs
//! the heartbeat, in one task per session.

use std::sync::Arc;

use axum::extract::Request;
use axum::extract::ws::{Message as WsMessage, Utf8Bytes, WebSocket};
use axum::response::Response;
use futures_util::SinkExt;
use tokio::time::{Instant, sleep_until, timeout_at};

use super::conn::{Frame, Shared, Transport};
use super::http::{open_packet, open_session, request_info, websocket_upgrade};
use super::packet::{Packet, decode_text};
use super::server::Engine;
use super::session::{heartbeat, on_packet};
use crate::DisconnectReason;

/// Opens a session on a WebSocket (no `sid` in the query).
pub(crate) async fn handshake(engine: Arc<Engine>, req: Request) -> Response {
    let info = request_info(&req);
    let upgrade = match websocket_upgrade(&engine, req).await {
        Ok(upgrade) => upgrade,
        Err(response) => return response,
    };
    upgrade.on_upgrade(move |socket| async move {
        let shared = open_session(&engine, Transport::WebSocket, &info);
        let open = open_packet(&engine, &shared.sid, Transport::WebSocket);
        run(shared, socket, Some(open)).await;
    })
}

/// Upgrades a polling session to this WebSocket. When the session is on a WebSocket already or
/// another upgrade is under way, the new WebSocket is accepted and closed at once (as the
/// JavaScript server does); the session goes on.
pub(crate) async fn upgrade(shared: Arc<Shared>, req: Request) -> Response {
    let upgrade = match websocket_upgrade(&shared.engine, req).await {
        Ok(upgrade) => upgrade,
        Err(response) => return response,
    };
    let accepted = {
        let mut st = shared.state.lock();
        let accepted = st.transport == Transport::Polling && !st.upgrading && st.closed.is_none();
        st.upgrading |= accepted;
        accepted
    };
    if !accepted {
        return upgrade.on_upgrade(|mut socket| async move {
            let _ = socket.send(WsMessage::Close(None)).await;
        });
    }
    let failed = shared.clone();
    upgrade
        .on_failed_upgrade(move |_| failed.state.lock().upgrading = false)
        .on_upgrade(move |socket| probe(shared, socket))
}

/// The upgrade's exchange on the new WebSocket, then the session's life on it.
async fn probe(shared: Arc<Shared>, mut socket: WebSocket) {
    let deadline = Instant::now() + shared.engine.config.upgrade_timeout;
    let upgraded = timeout_at(deadline, async {
        if !matches!(socket.recv().await, Some(Ok(WsMessage::Text(t))) if t.as_str() == "2probe") {
            return false;
        }
        if socket
            .send(WsMessage::Text(Utf8Bytes::from_static("3probe")))
            .await
            .is_err()
        {
            return false;
        }
        shared.state.lock().probed = true;
        shared.out_ready.notify_one();
        matches!(socket.recv().await, Some(Ok(WsMessage::Text(t))) if t.as_str() == "5")
    })
    .await
    .unwrap_or(false);
    let upgraded = {
        let mut st = shared.state.lock();
        st.upgrading = false;
        st.probed = false;
        if upgraded && st.closed.is_none() {
            st.transport = Transport::WebSocket;
            true
        } else {
            false
        }
    };
    shared.out_ready.notify_one();
    shared.ctl.notify_one();
    if upgraded {
        run(shared, socket, None).await;
    }
}

fn to_message(frame: Frame) -> Option<WsMessage> {
    match frame {
        Frame::Text(bytes) => Utf8Bytes::try_from(bytes).ok().map(WsMessage::Text),
        Frame::Binary(bytes) => Some(WsMessage::Binary(bytes)),
    }
}

/// Runs a session on its WebSocket until it closes.
async fn run(shared: Arc<Shared>, mut socket: WebSocket, open: Option<String>) {
    if let Some(open) = open
        && socket.send(WsMessage::Text(open.into())).await.is_err()
    {
        shared.close(DisconnectReason::TransportError);
    }
    loop {
        let (frames, closed) = {
            let mut st = shared.state.lock();
            let closed = st.closed;
            let frames = if closed.is_none_or(DisconnectReason::flushes) {
                std::mem::take(&mut st.queue)
            } else {
                Default::default()
            };
            (frames, closed)
        };
        if !frames.is_empty() {
            let mut failed = false;
            for message in frames.into_iter().filter_map(to_message) {
                if socket.feed(message).await.is_err() {
                    failed = true;
                    break;
                }
            }
            if failed || socket.flush().await.is_err() {
                shared.close(DisconnectReason::TransportError);
                continue;
            }
        }
        if closed.is_some() {
            break;
        }
        let Some(next) = heartbeat(&shared, Instant::now()) else {
            continue;
        };
        tokio::select! {
            incoming = socket.recv() => {
                let result = match incoming {
                    Some(Ok(WsMessage::Text(text))) => match decode_text(text.as_str()) {
                        Ok(packet) => on_packet(&shared, packet).await,
                        Err(_) => Err(DisconnectReason::ParseError),
                    },
                    Some(Ok(WsMessage::Binary(data))) => on_packet(&shared, Packet::Binary(data)).await,
                    Some(Ok(WsMessage::Ping(_) | WsMessage::Pong(_))) => Ok(()),
                    Some(Ok(WsMessage::Close(_))) | None => Err(DisconnectReason::TransportClose),
                    Some(Err(_)) => Err(DisconnectReason::TransportError),
                };
                if let Err(reason) = result {
                    shared.close(reason);
                }
            }
            _ = shared.out_ready.notified() => {}
            _ = shared.ctl.notified() => {}
            _ = sleep_until(next) => {}
        }
    }
    let _ = socket.send(WsMessage::Close(None)).await;
    shared.finish().await;
}
