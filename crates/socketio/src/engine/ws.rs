//! The WebSocket transport: a session opened directly on a WebSocket, the upgrade of a polling
//! session (`2probe` / `3probe`, the pending poll ended with a noop, then `5`), and the task
//! that runs a WebSocket session: it writes the queued packets, reads the client's, and runs
//! the heartbeat, in one task per session.

use std::sync::Arc;
use std::task::Poll;

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
        shared.wake_writer();
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
    frames: std::collections::VecDeque<Frame>,
) -> std::io::Result<()> {
    for frame in &frames {
        match frame {
            Frame::Text(t) => conn.send(opcode::TEXT, t).await?,
            Frame::Binary(b) => conn.send(opcode::BINARY, b).await?,
            Frame::Pong(p) => conn.send(opcode::PONG, p).await?,
        }
    }
    Ok(())
}

/// What the task does with the queue.
struct Queued {
    /// The plain socket was full: the task waits until it has room.
    blocked: bool,
    /// Why the session closed, if it did.
    closed: Option<DisconnectReason>,
    /// Frames for hyper's connection to write (taken from the queue), if any.
    frames: Option<std::collections::VecDeque<Frame>>,
}

/// Writes what is queued on the plain socket, under the lock, up to a full socket; on hyper's
/// connection, takes it for the task to write. A closed session's queue is written only for a
/// close that flushes.
fn write_queued(shared: &Shared) -> std::io::Result<Queued> {
    let mut st = shared.state.lock();
    let closed = st.closed;
    let mut queued = Queued {
        blocked: false,
        closed,
        frames: None,
    };
    if !closed.is_none_or(DisconnectReason::flushes) {
        return Ok(queued);
    }
    if st.socket.is_some() {
        queued.blocked = !direct::flush(&mut st)?;
    } else {
        queued.frames = Some(Shared::take_queue(&mut st)).filter(|f| !f.is_empty());
    }
    Ok(queued)
}

/// Runs a session on its WebSocket until it closes.
///
/// Not an async fn: an async fn's future keeps its arguments twice (as captured and as moved
/// into its body), and this is what every WebSocket session's task holds for its life. The
/// block uses what it captured in place, and every value that is not needed across a wait is
/// scoped so that the future keeps no room for it (a message's handling is boxed whole).
#[allow(clippy::manual_async_fn)] // on purpose: see above
fn run(shared: Arc<Shared>, mut conn: WsConn) -> impl Future<Output = ()> + Send {
    async move {
        // One timer for the session's life, moved only when the heartbeat's next look changes:
        // a wake-up for queued packets then costs no timer registration.
        let sleep = tokio::time::sleep_until(Instant::now() + shared.engine.config.ping_interval);
        tokio::pin!(sleep);
        // How long a flushing close may wait for a client that does not read.
        let mut flush_deadline = None;
        loop {
            let Ok(Queued {
                blocked,
                closed,
                frames,
            }) = write_queued(&shared)
            else {
                shared.close(DisconnectReason::TransportError);
                continue;
            };
            // Boxed with the frames: only hyper's connection writes here, and an idle task
            // keeps no room for it. (`frames` is moved whole into `map`: a local moved out of
            // in part would keep its room in the future across the write.)
            let failed = match frames.map(|frames| Box::pin(write(&mut conn, frames))) {
                Some(writing) => writing.await.is_err(),
                None => false,
            };
            if failed {
                shared.close(DisconnectReason::TransportError);
                continue;
            }
            {
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
            }
            // Only reads and waits race here: writes happen above, never cut off half-way. The
            // heartbeat's changes (a pong, a deadline, the close) wake the writer too, so the
            // task waits on `ctl` no more (`Shared::heartbeat_changed`). One poll of the four,
            // not a `select!` (whose futures and outputs the task would keep room for): the
            // loop's top looks at the queue, the heartbeat and the close after every wake-up,
            // so a client that sends without pause starves none of them. In a block of its
            // own: `woke` is moved out of in part, and would otherwise keep its room in the
            // future while the message is handled.
            let incoming = {
                let woke = std::future::poll_fn(|cx| {
                    if closed.is_none()
                        && let Poll::Ready(incoming) = conn.poll_recv(cx)
                    {
                        return Poll::Ready(Some(incoming));
                    }
                    let writable = blocked
                        && conn
                            .direct_ref()
                            .is_some_and(|s| s.poll_write_ready(cx).is_ready());
                    if writable || shared.poll_writer(cx).is_ready() {
                        return Poll::Ready(None);
                    }
                    sleep.as_mut().poll(cx).map(|()| None)
                })
                .await;
                match woke {
                    Some(incoming) => incoming,
                    None => {
                        if closed.is_some() && sleep.is_elapsed() {
                            break;
                        }
                        continue;
                    }
                }
            };
            // Boxed whole, the message with it: its handling (the application's handler) is no
            // part of an idle task's size.
            if let Err(reason) = Box::pin(on_incoming(&shared, &mut conn, incoming)).await {
                shared.close(reason);
            }
        }
        // No more direct writes: the socket is the task's again, to close. Boxed, as the
        // packets' handling is: the end is no part of an idle task's size either. A frame cut
        // off part-way (a close that did not wait for it) leaves no room for a close frame: the
        // connection just ends.
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
}

/// Handles what the client sent.
async fn on_incoming(
    shared: &Arc<Shared>,
    conn: &mut WsConn,
    incoming: WsIn,
) -> Result<(), DisconnectReason> {
    match incoming {
        WsIn::Text(text) => match decode_frame(&text, false) {
            Ok(packet) => on_packet(shared, packet).await,
            Err(_) => Err(DisconnectReason::ParseError),
        },
        WsIn::Binary(data) => on_packet(shared, Packet::Binary(Bytes::from(data))).await,
        WsIn::Ping(data) => pong(shared, conn, data).await,
        WsIn::Closed => Err(DisconnectReason::TransportClose),
        WsIn::TooLong => Err(DisconnectReason::PayloadTooLarge),
        WsIn::Error => Err(DisconnectReason::ParseError),
    }
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
    /// task stopped waiting on `ctl` (a second `Notified`); 272 since it waits on a waker
    /// beside the session's state (no `Notified`), polls its four wake-ups in one poll (no
    /// `select!`), keeps its arguments once (a block, not an async fn), and scopes what it does
    /// not need across a wait (the queue taken for hyper's connection, the message read).
    /// Tokio sizes a task in steps of 128 bytes with 104 of its own: the whole task was 1,664
    /// bytes, then 768, 640, now 384 (massif, release build). At most 280 keeps it there.
    #[test]
    #[allow(unreachable_code)]
    fn the_session_task_stays_small() {
        let session = returned_size(|| run(unreachable!(), unreachable!()));
        println!("run: {session} bytes");
        assert!(session <= 272, "the session future grew to {session} bytes");
    }

    /// An upgraded session's task holds [`upgraded`]'s future: [`run`]'s and a few bytes, not
    /// the exchange's timer and reads beside it (it was the whole task of 1,024 bytes per
    /// upgraded connection, against 640 for a session opened on a WebSocket; massif, release).
    /// At most 280, with tokio's 104, keeps the task at 384 bytes.
    #[test]
    #[allow(unreachable_code)]
    fn an_upgraded_session_task_is_the_size_of_run() {
        let run = returned_size(|| run(unreachable!(), unreachable!()));
        let upgraded = returned_size(|| upgraded(unreachable!(), unreachable!()));
        println!("run: {run} bytes, upgraded: {upgraded} bytes");
        assert!(upgraded <= run + 8, "upgraded grew to {upgraded} bytes");
        assert!(upgraded <= 280, "upgraded grew to {upgraded} bytes");
    }
}
