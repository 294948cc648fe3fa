//! The seam between a transport (WebSocket, long-poll, TCP) and the core: a transport reads
//! frames and hands them over ([`Transport`]); the core writes through the transport's
//! [`Wire`](crate::conn::Wire), from the session or straight from the fan-out. Nothing else
//! crosses.

use bytes::Bytes;
use std::future::Future;

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
}
