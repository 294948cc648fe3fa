//! The application's side of Socket.IO: a [`Namespace`] decides each CONNECT (accept, with an
//! optional custom reply, or refuse with a CONNECT_ERROR payload) and gives each accepted
//! socket its [`SocketHandler`], which gets the socket's events and its end.

use std::sync::Arc;

use async_trait::async_trait;
use serde_json::Value;
use serde_json::value::RawValue;

use super::socket::{Event, Socket};
use crate::DisconnectReason;
use crate::engine::RequestInfo;

/// A CONNECT to a namespace, as the namespace's [`Namespace::connect`] sees it.
#[derive(Debug)]
pub struct ConnectRequest {
    /// The CONNECT payload (the client's `auth`), as JSON text; `None` when it sent none.
    pub auth: Option<Box<RawValue>>,
    /// The session's handshake request (headers, URI, peer).
    pub request: Arc<RequestInfo>,
}

impl ConnectRequest {
    /// The CONNECT payload parsed, or `None` when there is none.
    pub fn auth_value(&self) -> Option<Value> {
        self.auth
            .as_deref()
            .and_then(|a| serde_json::from_str(a.get()).ok())
    }
}

/// An accepted CONNECT: the socket's handler, and optionally the CONNECT reply's payload.
pub struct Accept {
    pub(crate) handler: Arc<dyn SocketHandler>,
    pub(crate) reply: Option<Value>,
}

impl Accept {
    /// Accepts with `handler` for the socket's events; the reply is `{"sid":"<socket id>"}`.
    pub fn new(handler: impl SocketHandler) -> Self {
        Accept {
            handler: Arc::new(handler),
            reply: None,
        }
    }

    /// Accepts with a handler already shared (one handler for every socket, say).
    pub fn shared(handler: Arc<dyn SocketHandler>) -> Self {
        Accept {
            handler,
            reply: None,
        }
    }

    /// Replaces the CONNECT reply's payload (an object, e.g. `{"sid":"...","pid":"..."}` for
    /// connection state recovery).
    pub fn with_reply(mut self, reply: Value) -> Self {
        self.reply = Some(reply);
        self
    }
}

/// A refused CONNECT: the CONNECT_ERROR payload.
#[derive(Debug, Clone)]
pub struct Refuse(pub Value);

impl Refuse {
    /// `{"message": message}`.
    pub fn message(message: &str) -> Self {
        Refuse(serde_json::json!({ "message": message }))
    }
}

/// One namespace's connect handler.
#[async_trait]
pub trait Namespace: Send + Sync + 'static {
    /// Decides a CONNECT. `socket` is the socket to be (it can be kept and emitted to once
    /// accepted; emit from [`SocketHandler::connected`] to send after the CONNECT reply).
    async fn connect(&self, socket: &Socket, request: ConnectRequest) -> Result<Accept, Refuse>;
}

/// The handler of one socket's events. Calls for one session come one at a time, in the
/// order the client sent its packets.
#[async_trait]
pub trait SocketHandler: Send + Sync + 'static {
    /// The CONNECT reply is queued: the first thing the handler may send after it.
    async fn connected(&self, _socket: &Socket) {}

    /// An event from the client (with its acknowledgement responder when it asked for one).
    async fn event(&self, socket: &Socket, event: Event);

    /// The socket ended (called once, from wherever it ended; spawn for async work).
    fn disconnect(&self, _socket: &Socket, _reason: DisconnectReason) {}
}
