//! The settings of an Engine.IO / Socket.IO server, with the defaults of the JavaScript server
//! where it has one and a bound of our own everywhere it has none.

use std::time::Duration;

use crate::sio::packet::Limits;

/// Server settings. `Config::default()` matches socket.io's defaults (`pingInterval` 25 s,
/// `pingTimeout` 20 s, `maxPayload` 1 MB, connect timeout 45 s).
#[derive(Debug, Clone)]
pub struct Config {
    /// How often the server pings a session (`pingInterval` of the handshake).
    pub ping_interval: Duration,
    /// How long the server waits for the pong before it closes the session (`pingTimeout`).
    pub ping_timeout: Duration,
    /// The largest polling body and the largest WebSocket message, in bytes (`maxPayload`).
    /// A bigger POST is answered 413 and closes the session; a bigger WebSocket message closes it.
    pub max_payload: usize,
    /// A session that connects to no namespace within this time is closed.
    pub connect_timeout: Duration,
    /// How long an upgrade may take between the WebSocket's opening and its `5` packet.
    pub upgrade_timeout: Duration,
    /// The most packets queued for one session (waiting for a poll or the WebSocket writer).
    /// Past it the session is closed with [`DisconnectReason::QueueFull`](crate::DisconnectReason::QueueFull):
    /// a client that does not read is dropped, not buffered without end.
    pub max_queued_packets: usize,
    /// The most bytes queued for one session; past it the session is closed with `QueueFull`
    /// too (a queue of 1,024 large messages would otherwise be a gigabyte).
    pub max_queued_bytes: usize,
    /// The most packets one polling POST may carry.
    pub max_payload_packets: usize,
    /// The most namespaces one session may be connected to at once.
    pub max_namespaces: usize,
    /// How long a server-closed polling session waits for the poll that takes its last packets.
    pub close_flush_timeout: Duration,
    /// Socket.IO decoder bounds: attachments per packet, JSON depth, namespace length.
    pub limits: Limits,
    /// Whether each session keeps its handshake request (headers, URI, peer) for its CONNECTs'
    /// [`ConnectRequest::request`](crate::ConnectRequest). A server whose namespaces do not
    /// read it turns this off: every session then holds no copy of its headers (a browser's
    /// run to several hundred bytes), and each CONNECT gets an empty request.
    pub keep_handshake: bool,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            ping_interval: Duration::from_millis(25_000),
            ping_timeout: Duration::from_millis(20_000),
            max_payload: 1_000_000,
            connect_timeout: Duration::from_millis(45_000),
            upgrade_timeout: Duration::from_millis(10_000),
            max_queued_packets: 1024,
            max_queued_bytes: 4 << 20,
            max_payload_packets: 1024,
            max_namespaces: 16,
            close_flush_timeout: Duration::from_millis(2_000),
            limits: Limits::default(),
            keep_handshake: true,
        }
    }
}
