//! The WebSocket transport: a session opened directly on a WebSocket, the upgrade of a polling
//! session (`2probe` / `3probe`, the pending poll ended with a noop, then `5`), and the task
//! that runs a WebSocket session: it writes the queued packets, reads the client's, and runs
//! the heartbeat, in one task per session.

use std::sync::Arc;

use axum::extract::Request;
use axum::response::Response;
use bytes::Bytes;
use tokio::time::{Instant, timeout_at};

use super::conn::{Frame, Shared, Transport};
use super::http::{ErrorCode, error, open_packet, open_session, request_info};
use super::packet::{Packet, decode_frame};
use super::server::Engine;
use super::session::{heartbeat, on_packet};
use super::wsconn::{self, WsConn, WsIn};
use super::wsframe::opcode;
use crate::DisconnectReason;

/// Opens a session on a WebSocket (no `sid` in the query).
pub(crate) async fn handshake(engine: Arc<Engine>, req: Request) -> Response {
    let Some(key) = wsconn::accept_key(&req) else {
        return error(ErrorCode::BadRequest);
    };
    let info = request_info(&req);
    let max = engine.config.max_payload;
    wsconn::upgrade(req, key, max, move |conn| async move {
        let shared = open_session(&engine, Transport::WebSocket, info);
        let open = open_packet(&engine, &shared.sid, Transport::WebSocket);
        run(shared, conn, Some(open)).await;
    })
}

/// Upgrades a polling session to this WebSocket. When the session is on a WebSocket already or
/// another upgrade is under way, the new WebSocket is accepted and closed at once (as the
/// JavaScript server does); the session goes on.
pub(crate) async fn upgrade(shared: Arc<Shared>, req: Request) -> Response {
    let Some(key) = wsconn::accept_key(&req) else {
        return error(ErrorCode::BadRequest);
    };
    let max = shared.engine.config.max_payload;
    let accepted = {
        let mut st = shared.state.lock();
        let accepted = st.transport == Transport::Polling && !st.upgrading && st.closed.is_none();
        st.upgrading |= accepted;
        accepted
    };
    if !accepted {
        return wsconn::upgrade(req, key, max, |mut conn| async move { conn.close().await });
    }
    // The flag is cleared by `probe`, or here if hyper never hands the connection over.
    let guard = UpgradeGuard(Some(shared));
    wsconn::upgrade(req, key, max, move |conn| async move {
        let mut guard = guard;
        if let Some(shared) = guard.0.take() {
            probe(shared, conn).await;
        }
    })
}

/// Clears `upgrading` when an accepted upgrade never starts.
struct UpgradeGuard(Option<Arc<Shared>>);

impl Drop for UpgradeGuard {
    fn drop(&mut self) {
        if let Some(shared) = self.0.take() {
            shared.state.lock().upgrading = false;
        }
    }
}

/// The upgrade's exchange on the new WebSocket, then the session's life on it.
async fn probe(shared: Arc<Shared>, mut conn: WsConn) {
    let deadline = Instant::now() + shared.engine.config.upgrade_timeout;
    let upgraded = timeout_at(deadline, async {
        if !matches!(conn.recv().await, WsIn::Text(t) if t == b"2probe") {
            return false;
        }
        if conn.send(opcode::TEXT, b"3probe").await.is_err() {
            return false;
        }
        shared.state.lock().probed = true;
        shared.out_ready.notify_one();
        matches!(conn.recv().await, WsIn::Text(t) if t == b"5")
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
        run(shared, conn, None).await;
    } else {
        conn.close().await;
    }
}

/// Writes the queued frames.
async fn write(
    conn: &mut WsConn,
    frames: &std::collections::VecDeque<Frame>,
) -> std::io::Result<()> {
    for frame in frames {
        match frame {
            Frame::Text(t) => conn.send(opcode::TEXT, t).await?,
            Frame::Binary(b) => conn.send(opcode::BINARY, b).await?,
        }
    }
    Ok(())
}

/// Runs a session on its WebSocket until it closes.
async fn run(shared: Arc<Shared>, mut conn: WsConn, open: Option<String>) {
    if let Some(open) = open
        && conn.send(opcode::TEXT, open.as_bytes()).await.is_err()
    {
        shared.close(DisconnectReason::TransportError);
    }
    // One timer for the session's life, moved only when the heartbeat's next look changes: a
    // wake-up for queued packets then costs no timer registration.
    let sleep = tokio::time::sleep_until(Instant::now() + shared.engine.config.ping_interval);
    tokio::pin!(sleep);
    loop {
        let (frames, closed) = {
            let mut st = shared.state.lock();
            let closed = st.closed;
            let frames = if closed.is_none_or(DisconnectReason::flushes) {
                Shared::take_queue(&mut st)
            } else {
                Default::default()
            };
            (frames, closed)
        };
        if !frames.is_empty() && write(&mut conn, &frames).await.is_err() {
            shared.close(DisconnectReason::TransportError);
            continue;
        }
        if closed.is_some() {
            break;
        }
        let Some(next) = heartbeat(&shared, Instant::now()) else {
            continue;
        };
        if sleep.deadline() != next {
            sleep.as_mut().reset(next);
        }
        // Only reads and waits race here: writes happen above, never cut off half-way.
        let incoming = tokio::select! {
            incoming = conn.recv() => incoming,
            _ = shared.out_ready.notified() => continue,
            _ = shared.ctl.notified() => continue,
            _ = &mut sleep => continue,
        };
        let result = match incoming {
            WsIn::Text(text) => match decode_frame(&text, false) {
                Ok(packet) => on_packet(&shared, packet).await,
                Err(_) => Err(DisconnectReason::ParseError),
            },
            WsIn::Binary(data) => on_packet(&shared, Packet::Binary(Bytes::from(data))).await,
            WsIn::Ping(data) => match conn.send(opcode::PONG, &data).await {
                Ok(()) => Ok(()),
                Err(_) => Err(DisconnectReason::TransportError),
            },
            WsIn::Closed => Err(DisconnectReason::TransportClose),
            WsIn::TooLong => Err(DisconnectReason::PayloadTooLarge),
            WsIn::Error => Err(DisconnectReason::ParseError),
        };
        if let Err(reason) = result {
            shared.close(reason);
        }
    }
    conn.close().await;
    shared.finish().await;
}
