//! The seam between a transport (WebSocket, long-poll, TCP) and the core: a transport reads
//! frames and hands them over ([`Transport`]); the core writes through the transport's
//! [`Wire`], from the session or straight from the fan-out. Nothing else crosses.

use bytes::Bytes;
use std::future::Future;
use std::io;
use std::task::{Context, Poll};
use std::time::Duration;
use switchboard_proto::ErrorCode;
use switchboard_proto::frame::RequestId;

/// What a transport read from its client.
#[derive(Debug)]
pub enum Inbound {
    /// One complete JSON frame.
    Frame(Bytes),
    /// A frame over the size limit (its size), discarded; the connection can go on. A frame so
    /// large that the transport cannot recover is reported like this and then as the end (`None`).
    TooLarge(usize),
    /// Proof of life without a frame (a protocol pong, a long-poll GET).
    Alive,
    /// A WebSocket ping with its payload: answer with a pong (it is proof of life too).
    Ping(Bytes),
    /// A request the transport read but could not hand over as a frame (a Socket.IO event the
    /// mapping refuses): the session answers it with this error, in order with its other
    /// replies, and counts it against the frame rate.
    Refused(Box<Refused>),
}

/// A request a transport refused itself ([`Inbound::Refused`]).
#[derive(Debug)]
pub struct Refused {
    /// The request's id, as the error answer names it (`None`: the answer has no id).
    pub id: Option<RequestId>,
    /// Why.
    pub code: ErrorCode,
    /// For the client.
    pub message: String,
}

/// The read side of a client connection as the session sees it.
pub trait Transport: Send + 'static {
    /// The next event from the client; `None` once the client is gone.
    /// Must be cancel-safe: the session polls it in a `select!`.
    fn recv(&mut self) -> impl Future<Output = Option<Inbound>> + Send;
    /// The WebSocket close code for the connection's last frame: 1000 unless the reader saw a
    /// protocol violation (1002), an oversized message (1009) or invalid UTF-8 (1007).
    fn close_code(&self) -> u16 {
        1000
    }
    /// How often the session sends its heartbeat ([`Out::Ping`]) on this transport: `None` for
    /// the node's `heartbeat`. A transport whose protocol promised its client a ping interval
    /// (Engine.IO's `pingInterval`) keeps that promise through this.
    fn heartbeat(&self) -> Option<Duration> {
        None
    }
}

/// A frame on its way out, before the transport's framing.
#[derive(Debug, Clone)]
pub enum Out {
    /// A JSON frame (a WebSocket text frame, a TCP length-prefixed frame, a long-poll entry).
    Text(Bytes),
    /// A heartbeat: a WebSocket ping frame, or `{"type":"ping"}` where there is none.
    Ping,
    /// The answer to a client's WebSocket ping, with its payload.
    Pong(Bytes),
    /// The very last frame: a WebSocket close frame with this code (nothing elsewhere).
    Close(u16),
}

/// How far a [`Wire::try_write`] got.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Progress {
    /// Frames written completely, from the first one given.
    pub frames: usize,
    /// Bytes of the framed form of the next frame written so far.
    pub offset: usize,
    /// The peer took less than was offered: wait for [`Wire::poll_writable`] before trying again.
    pub blocked: bool,
}

/// The write side of a transport, usable from any thread without waiting.
pub trait Wire: Send + Sync + 'static {
    /// Writes frames in order, the first starting `offset` bytes into its framed form, as far
    /// as the peer takes without waiting. A wire may take only some of the frames offered (a
    /// batch); `blocked` says whether it stopped because the peer would not take more.
    fn try_write(
        &self,
        frames: &mut dyn Iterator<Item = &Out>,
        offset: usize,
    ) -> io::Result<Progress>;
    /// Ready when `try_write` may make progress again.
    fn poll_writable(&self, cx: &mut Context<'_>) -> Poll<io::Result<()>>;
    /// Ends the write side after the last frame (best effort).
    fn shutdown(&self);
}
