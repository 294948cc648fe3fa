//! The seam between the Engine.IO transport and what runs on it: an [`EngineHandler`] makes one
//! [`SessionHandler`] per session, which gets the session's messages in order and its close.
//! The Socket.IO layer is one such handler; a bare Engine.IO application is another.

use std::net::SocketAddr;

use async_trait::async_trait;
use axum::http::{HeaderMap, Uri};
use bytes::Bytes;

use super::conn::EngineConn;
use crate::DisconnectReason;

/// What the handshake request said: its headers, URI (with the query) and the peer's address
/// (when the router is served with `into_make_service_with_connect_info::<SocketAddr>()`).
#[derive(Debug, Clone, Default)]
pub struct RequestInfo {
    /// The handshake request's headers.
    pub headers: HeaderMap,
    /// The handshake request's URI.
    pub uri: Uri,
    /// The client's address, when known.
    pub peer: Option<SocketAddr>,
}

/// One message from the client.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Message {
    /// A text message (the data of a `4` packet).
    Text(String),
    /// A binary message.
    Binary(Bytes),
}

/// Makes the handler of each new session.
pub trait EngineHandler: Send + Sync + 'static {
    /// A session opened (its handshake is being answered). `conn` sends to it. The request is
    /// given, not lent: the handler keeps what it needs and the transport keeps nothing.
    fn open(&self, conn: EngineConn, request: RequestInfo) -> Box<dyn SessionHandler>;
}

/// The handler of one session. Its methods are called one at a time, in the order the
/// client's packets came, whatever the transport (a slow `message` delays the session's next
/// packets, not other sessions').
#[async_trait]
pub trait SessionHandler: Send + 'static {
    /// A message came. An `Err` closes the session with that reason (e.g. `ParseError`).
    async fn message(&mut self, message: Message) -> Result<(), DisconnectReason>;

    /// The session ended; called once, last.
    async fn close(&mut self, reason: DisconnectReason);
}
