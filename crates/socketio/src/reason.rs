//! Why a session or a socket ended: one enum for both layers, with the reason strings that
//! socket.io uses where it has one.

/// Why an Engine.IO session or a Socket.IO socket ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum DisconnectReason {
    /// The client left the namespace (a DISCONNECT packet).
    ClientNamespaceDisconnect,
    /// The server ended the socket ([`Socket::disconnect`](crate::Socket::disconnect)).
    ServerNamespaceDisconnect,
    /// The client closed the session (an Engine.IO `close` packet).
    ClientClose,
    /// The connection closed (WebSocket closed or broken).
    TransportClose,
    /// A write to the connection failed.
    TransportError,
    /// No pong came within `pingTimeout`.
    PingTimeout,
    /// The client sent a packet that does not decode, or one not allowed where it came.
    ParseError,
    /// The client sent more than `maxPayload` bytes.
    PayloadTooLarge,
    /// Two polling requests of the same kind at once.
    PollOverlap,
    /// The session's outgoing queue was full: the client does not read fast enough.
    QueueFull,
    /// No CONNECT to a namespace within the connect timeout.
    ConnectTimeout,
    /// The server closed the session ([`EngineConn::close`](crate::engine::EngineConn::close)).
    ServerClose,
    /// The server is shutting down ([`SocketIo::close_all`](crate::SocketIo::close_all)).
    ServerShutdown,
}

impl DisconnectReason {
    /// The reason as text (socket.io's wording where it has one).
    pub fn as_str(self) -> &'static str {
        match self {
            DisconnectReason::ClientNamespaceDisconnect => "client namespace disconnect",
            DisconnectReason::ServerNamespaceDisconnect => "server namespace disconnect",
            DisconnectReason::ClientClose => "forced close",
            DisconnectReason::TransportClose => "transport close",
            DisconnectReason::TransportError => "transport error",
            DisconnectReason::PingTimeout => "ping timeout",
            DisconnectReason::ParseError => "parse error",
            DisconnectReason::PayloadTooLarge => "payload too large",
            DisconnectReason::PollOverlap => "poll overlap",
            DisconnectReason::QueueFull => "queue full",
            DisconnectReason::ConnectTimeout => "connect timeout",
            DisconnectReason::ServerClose => "forced server close",
            DisconnectReason::ServerShutdown => "server shutting down",
        }
    }

    /// Whether a closing polling session stays reachable for one last poll, which gets the
    /// queued packets and the end (`1`, or `6` for the client's own close): when the server
    /// chose to close it, and when the client did (its close POST may overtake the poll it
    /// has pending on another connection). On every other reason the client is gone or
    /// misbehaving, and the session is forgotten at once.
    pub(crate) fn flushes(self) -> bool {
        matches!(
            self,
            DisconnectReason::ServerClose
                | DisconnectReason::ServerShutdown
                | DisconnectReason::ClientClose
        )
    }
}

impl std::fmt::Display for DisconnectReason {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}
