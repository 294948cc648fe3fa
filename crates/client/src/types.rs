//! The SDK's public types: configuration, what the client tells the application, answers
//! and errors.

use serde::{Deserialize, Serialize};
use serde_json::Value;
use std::fmt;
use std::time::Duration;
use tokio::sync::mpsc;

/// Which transport to speak.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum TransportChoice {
    /// WebSocket, falling back to long-polling on the same node when the upgrade is refused.
    #[default]
    Auto,
    /// WebSocket only.
    WebSocket,
    /// Long-polling only (works through any HTTP proxy or non-sticky load balancer).
    LongPoll,
    /// Raw TCP (4-byte big-endian length + JSON).
    Tcp,
}

/// The transport a connection actually uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Transport {
    /// WebSocket (`GET /v1/ws`).
    WebSocket,
    /// Long-polling (`/v1/poll`).
    LongPoll,
    /// Raw TCP.
    Tcp,
}

impl fmt::Display for Transport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Transport::WebSocket => "websocket",
            Transport::LongPoll => "long-poll",
            Transport::Tcp => "tcp",
        })
    }
}

/// How to reach the server and how to behave. Build it with [`ClientConfig::new`] and adjust
/// the public fields.
#[derive(Debug, Clone)]
pub struct ClientConfig {
    /// The dispatcher's base URL, e.g. `http://127.0.0.1:7700` (the client asks
    /// `GET {dispatcher}/v1/dispatch` before every connection).
    pub dispatcher: String,
    /// The bearer token (from `POST /v1/sessions` or the server API).
    pub token: String,
    /// The transport to use (default [`TransportChoice::Auto`]).
    pub transport: TransportChoice,
    /// First backoff step between connection rounds (default 250 ms). Replaced by the
    /// dispatcher's `backoff.base_ms` hint once it gave one.
    pub backoff_base: Duration,
    /// Longest backoff step (default 10 s). Replaced by the dispatcher's `backoff.max_ms` hint
    /// once it gave one.
    pub backoff_max: Duration,
    /// How long a request waits for its answer (default 10 s). A publish waits three times
    /// this, across reconnects; [`Client::connect`](crate::Client::connect) waits three times
    /// this for the first `welcome`.
    pub request_timeout: Duration,
    /// A PEM file of CA certificates to trust besides the public web PKI, for `https://`,
    /// `wss://` and `tls://` endpoints a private CA signed (default none).
    pub ca: Option<std::path::PathBuf>,
}

impl ClientConfig {
    /// A configuration with the defaults: `Auto` transport, backoff 250 ms to 10 s, requests
    /// answered within 10 s.
    pub fn new(dispatcher: impl Into<String>, token: impl Into<String>) -> ClientConfig {
        ClientConfig {
            dispatcher: dispatcher.into(),
            token: token.into(),
            transport: TransportChoice::Auto,
            backoff_base: Duration::from_millis(250),
            backoff_max: Duration::from_secs(10),
            request_timeout: Duration::from_secs(10),
            ca: None,
        }
    }
}

/// One stored message of a conversation. `(conv, seq)` identifies it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Message {
    /// The conversation (`room:<room_id>` or `user:<user_id>`).
    pub conv: String,
    /// Its position in `conv`: 1, 2, 3 ...
    pub seq: u64,
    /// Server-made unique id (both copies of a direct message share it).
    pub message_id: String,
    /// The sender; `None` for messages published by the server API.
    #[serde(default)]
    pub from: Option<String>,
    /// The recipient of a direct message.
    #[serde(default)]
    pub to: Option<String>,
    /// Storage time, milliseconds since the Unix epoch (informational: `seq` is the order).
    #[serde(default)]
    pub ts: u64,
    /// The sender's idempotency key, if it gave one.
    #[serde(default)]
    pub client_msg_id: Option<String>,
    /// The payload, any JSON value.
    #[serde(default)]
    pub body: Value,
}

impl Message {
    /// From a decoded `message` frame or history entry: the body's raw JSON becomes a value.
    pub(crate) fn from_wire(m: &switchboard_proto::Message) -> Result<Message, serde_json::Error> {
        Ok(Message::with_body(m, serde_json::from_str(m.body.get())?))
    }

    /// From a decoded message, with `body` in place of its own.
    pub(crate) fn with_body(m: &switchboard_proto::Message, body: Value) -> Message {
        Message {
            conv: m.conv.to_string(),
            seq: m.seq,
            message_id: m.message_id.clone(),
            from: m.from.clone(),
            to: m.to.clone(),
            ts: m.ts,
            client_msg_id: m.client_msg_id.clone(),
            body,
        }
    }
}

/// The answer to a publish: where and when the message was stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Receipt {
    /// Where it was stored (for a direct message, `user:<to>`).
    pub conv: String,
    /// Its seq there.
    pub seq: u64,
    /// Its id.
    pub message_id: String,
    /// Its storage time (ms).
    pub ts: u64,
    /// The idempotency key the client sent with it.
    pub client_msg_id: String,
}

/// The answer to a subscribe.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Subscribed {
    /// The conversation.
    pub conv: String,
    /// Its latest seq when the subscription started; later messages follow as events.
    pub head_seq: u64,
    /// Its epoch (a new epoch means its history was lost and seqs restarted).
    pub epoch: String,
}

/// What the client tells the application.
#[derive(Debug, Clone, PartialEq)]
pub enum Event {
    /// A message of a subscribed conversation: each `(conv, seq)` once, in seq order.
    Message(Message),
    /// A message of a subscribed conversation whose body this client cannot read (say,
    /// nested deeper than its JSON parser allows), in its place in seq order. Its position
    /// is passed like any message's, so the messages after it still come.
    Unreadable {
        /// The conversation.
        conv: String,
        /// The message's seq.
        seq: u64,
        /// Why its body could not be read.
        error: String,
    },
    /// A connection is up (after every `welcome`, the first one included).
    Connected {
        /// The node connected to.
        node_id: String,
        /// The transport in use.
        transport: Transport,
    },
    /// The connection ended; the client is reconnecting by itself.
    Disconnected {
        /// Why (`shutdown`, `slow_consumer`, `heartbeat timeout`, an IO error ...).
        reason: String,
    },
    /// A subscribed conversation was resumed after a reconnect. With `recovered: false` the
    /// messages between the last delivered one and `from_seq` are gone (history trimmed, or
    /// lost with a new epoch); delivery goes on from `from_seq`.
    Resumed {
        /// The conversation.
        conv: String,
        /// Whether everything missed is being delivered.
        recovered: bool,
        /// The first seq the server sends.
        from_seq: u64,
    },
    /// The server ended a subscription (e.g. removal from a private room: `not_member`; or a
    /// conversation that could not be resumed: gone, or no longer readable). It is no longer
    /// tracked. A resume refused for a passing reason (`unavailable`, `internal`, `overloaded`,
    /// `rate_limited`) is not this: the client reconnects and resumes it again.
    Unsubscribed {
        /// The conversation.
        conv: String,
        /// The server's reason or error code.
        reason: String,
    },
    /// The server ended the session for good (`logged_out`, `kicked`, `auth_expired`, or
    /// `unauthorized` when the token was refused on a reconnect). The client does not
    /// reconnect; this is the last event.
    ServerDisconnect {
        /// Why.
        reason: String,
    },
}

/// The stream of [`Event`]s of one [`Client`](crate::Client). It ends (`None`) when the client
/// is closed or the server ended the session. It holds up to
/// [`EVENT_BUFFER`](crate::EVENT_BUFFER) events; when it is full the client waits for the
/// application to read (and stops reading the server meanwhile), so read it promptly, in a
/// task of its own.
#[derive(Debug)]
pub struct Events {
    pub(crate) rx: mpsc::Receiver<Event>,
}

impl Events {
    /// The next event, or `None` once the client stopped.
    pub async fn next(&mut self) -> Option<Event> {
        self.rx.recv().await
    }

    /// The next event if one is already waiting.
    pub fn try_next(&mut self) -> Option<Event> {
        self.rx.try_recv().ok()
    }
}

impl futures_util::Stream for Events {
    type Item = Event;

    fn poll_next(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Event>> {
        self.rx.poll_recv(cx)
    }
}

/// What can go wrong.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ClientError {
    /// The server answered with an error (`code` is the contract's snake_case code, e.g.
    /// `not_found`, `not_member`, `rate_limited`, `unauthorized`).
    #[error("{code}: {message}")]
    Server {
        /// The error code.
        code: String,
        /// Human-readable detail.
        message: String,
    },
    /// The connection dropped before the answer (history and presence requests; publishes,
    /// subscribes and unsubscribes are resent after the reconnect instead).
    #[error("the connection dropped before the answer")]
    Disconnected,
    /// No answer within the request timeout.
    #[error("no answer in time")]
    Timeout,
    /// The first connection could not be made in time; the last failure is given.
    #[error("could not connect: {0}")]
    Unreachable(String),
    /// The client was closed, or the server ended the session.
    #[error("the client is closed")]
    Closed,
    /// The configuration cannot work.
    #[error("invalid configuration: {0}")]
    Config(String),
    /// The server's answer was not what the protocol says.
    #[error("unexpected answer: {0}")]
    Protocol(String),
}
