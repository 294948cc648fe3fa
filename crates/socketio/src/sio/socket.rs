//! A Socket.IO socket (one namespace on one Engine.IO session) as the application holds it:
//! emit events (text or binary, pre-encoded for fan-out), acknowledgements both ways,
//! disconnect, and learn when and why it ended.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use bytes::Bytes;
use parking_lot::Mutex;
use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_json::value::RawValue;
use tokio::sync::{Notify, oneshot};

use super::handler::SocketHandler;
use super::packet::{
    EncodeError, PacketType, encode, encode_ack, encode_event, encode_event_values,
};
use crate::DisconnectReason;
use crate::engine::{EngineConn, SendError};

/// Why an emit failed.
#[derive(Debug, thiserror::Error)]
pub enum EmitError {
    /// The arguments did not serialize to a JSON array.
    #[error(transparent)]
    Encode(#[from] EncodeError),
    /// The arguments did not serialize to JSON.
    #[error("arguments are not JSON: {0}")]
    Json(#[from] serde_json::Error),
    /// The socket or its session is closed, or the session's queue was full (it is now closed).
    #[error(transparent)]
    Send(#[from] SendError),
    /// The socket has left its namespace.
    #[error("the socket is disconnected")]
    Disconnected,
    /// An [`EventHead`](super::EventHead) of another namespace than the socket's.
    #[error("the event head is of another namespace")]
    WrongNamespace,
}

/// Why an acknowledgement did not come.
#[derive(Debug, thiserror::Error)]
pub enum AckError {
    /// The event could not be sent.
    #[error(transparent)]
    Emit(#[from] EmitError),
    /// No acknowledgement within the timeout.
    #[error("no acknowledgement within the timeout")]
    Timeout,
    /// The socket ended before the acknowledgement came.
    #[error("the socket ended before the acknowledgement")]
    Closed,
}

/// A packet encoded once, to be sent to any number of sockets of its namespace: each send
/// costs a reference count, not an encoding. Clone is cheap.
#[derive(Debug, Clone)]
pub struct EncodedPacket {
    /// The Engine.IO message's text (`42["name",...]`).
    text: Bytes,
    /// The binary attachments that follow it.
    attachments: Vec<Bytes>,
}

impl EncodedPacket {
    /// An EVENT for namespace `nsp`. `args` must serialize to a JSON array: a tuple, an array,
    /// a slice or a `Vec` (`()` is not one; use `[(); 0]` or `Vec::<()>::new()` for none).
    pub fn event<A: Serialize>(nsp: &str, event: &str, args: A) -> Result<Self, EmitError> {
        Self::binary_event(nsp, event, args, Vec::new())
    }

    /// A BINARY_EVENT: `args` holds the placeholders (`{"_placeholder":true,"num":N}`, see
    /// [`placeholder`](crate::sio::binary::placeholder)) for `attachments`.
    pub fn binary_event<A: Serialize>(
        nsp: &str,
        event: &str,
        args: A,
        attachments: Vec<Bytes>,
    ) -> Result<Self, EmitError> {
        let args = serde_json::to_string(&args)?;
        let text = encode_event("4", nsp, None, event, &args, attachments.len())?;
        Ok(EncodedPacket {
            text: Bytes::from(text),
            attachments,
        })
    }

    /// An EVENT whose arguments are already JSON: `args_json` is a JSON array's text
    /// (`[{"a":1},"x"]`), written as it is. Only its brackets are checked: the caller vouches
    /// that the rest is JSON (the cheap path for text encoded once elsewhere).
    pub fn event_json(nsp: &str, event: &str, args_json: &str) -> Result<Self, EmitError> {
        let text = encode_event("4", nsp, None, event, args_json, 0)?;
        Ok(EncodedPacket {
            text: Bytes::from(text),
            attachments: Vec::new(),
        })
    }

    /// An EVENT whose arguments are JSON values already encoded (`{"a":1}`, `"x"`), written
    /// as they are, comma-separated, into the one buffer the packet keeps: the per-socket path
    /// of a fan-out that adds a value of its own to a shared one costs one allocation and one
    /// copy. The caller vouches that each value is JSON.
    pub fn event_values(nsp: &str, event: &str, values: &[&str]) -> Result<Self, EmitError> {
        let text = encode_event_values("4", nsp, event, values)?;
        Ok(EncodedPacket {
            text: Bytes::from(text),
            attachments: Vec::new(),
        })
    }

    /// The encoded text (an Engine.IO message: `4` and the Socket.IO packet).
    pub fn text(&self) -> &[u8] {
        &self.text
    }
}

/// What a client's acknowledgement carried.
#[derive(Debug)]
pub struct AckResponse {
    /// The arguments, as JSON text.
    pub args: Vec<Box<RawValue>>,
    /// The binary attachments (the arguments hold their placeholders).
    pub attachments: Vec<Bytes>,
}

/// An event from the client.
#[derive(Debug)]
pub struct Event {
    /// The event's name.
    pub name: String,
    /// The arguments after the name, as JSON text (exactly as the client wrote them).
    pub args: Vec<Box<RawValue>>,
    /// The binary attachments; the arguments hold their placeholders.
    pub attachments: Vec<Bytes>,
    /// Present when the client asked for an acknowledgement.
    pub ack: Option<AckSender>,
}

impl Event {
    /// Argument `index` deserialized, or `None` when there are fewer arguments.
    pub fn arg<T: DeserializeOwned>(&self, index: usize) -> Option<Result<T, serde_json::Error>> {
        self.args.get(index).map(|a| serde_json::from_str(a.get()))
    }
}

/// Answers one client event's acknowledgement (once: sending consumes it).
#[derive(Debug)]
pub struct AckSender {
    socket: Socket,
    id: u64,
}

impl AckSender {
    /// The acknowledgement id the client chose.
    pub fn id(&self) -> u64 {
        self.id
    }

    /// Acknowledges with `args` (serialized to a JSON array, as for [`Socket::emit`]).
    pub fn send<A: Serialize>(self, args: A) -> Result<(), EmitError> {
        self.send_binary(args, Vec::new())
    }

    /// Acknowledges with arguments already JSON: `args_json` is a JSON array's text, written as
    /// it is (only its brackets are checked; the caller vouches for the rest).
    pub fn send_json(self, args_json: &str) -> Result<(), EmitError> {
        let text = encode_ack("4", &self.socket.0.nsp, self.id, args_json, 0)?;
        self.socket.send(&EncodedPacket {
            text: Bytes::from(text),
            attachments: Vec::new(),
        })
    }

    /// Acknowledges with `args` holding placeholders for `attachments` (a BINARY_ACK).
    pub fn send_binary<A: Serialize>(
        self,
        args: A,
        attachments: Vec<Bytes>,
    ) -> Result<(), EmitError> {
        let args = serde_json::to_string(&args)?;
        let text = encode_ack("4", &self.socket.0.nsp, self.id, &args, attachments.len())?;
        self.socket.send(&EncodedPacket {
            text: Bytes::from(text),
            attachments,
        })
    }
}

pub(crate) struct SocketInner {
    id: Arc<str>,
    nsp: Arc<str>,
    conn: EngineConn,
    reason: Mutex<Option<DisconnectReason>>,
    ended: Notify,
    handler: Mutex<Option<Arc<dyn SocketHandler>>>,
    /// Acknowledgements awaited from the client (a `BTreeMap`: 24 bytes where a `HashMap` is
    /// 48, and an idle socket awaits none).
    acks: Mutex<BTreeMap<u64, oneshot::Sender<AckResponse>>>,
    next_ack: AtomicU64,
}

/// A connected Socket.IO socket: one namespace of one session. Clone is cheap; every clone is
/// the same socket.
#[derive(Clone)]
pub struct Socket(pub(crate) Arc<SocketInner>);

impl std::fmt::Debug for Socket {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Socket")
            .field("id", &self.0.id)
            .field("nsp", &self.0.nsp)
            .finish()
    }
}

impl Socket {
    pub(crate) fn new(id: Arc<str>, nsp: Arc<str>, conn: EngineConn) -> Self {
        Socket(Arc::new(SocketInner {
            id,
            nsp,
            conn,
            reason: Mutex::new(None),
            ended: Notify::new(),
            handler: Mutex::new(None),
            acks: Mutex::new(BTreeMap::new()),
            next_ack: AtomicU64::new(0),
        }))
    }

    /// The socket's id (the `sid` of its default CONNECT reply).
    pub fn id(&self) -> &str {
        &self.0.id
    }

    /// The namespace (`/`, `/custom`).
    pub fn namespace(&self) -> &str {
        &self.0.nsp
    }

    /// The Engine.IO session under the socket (its sid, its transport; closing it ends every
    /// socket of the session).
    pub fn conn(&self) -> &EngineConn {
        &self.0.conn
    }

    /// Emits event `event` with `args`, which must serialize to a JSON array: a tuple
    /// (`("a", 1)`), an array, a slice or a `Vec` (e.g. `&event.args` to echo an event).
    pub fn emit<A: Serialize>(&self, event: &str, args: A) -> Result<(), EmitError> {
        self.send(&EncodedPacket::event(&self.0.nsp, event, args)?)
    }

    /// Emits an event whose arguments are already JSON (see [`EncodedPacket::event_json`]).
    pub fn emit_json(&self, event: &str, args_json: &str) -> Result<(), EmitError> {
        self.send(&EncodedPacket::event_json(&self.0.nsp, event, args_json)?)
    }

    /// How many more packets the session's queue takes before it overflows (and the session
    /// closes with `QueueFull`): lets an application apply its own slow-consumer rule first.
    /// A binary packet takes one per attachment more.
    pub fn queue_room(&self) -> usize {
        self.0.conn.queue_room()
    }

    /// Emits a BINARY_EVENT: `args` holds placeholders for `attachments`.
    pub fn emit_binary<A: Serialize>(
        &self,
        event: &str,
        args: A,
        attachments: Vec<Bytes>,
    ) -> Result<(), EmitError> {
        self.send(&EncodedPacket::binary_event(
            &self.0.nsp,
            event,
            args,
            attachments,
        )?)
    }

    /// Emits an event and waits (at most `timeout`) for the client's acknowledgement.
    pub async fn emit_with_ack<A: Serialize>(
        &self,
        event: &str,
        args: A,
        timeout: Duration,
    ) -> Result<AckResponse, AckError> {
        let id = self.0.next_ack.fetch_add(1, Ordering::Relaxed);
        let args = serde_json::to_string(&args).map_err(EmitError::from)?;
        let text =
            encode_event("4", &self.0.nsp, Some(id), event, &args, 0).map_err(EmitError::from)?;
        let (tx, rx) = oneshot::channel();
        self.0.acks.lock().insert(id, tx);
        if let Err(e) = self.send(&EncodedPacket {
            text: Bytes::from(text),
            attachments: Vec::new(),
        }) {
            self.0.acks.lock().remove(&id);
            return Err(e.into());
        }
        match tokio::time::timeout(timeout, rx).await {
            Ok(Ok(response)) => Ok(response),
            Ok(Err(_)) => Err(AckError::Closed),
            Err(_) => {
                self.0.acks.lock().remove(&id);
                Err(AckError::Timeout)
            }
        }
    }

    /// Sends a packet encoded once for many sockets (of this socket's namespace).
    pub fn send(&self, packet: &EncodedPacket) -> Result<(), EmitError> {
        if self.0.reason.lock().is_some() {
            return Err(EmitError::Disconnected);
        }
        self.0
            .conn
            .send_encoded(packet.text.clone(), &packet.attachments)?;
        Ok(())
    }

    /// Ends the socket from the server: sends DISCONNECT (the client does not reconnect by
    /// itself) and ends it with `ServerNamespaceDisconnect`. The session stays open.
    pub fn disconnect(&self) {
        if self.0.reason.lock().is_none() {
            let text = encode(PacketType::Disconnect, &self.0.nsp, None, None, 0);
            let _ = self.0.conn.send_text(&text);
            self.end(DisconnectReason::ServerNamespaceDisconnect);
        }
    }

    /// Whether the socket is still connected.
    pub fn is_connected(&self) -> bool {
        self.0.reason.lock().is_none()
    }

    /// Why the socket ended, or `None` while it is connected.
    pub fn disconnect_reason(&self) -> Option<DisconnectReason> {
        *self.0.reason.lock()
    }

    /// Waits until the socket ends; returns why.
    pub async fn closed(&self) -> DisconnectReason {
        loop {
            let ended = self.0.ended.notified();
            tokio::pin!(ended);
            ended.as_mut().enable();
            if let Some(reason) = *self.0.reason.lock() {
                return reason;
            }
            ended.await;
        }
    }

    pub(crate) fn set_handler(&self, handler: Arc<dyn SocketHandler>) {
        *self.0.handler.lock() = Some(handler);
    }

    pub(crate) fn handler(&self) -> Option<Arc<dyn SocketHandler>> {
        self.0.handler.lock().clone()
    }

    /// Ends the socket once: fails its pending acknowledgements, wakes `closed()`, and tells its
    /// handler (then drops it, so that a handler holding the socket is freed).
    pub(crate) fn end(&self, reason: DisconnectReason) {
        {
            let mut slot = self.0.reason.lock();
            if slot.is_some() {
                return;
            }
            *slot = Some(reason);
        }
        self.0.acks.lock().clear();
        self.0.ended.notify_waiters();
        let handler = self.0.handler.lock().take();
        if let Some(handler) = handler {
            handler.disconnect(self, reason);
        }
    }

    /// Delivers a client's acknowledgement to the waiting `emit_with_ack` (unknown ids are
    /// ignored, as socket.io does: the wait may have timed out).
    pub(crate) fn resolve_ack(&self, id: u64, response: AckResponse) {
        if let Some(tx) = self.0.acks.lock().remove(&id) {
            let _ = tx.send(response);
        }
    }

    pub(crate) fn ack_sender(&self, id: u64) -> AckSender {
        AckSender {
            socket: self.clone(),
            id,
        }
    }
}
