//! The seam between a transport (WebSocket, long-poll, TCP) and the core: a transport reads
//! frames and hands them over; the core hands it bytes to write. Nothing else crosses.

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
    /// Proof of life without a frame (a protocol pong or ping).
    Alive,
}

/// The transport could not write (peer gone, socket error).
#[derive(Debug, thiserror::Error)]
#[error("transport: {0}")]
pub struct TransportError(pub String);

/// A client connection as the session sees it.
pub trait Transport: Send + 'static {
    /// The next event from the client; `None` once the client is gone.
    /// Must be cancel-safe: the session polls it in a `select!`.
    fn recv(&mut self) -> impl Future<Output = Option<Inbound>> + Send;
    /// Queues one text frame; may buffer until [`Transport::flush`].
    fn send(&mut self, frame: Bytes) -> impl Future<Output = Result<(), TransportError>> + Send;
    /// Writes out what is buffered.
    fn flush(&mut self) -> impl Future<Output = Result<(), TransportError>> + Send;
    /// A heartbeat: a protocol ping where the transport has one, else a `{"type":"ping"}` frame.
    fn ping(&mut self) -> impl Future<Output = Result<(), TransportError>> + Send;
    /// Closes the connection (best effort).
    fn close(&mut self) -> impl Future<Output = ()> + Send;
}
