//! One Engine.IO session's shared state: its outgoing queue (bounded), its transport, its
//! heartbeat clock and its close, plus [`EngineConn`], the cloneable handle that applications
//! send with. The transports (polling requests, the WebSocket task) and the heartbeat driver
//! all work on this one `Shared`, under one short-held lock.

use std::collections::VecDeque;
use std::sync::Arc;
use std::task::{Context, Poll, Waker};

use bytes::Bytes;
use parking_lot::Mutex;
use tokio::sync::Notify;
use tokio::time::Instant;

use tokio::net::TcpStream;

use super::direct;
use super::handler::SessionHandler;
use super::server::Engine;
use crate::DisconnectReason;

/// One packet waiting to be sent: an Engine.IO packet's text (`4hello`, `2`), or a binary
/// message's bytes.
#[derive(Debug, Clone)]
pub(crate) enum Frame {
    /// The packet's text, type digit included.
    Text(Bytes),
    /// A binary message.
    Binary(Bytes),
    /// A WebSocket pong (the answer to a client's ping), queued only on the direct path so it
    /// takes its place among the session's frames.
    Pong(Bytes),
}

impl Frame {
    /// The frame's size in bytes.
    pub fn len(&self) -> usize {
        match self {
            Frame::Text(b) | Frame::Binary(b) | Frame::Pong(b) => b.len(),
        }
    }
}

/// Which transport carries the session now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Transport {
    /// HTTP long-polling (possibly with an upgrade under way).
    Polling,
    /// WebSocket (from the start, or after an upgrade).
    WebSocket,
}

/// The mutable part of a session.
pub(crate) struct State {
    /// Packets waiting for the next poll or for the WebSocket writer.
    pub queue: VecDeque<Frame>,
    /// The bytes of the packets in `queue`.
    pub queued_bytes: usize,
    pub transport: Transport,
    /// A polling GET is waiting (a second one is an overlap).
    pub get_active: bool,
    /// A polling POST is being processed.
    pub post_active: bool,
    /// An upgrade's WebSocket is open (only one at a time).
    pub upgrading: bool,
    /// The upgrade's probe was answered: a pending poll is ended with a noop.
    pub probed: bool,
    /// When to send the next ping (while no pong is awaited).
    pub next_ping: Instant,
    /// When the awaited pong is late (the session then closes).
    pub pong_deadline: Option<Instant>,
    /// The application's deadline (the Socket.IO connect timeout).
    pub deadline: Option<Instant>,
    /// Set once, when the session closes.
    pub closed: Option<DisconnectReason>,
    /// A flushing close's last packets were taken by a poll.
    pub flushed: bool,
    /// The WebSocket's plain socket, while frames may be written to it directly
    /// ([`super::direct`]); `None` on polling, on hyper's upgraded connection, and once closed.
    pub socket: Option<Arc<TcpStream>>,
    /// The bytes of the queue's first frame already written to `socket`.
    pub written: usize,
    /// The writer waiting for [`Shared::wake_writer`] (the pending poll or the WebSocket task:
    /// one at a time), and whether a wake-up came that no wait has taken yet.
    writer: Option<Waker>,
    writer_woken: bool,
}

impl State {
    /// Marks the writer woken and takes its waker (to be woken once the lock is released).
    pub(crate) fn writer_waker(&mut self) -> Option<Waker> {
        self.writer_woken = true;
        self.writer.take()
    }

    /// Leaves `cx`'s waker for the next [`Shared::wake_writer`] (a waiter that looked at the
    /// state under this same lock: the pending poll).
    pub(crate) fn wait_writer(&mut self, cx: &Context<'_>) {
        match &mut self.writer {
            Some(w) if w.will_wake(cx.waker()) => {}
            slot => *slot = Some(cx.waker().clone()),
        }
    }
}

/// What is shared between the transports and the handles of one session.
pub(crate) struct Shared {
    pub sid: Arc<str>,
    /// The session's state; also where the writer (the pending poll or the WebSocket task)
    /// waits for packets queued, the close and the upgrade's progress: a waker beside the
    /// state, not a `Notify`, so that a waiting task keeps no `Notified` (64 bytes) in its
    /// future (see [`Shared::poll_writer`]).
    pub state: Mutex<State>,
    /// Wakes the polling session's heartbeat driver (pong, deadline changes, close, flushed).
    /// Only a session that began on polling has one, while it is on polling (a WebSocket
    /// session's task runs the heartbeat itself and waits on the writer's waker alone): the driver
    /// holds a clone and empties this slot when it ends, so an upgraded session keeps no
    /// `Notify` of it. [`Shared::heartbeat_changed`] wakes both.
    pub ctl: Mutex<Option<Arc<Notify>>>,
    /// The application's handler of this session; taken out when the session ends.
    pub handler: tokio::sync::Mutex<Option<Box<dyn SessionHandler>>>,
    pub engine: Arc<Engine>,
}

impl Shared {
    pub fn new(sid: Arc<str>, transport: Transport, engine: Arc<Engine>) -> Arc<Self> {
        let now = Instant::now();
        Arc::new(Shared {
            sid,
            state: Mutex::new(State {
                queue: VecDeque::new(),
                queued_bytes: 0,
                transport,
                get_active: false,
                post_active: false,
                upgrading: false,
                probed: false,
                next_ping: now + engine.config.ping_interval,
                pong_deadline: None,
                deadline: None,
                closed: None,
                flushed: false,
                socket: None,
                written: 0,
                writer: None,
                writer_woken: false,
            }),
            ctl: Mutex::new((transport == Transport::Polling).then(|| Arc::new(Notify::new()))),
            handler: tokio::sync::Mutex::new(None),
            engine,
        })
    }

    /// Queues a frame, or writes it at once when the session's socket is direct and nothing is
    /// queued before it; closes the session with `QueueFull` when the queue is at its bound.
    pub fn push(&self, frame: Frame) -> Result<(), SendError> {
        let (op, payload) = direct::framed(&frame);
        let parts: [&[u8]; 1] = [payload];
        self.push_parts(op, &parts, payload.len(), || frame.clone())
    }

    /// Sends the frame of `op` whose payload is `parts` joined (`bytes` in all): written at
    /// once (no copy) when the socket is direct and the queue empty, else `make` builds it to
    /// be queued. Order is kept: the check and the write are one step under the lock (see
    /// [`super::direct`]).
    pub fn push_parts(
        &self,
        op: u8,
        parts: &[&[u8]],
        bytes: usize,
        make: impl FnOnce() -> Frame,
    ) -> Result<(), SendError> {
        let mut st = self.state.lock();
        if st.closed.is_some() {
            return Err(SendError::Closed);
        }
        if !self.admits(&st, 1, bytes) {
            drop(st);
            self.close(DisconnectReason::QueueFull);
            return Err(SendError::QueueFull);
        }
        if st.queue.is_empty()
            && let Some(socket) = &st.socket
        {
            match direct::write_parts(socket, op, parts, bytes, 0) {
                Ok(w) if w == direct::wire_len(op, bytes) => return Ok(()),
                // The task writes the rest when the socket has room.
                Ok(w) => st.written = w,
                Err(_) => {
                    drop(st);
                    self.close(DisconnectReason::TransportError);
                    return Err(SendError::Closed);
                }
            }
        }
        st.queue.push_back(make());
        st.queued_bytes += bytes;
        let writer = st.writer_waker();
        drop(st);
        wake(writer);
        Ok(())
    }

    /// Whether `packets` more frames of `bytes` in all fit under both of the queue's bounds.
    fn admits(&self, st: &State, packets: usize, bytes: usize) -> bool {
        let config = &self.engine.config;
        st.queue.len() + packets <= config.max_queued_packets
            && st.queued_bytes + bytes <= config.max_queued_bytes
    }

    /// Queues several frames at once (a binary packet and its attachments), all or none.
    pub fn push_all(&self, frames: impl ExactSizeIterator<Item = Frame>) -> Result<(), SendError> {
        {
            let mut st = self.state.lock();
            if st.closed.is_some() {
                return Err(SendError::Closed);
            }
            let frames: Vec<Frame> = frames.collect();
            let bytes: usize = frames.iter().map(Frame::len).sum();
            if self.admits(&st, frames.len(), bytes) {
                st.queue.extend(frames);
                st.queued_bytes += bytes;
                let writer = st.writer_waker();
                drop(st);
                wake(writer);
                return Ok(());
            }
        }
        self.close(DisconnectReason::QueueFull);
        Err(SendError::QueueFull)
    }

    /// Takes every queued frame (for a poll's answer or the WebSocket writer).
    pub fn take_queue(st: &mut State) -> VecDeque<Frame> {
        st.queued_bytes = 0;
        std::mem::take(&mut st.queue)
    }

    /// Closes the session (once). A close that does not flush removes the session from the
    /// registry at once, so that the client's next request gets "unknown sid".
    pub fn close(&self, reason: DisconnectReason) {
        {
            let mut st = self.state.lock();
            if st.closed.is_some() {
                return;
            }
            st.closed = Some(reason);
        }
        if !reason.flushes() {
            self.engine.remove(&self.sid);
        }
        self.heartbeat_changed();
    }

    /// The heartbeat's next look changed (a pong, a deadline, the close): wakes whichever runs
    /// it, the polling driver or the WebSocket task. (A spurious wake-up of a pending poll
    /// finds nothing to take and waits on.)
    pub fn heartbeat_changed(&self) {
        self.wake_writer();
        self.wake_driver();
    }

    /// Wakes the writer (the pending poll or the WebSocket task), or the next one to wait when
    /// none waits now (a wake-up is kept until a wait takes it, as `Notify::notify_one` does).
    pub fn wake_writer(&self) {
        let writer = self.state.lock().writer_waker();
        wake(writer);
    }

    /// The WebSocket task's wait: ready once [`wake_writer`](Shared::wake_writer) was called
    /// since the last time this was ready; else `cx` is woken by the next call. One writer
    /// waits at a time: while the session is on polling its GET (a second one is refused as an
    /// overlap), which looks and waits in one step under the lock and answers at once once the
    /// session is on a WebSocket; from then on the session's task.
    pub fn poll_writer(&self, cx: &mut Context<'_>) -> Poll<()> {
        let mut st = self.state.lock();
        if std::mem::take(&mut st.writer_woken) {
            return Poll::Ready(());
        }
        st.wait_writer(cx);
        Poll::Pending
    }

    /// Wakes the polling heartbeat driver, if the session has one.
    pub fn wake_driver(&self) {
        if let Some(ctl) = &*self.ctl.lock() {
            ctl.notify_one();
        }
    }

    /// Whether requests naming the session still reach it: while it is open, and while a
    /// flushing close waits for its last poll.
    pub fn reachable(&self) -> bool {
        let st = self.state.lock();
        st.closed.is_none_or(|r| r.flushes() && !st.flushed)
    }

    /// Why the session closed, if it did.
    pub fn closed(&self) -> Option<DisconnectReason> {
        self.state.lock().closed
    }

    /// Ends the session's life: tells the handler (once) and drops it, and leaves the registry.
    pub async fn finish(&self) {
        let reason = self.closed().unwrap_or(DisconnectReason::TransportClose);
        let handler = self.handler.lock().await.take();
        if let Some(mut handler) = handler {
            handler.close(reason).await;
        }
        self.engine.remove(&self.sid);
    }
}

/// Wakes `waker`, if any (called once the session's lock is released).
pub(crate) fn wake(waker: Option<Waker>) {
    if let Some(w) = waker {
        w.wake();
    }
}

/// Why a packet was not queued.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum SendError {
    /// The session is closed.
    #[error("the session is closed")]
    Closed,
    /// The session's queue was full; the session is now closed (`QueueFull`).
    #[error("the session's outgoing queue is full")]
    QueueFull,
}

/// A cloneable handle to one Engine.IO session: send messages, close it, read its sid.
#[derive(Clone)]
pub struct EngineConn(pub(crate) Arc<Shared>);

impl EngineConn {
    /// The session's id (`sid`).
    pub fn sid(&self) -> &str {
        &self.0.sid
    }

    /// The transport that carries the session now.
    pub fn transport(&self) -> Transport {
        self.0.state.lock().transport
    }

    /// How many more packets the queue takes before it overflows (0 once closed).
    pub fn queue_room(&self) -> usize {
        let st = self.0.state.lock();
        if st.closed.is_some() {
            0
        } else {
            self.0
                .engine
                .config
                .max_queued_packets
                .saturating_sub(st.queue.len())
        }
    }

    /// Sends a text message (an Engine.IO `4` packet with `text` as its data).
    pub fn send_text(&self, text: &str) -> Result<(), SendError> {
        let mut buf = Vec::with_capacity(1 + text.len());
        buf.push(b'4');
        buf.extend_from_slice(text.as_bytes());
        self.0.push(Frame::Text(Bytes::from(buf)))
    }

    /// Sends a binary message.
    pub fn send_binary(&self, data: Bytes) -> Result<(), SendError> {
        self.0.push(Frame::Binary(data))
    }

    /// Sends a message already encoded as an Engine.IO packet's text (`4` and its data) and the
    /// binary messages that follow it, all queued or none: the cheap path when one message goes
    /// to many sessions (each `Bytes` is shared).
    pub(crate) fn send_encoded(
        &self,
        packet: Bytes,
        attachments: &[Bytes],
    ) -> Result<(), SendError> {
        if attachments.is_empty() {
            return self.0.push(Frame::Text(packet));
        }
        let frames = std::iter::once(Frame::Text(packet))
            .chain(attachments.iter().cloned().map(Frame::Binary));
        self.0.push_all(frames.collect::<Vec<_>>().into_iter())
    }

    /// Sends a text message whose Engine.IO packet's text (`4` and its data) is `parts` joined:
    /// written from the parts themselves (no copy) when the socket is direct and nothing is
    /// queued, else joined and queued.
    pub(crate) fn send_text_parts(&self, parts: &[&[u8]]) -> Result<(), SendError> {
        self.send_text_parts_of(parts, parts.iter().map(|p| p.len()).sum())
    }

    /// [`send_text_parts`](EngineConn::send_text_parts) where the caller knows the parts'
    /// length in all (`bytes`), as the fan-out does while it gathers them.
    pub(crate) fn send_text_parts_of(
        &self,
        parts: &[&[u8]],
        bytes: usize,
    ) -> Result<(), SendError> {
        self.0
            .push_parts(super::wsframe::opcode::TEXT, parts, bytes, || {
                Frame::Text(Bytes::from(parts.concat()))
            })
    }

    /// Closes the session. With `ServerClose` or `ServerShutdown` the packets already queued are
    /// delivered first (then a `close` packet); with any other reason it ends at once.
    pub fn close(&self, reason: DisconnectReason) {
        self.0.close(reason)
    }

    /// Why the session ended, or `None` while it is open.
    pub fn closed_reason(&self) -> Option<DisconnectReason> {
        self.0.closed()
    }

    /// Sets or clears the application's deadline: when it passes the session closes with
    /// `ConnectTimeout` (the Socket.IO layer's connect timeout).
    pub(crate) fn set_deadline(&self, deadline: Option<Instant>) {
        self.0.state.lock().deadline = deadline;
        self.0.heartbeat_changed();
    }
}

impl std::fmt::Debug for EngineConn {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EngineConn")
            .field("sid", &self.0.sid)
            .finish()
    }
}

#[cfg(test)]
#[path = "conn_tests.rs"]
mod tests;
