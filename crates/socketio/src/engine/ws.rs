//! The WebSocket transport: a session opened directly on a WebSocket, the upgrade of a polling
//! session (`2probe` / `3probe`, the pending poll ended with a noop, then `5`), and the task
//! that runs a WebSocket session: it writes the queued packets, reads the client's, and runs
//! the heartbeat, in one task per session.

use std::sync::Arc;

use axum::extract::Request;
use axum::response::Response;
use bytes::Bytes;
use futures_util::FutureExt;
use futures_util::future::OptionFuture;
use tokio::time::{Instant, timeout_at};

use super::conn::{Frame, Shared, Transport};
use super::direct;
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
    let take = engine.take_socket.clone();
    // Not an async block: the task then holds the session's future only, not the request's
    // headers beside it for the session's life.
    wsconn::upgrade(req, key, max, take, move |conn| {
        let shared = open_session(&engine, Transport::WebSocket, info);
        let open = open_packet(&engine, &shared.sid, Transport::WebSocket);
        {
            // The open packet first, before anything else is queued or written directly.
            let mut st = shared.state.lock();
            st.queued_bytes += open.len();
            st.queue.push_front(Frame::Text(Bytes::from(open)));
            st.socket = conn.direct();
        }
        run(shared, conn)
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
    let take = shared.engine.take_socket.clone();
    let accepted = {
        let mut st = shared.state.lock();
        let accepted = st.transport == Transport::Polling && !st.upgrading && st.closed.is_none();
        st.upgrading |= accepted;
        accepted
    };
    if !accepted {
        return wsconn::upgrade(
            req,
            key,
            max,
            take,
            |mut conn| async move { conn.close().await },
        );
    }
    // The flag is cleared by `probe`, or here if hyper never hands the connection over.
    let guard = UpgradeGuard(Some(shared));
    wsconn::upgrade(req, key, max, take, move |conn| upgraded(guard, conn))
}

/// The upgrade's task once hyper handed the connection over: the exchange (boxed: it ends, and
/// its timer and reads are no part of the session's life), then the session's life on the
/// WebSocket. Two stages, not an async fn (which would keep its arguments and the exchange's
/// result beside [`run`]'s future), so that every upgraded session's task is the size of
/// [`run`]'s, as a session opened on a WebSocket is.
fn upgraded(mut guard: UpgradeGuard, conn: WsConn) -> impl Future<Output = ()> + Send {
    // Always there: only this takes it.
    let exchange = guard.0.take().map(|shared| Box::pin(probe(shared, conn)));
    OptionFuture::from(exchange)
        .then(|moved| OptionFuture::from(moved.flatten().map(|(shared, conn)| run(shared, conn))))
        .map(drop)
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

/// The upgrade's exchange on the new WebSocket: the session and its WebSocket when the session
/// moved to it (then [`run`] it), `None` when the WebSocket was closed instead.
async fn probe(shared: Arc<Shared>, mut conn: WsConn) -> Option<(Arc<Shared>, WsConn)> {
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
            // From here on, packets may be written directly (behind what polling left queued).
            st.socket = conn.direct();
            true
        } else {
            false
        }
    };
    shared.heartbeat_changed();
    if upgraded {
        Some((shared, conn))
    } else {
        conn.close().await;
        None
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
            Frame::Pong(p) => conn.send(opcode::PONG, p).await?,
        }
    }
    Ok(())
}

/// Writes what is queued: on the plain socket under the lock, up to a full socket (then
/// `Ok(true)`: the task waits until it has room); on hyper's connection, all of it. A closed
/// session's queue is written only for a close that flushes.
async fn write_queued(
    shared: &Shared,
    conn: &mut WsConn,
) -> std::io::Result<(bool, Option<DisconnectReason>)> {
    let (frames, closed) = {
        let mut st = shared.state.lock();
        let closed = st.closed;
        if !closed.is_none_or(DisconnectReason::flushes) {
            return Ok((false, closed));
        }
        if st.socket.is_some() {
            return Ok((!direct::flush(&mut st)?, closed));
        }
        (Shared::take_queue(&mut st), closed)
    };
    if !frames.is_empty() {
        // Boxed: only hyper's connection waits here, and an idle task keeps no room for it.
        Box::pin(write(conn, &frames)).await?;
    }
    Ok((false, closed))
}

/// Runs a session on its WebSocket until it closes.
async fn run(shared: Arc<Shared>, mut conn: WsConn) {
    // One timer for the session's life, moved only when the heartbeat's next look changes: a
    // wake-up for queued packets then costs no timer registration.
    let sleep = tokio::time::sleep_until(Instant::now() + shared.engine.config.ping_interval);
    tokio::pin!(sleep);
    // How long a flushing close may wait for a client that does not read.
    let mut flush_deadline = None;
    loop {
        let (blocked, closed) = match write_queued(&shared, &mut conn).await {
            Ok(written) => written,
            Err(_) => {
                shared.close(DisconnectReason::TransportError);
                continue;
            }
        };
        let next = match closed {
            Some(_) if !blocked => break,
            Some(_) => *flush_deadline
                .get_or_insert_with(|| Instant::now() + shared.engine.config.ping_timeout),
            None => match heartbeat(&shared, Instant::now()) {
                Some(next) => next,
                None => continue,
            },
        };
        if sleep.deadline() != next {
            sleep.as_mut().reset(next);
        }
        let full = if blocked { conn.direct() } else { None };
        let writable = std::future::poll_fn(|cx| match &full {
            Some(stream) => stream.poll_write_ready(cx),
            None => std::task::Poll::Pending,
        });
        // Only reads and waits race here: writes happen above, never cut off half-way. The
        // heartbeat's changes (a pong, a deadline, the close) wake `out_ready` too, so the
        // task waits on `ctl` no more (`Shared::heartbeat_changed`).
        let incoming = tokio::select! {
            incoming = conn.recv(), if closed.is_none() => incoming,
            _ = writable => continue,
            _ = shared.out_ready.notified() => continue,
            _ = &mut sleep => {
                if closed.is_some() {
                    break;
                }
                continue
            }
        };
        let result = match incoming {
            // Boxed: a packet's handling (the application's handler) is no part of an idle
            // task's size.
            WsIn::Text(text) => match decode_frame(&text, false) {
                Ok(packet) => Box::pin(on_packet(&shared, packet)).await,
                Err(_) => Err(DisconnectReason::ParseError),
            },
            WsIn::Binary(data) => {
                Box::pin(on_packet(&shared, Packet::Binary(Bytes::from(data)))).await
            }
            WsIn::Ping(data) => Box::pin(pong(&shared, &mut conn, data)).await,
            WsIn::Closed => Err(DisconnectReason::TransportClose),
            WsIn::TooLong => Err(DisconnectReason::PayloadTooLarge),
            WsIn::Error => Err(DisconnectReason::ParseError),
        };
        if let Err(reason) = result {
            shared.close(reason);
        }
    }
    // No more direct writes: the socket is the task's again, to close. Boxed, as the packets'
    // handling is: the end is no part of an idle task's size either.
    // A frame cut off part-way (a close that did not wait for it) leaves no room for a close
    // frame: the connection just ends.
    let whole = {
        let mut st = shared.state.lock();
        st.socket = None;
        st.written == 0
    };
    Box::pin(async move {
        if whole {
            conn.close().await;
        } else {
            conn.abort();
        }
        shared.finish().await;
    })
    .await;
}

/// Answers a client's WebSocket ping: in its place among the queued frames on the plain
/// socket, at once on hyper's connection.
async fn pong(shared: &Shared, conn: &mut WsConn, data: Vec<u8>) -> Result<(), DisconnectReason> {
    if conn.direct().is_some() {
        // A refusal is the session closing (it ends on its own).
        let _ = shared.push(Frame::Pong(Bytes::from(data)));
        return Ok(());
    }
    conn.send(opcode::PONG, &data)
        .await
        .map_err(|_| DisconnectReason::TransportError)
}

#[cfg(test)]
mod size_tests {
    use super::*;

    fn returned_size<F: FnOnce() -> Fut, Fut>(_: F) -> usize {
        std::mem::size_of::<Fut>()
    }

    /// What every idle WebSocket session's task holds is the future of [`run`] (plus tokio's
    /// task header): 568 bytes once the handshake's closure stopped wrapping it in an async
    /// block (which kept the request's headers beside it), the open packet went into the
    /// queue, and a packet's handling, hyper's writes and the end were boxed; 504 since the
    /// task stopped waiting on `ctl` (a second `Notified`). Tokio sizes a task in steps of 128
    /// bytes: the whole task was 1,664 bytes, then 768, now 640 (massif, release build).
    #[test]
    #[allow(unreachable_code)]
    fn the_session_task_stays_small() {
        let session = returned_size(|| run(unreachable!(), unreachable!()));
        println!("run: {session} bytes");
        assert!(session <= 520, "the session future grew to {session} bytes");
    }

    /// An upgraded session's task holds [`upgraded`]'s future: [`run`]'s and a few bytes, not
    /// the exchange's timer and reads beside it (it was the whole task of 1,024 bytes per
    /// upgraded connection, against 640 for a session opened on a WebSocket; massif, release).
    #[test]
    #[allow(unreachable_code)]
    fn an_upgraded_session_task_is_the_size_of_run() {
        let run = returned_size(|| run(unreachable!(), unreachable!()));
        let upgraded = returned_size(|| upgraded(unreachable!(), unreachable!()));
        println!("run: {run} bytes, upgraded: {upgraded} bytes");
        assert!(upgraded <= run + 32, "upgraded grew to {upgraded} bytes");
    }
}
