//! The Rust client SDK for Switchboard, a real-time messaging server.
//!
//! A [`Client`] asks the dispatcher where to connect, connects over WebSocket, long-polling or
//! raw TCP, authenticates, and hands the application typed [`Event`]s. When the connection
//! fails, or the server sends `reconnect`, it goes back to the dispatcher (trying the
//! alternates, then dispatching afresh) with exponential backoff and full jitter, resumes every
//! subscribed conversation from the last seq it delivered, and resends unanswered publishes
//! with the same `client_msg_id` (the server stores them once). The application sees every
//! message of a subscribed conversation exactly once and in seq order: repeats are dropped by
//! `(conv, seq)` and gaps are filled from history before later messages are handed over.
//!
//! # Example
//!
//! ```no_run
//! use switchboard_client::{Client, ClientConfig, Event, TransportChoice};
//!
//! # async fn run() -> Result<(), switchboard_client::ClientError> {
//! let mut config = ClientConfig::new("http://127.0.0.1:7700", "sb_...token...");
//! config.transport = TransportChoice::Auto; // WebSocket, or long-polling when upgrades fail
//! let (client, mut events) = Client::connect(config).await?;
//!
//! client.subscribe("room:r_98961245b61512df8f91").await?;
//! let receipt = client
//!     .publish("room:r_98961245b61512df8f91", serde_json::json!({"text": "hi"}))
//!     .await?;
//! println!("stored as seq {}", receipt.seq);
//!
//! while let Some(event) = events.next().await {
//!     match event {
//!         Event::Message(m) => println!("{} #{}: {}", m.conv, m.seq, m.body),
//!         Event::Connected { node_id, transport } => println!("on {node_id} over {transport}"),
//!         Event::Disconnected { reason } => println!("reconnecting ({reason})"),
//!         Event::ServerDisconnect { reason } => println!("signed out: {reason}"),
//!         other => println!("{other:?}"),
//!     }
//! }
//! client.close().await;
//! # Ok(())
//! # }
//! ```
//!
//! `examples/tail.rs` is a complete program that prints a room's messages as they come.
//!
//! # Backpressure
//!
//! Every buffer in the client is bounded. The [`Events`] stream holds up to [`EVENT_BUFFER`]
//! events; when it is full the client waits for the application to read, and meanwhile reads
//! nothing more from the server (whose own limit then ends the connection as a slow consumer,
//! after which the client resumes where the application stopped). Requests wait meanwhile too,
//! so read events in a task of their own rather than between requests. Up to
//! [`COMMAND_BUFFER`] requests from the application wait for the background task; more wait in
//! their callers (within the request timeout).
//!
//! # Transports
//!
//! | [`TransportChoice`] | what happens |
//! | --- | --- |
//! | `Auto` (default) | WebSocket; when the upgrade request is answered with an HTTP error (a proxy that refuses upgrades), long-polling on the same node |
//! | `WebSocket` | `endpoints.ws`, authenticated by an `auth` frame carrying `resume` |
//! | `LongPoll` | `POST endpoints.poll` with `{"resume": ...}`, then `GET ?after=N&wait_ms=25000` / `POST` frames |
//! | `Tcp` | `endpoints.tcp`: 4-byte big-endian length + JSON frames |
//!
//! Endpoints may be plain (`http://`, `ws://`, `tcp://`) or TLS (`https://`, `wss://`,
//! `tls://`); TLS trusts the public web PKI and, with [`ClientConfig::ca`], a private CA.
//!
//! # Your own stream
//!
//! The server subscribes every connection to the user's own stream (`user:<user_id>`: direct
//! messages and server pushes). The client tracks it like any subscribed conversation, from
//! its head when the first connection was made (its messages arrive as [`Event::Message`] and
//! are resumed after reconnects); [`Client::unsubscribe`] it to stop that.

mod connect;
mod dispatch;
mod driver;
mod link;
mod net;
mod request;
mod shared;
mod tracker;
mod types;

pub use types::{
    ClientConfig, ClientError, Event, Events, Message, Receipt, Subscribed, Transport,
    TransportChoice,
};

use serde_json::Value;
use std::fmt;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::{mpsc, oneshot};

use switchboard_proto::ServerFrame;
pub use switchboard_proto::frame::PresenceEntry;

pub(crate) use request::{Cmd, Request};
pub(crate) use shared::{Shared, lock};

/// How many events the [`Events`] stream holds before the client waits for the application
/// to read (see "Backpressure" above).
pub const EVENT_BUFFER: usize = 1024;

/// How many requests can wait for the background task before callers wait to hand theirs over.
pub const COMMAND_BUFFER: usize = 64;

struct Inner {
    cmds: mpsc::Sender<Cmd>,
    shared: Shared,
    request_timeout: Duration,
    task: Mutex<Option<tokio::task::JoinHandle<()>>>,
}

/// A connection to Switchboard that keeps itself alive. Cheap to clone: every clone drives
/// the same connection, owned by one background task. The task stops when [`Client::close`]
/// is called, when the server ends the session, or when every clone is dropped.
#[derive(Clone)]
pub struct Client {
    inner: Arc<Inner>,
}

impl fmt::Debug for Client {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Client")
            .field("node_id", &self.node_id())
            .field("user_id", &self.user_id())
            .finish()
    }
}

impl Client {
    /// Dispatches, connects and authenticates; returns once the first `welcome` arrived (and
    /// the user's own stream is tracked), or fails after `3 × request_timeout` with the last
    /// error ([`ClientError::Unreachable`]), or at once when the token is refused
    /// ([`ClientError::Server`] with code `unauthorized`).
    ///
    /// Must be called within a Tokio runtime.
    pub async fn connect(config: ClientConfig) -> Result<(Client, Events), ClientError> {
        if !(config.dispatcher.starts_with("http://") || config.dispatcher.starts_with("https://"))
        {
            return Err(ClientError::Config(format!(
                "the dispatcher must be an http:// URL, not {:?}",
                config.dispatcher
            )));
        }
        if config.token.is_empty() {
            return Err(ClientError::Config("the token is empty".into()));
        }
        let (cmd_tx, cmd_rx) = mpsc::channel(COMMAND_BUFFER);
        let (ev_tx, ev_rx) = mpsc::channel(EVENT_BUFFER);
        let (ready_tx, ready_rx) = oneshot::channel();
        let shared: Shared = Arc::default();
        let wait = config.request_timeout.saturating_mul(3);
        let request_timeout = config.request_timeout;
        let net = net::Net::new(config.ca.as_deref()).map_err(ClientError::Config)?;
        let driver = driver::Driver::new(config, net, cmd_rx, ev_tx, shared.clone(), ready_tx);
        let task = tokio::spawn(driver.run());
        let client = Client {
            inner: Arc::new(Inner {
                cmds: cmd_tx,
                shared: shared.clone(),
                request_timeout,
                task: Mutex::new(Some(task)),
            }),
        };
        match tokio::time::timeout(wait, ready_rx).await {
            Ok(Ok(Ok(()))) => Ok((client, Events { rx: ev_rx })),
            Ok(Ok(Err(e))) => Err(e),
            Ok(Err(_)) => Err(ClientError::Closed),
            Err(_) => {
                client.abort();
                let last = lock(&shared).last_error.clone();
                Err(ClientError::Unreachable(
                    last.unwrap_or_else(|| "no welcome in time".into()),
                ))
            }
        }
    }

    fn abort(&self) {
        if let Some(t) = self
            .inner
            .task
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .take()
        {
            t.abort();
        }
    }

    /// Sends a request and waits for its answer frame (an `error` frame is an `Err`). Waiting
    /// for room in the command buffer counts toward `within`.
    async fn request(&self, req: Request, within: Duration) -> Result<ServerFrame, ClientError> {
        let asked = async {
            let (reply, rx) = oneshot::channel();
            self.inner
                .cmds
                .send(Cmd::Request { req, reply })
                .await
                .map_err(|_| ClientError::Closed)?;
            rx.await.map_err(|_| ClientError::Closed)?
        };
        tokio::time::timeout(within, asked)
            .await
            .map_err(|_| ClientError::Timeout)?
    }

    /// Subscribes to `conv` (`room:<room_id>` or `user:<own user_id>`). Its messages then
    /// arrive as [`Event::Message`], from `head_seq + 1` on. The subscription is remembered:
    /// after every reconnect it is resumed from the last delivered seq. Subscribing again to a
    /// subscribed conversation changes nothing.
    pub async fn subscribe(&self, conv: &str) -> Result<Subscribed, ClientError> {
        let req = Request::Subscribe {
            conv: conv.to_owned(),
        };
        match self.request(req, self.inner.request_timeout).await? {
            ServerFrame::Subscribed {
                conv,
                head_seq,
                epoch,
                ..
            } => Ok(Subscribed {
                conv: conv.to_string(),
                head_seq,
                epoch,
            }),
            other => Err(unexpected("subscribe", &other)),
        }
    }

    /// Ends the subscription to `conv` and forgets its position.
    pub async fn unsubscribe(&self, conv: &str) -> Result<(), ClientError> {
        let req = Request::Unsubscribe {
            conv: conv.to_owned(),
        };
        self.request(req, self.inner.request_timeout).await?;
        Ok(())
    }

    /// Publishes `body` to `conv` (a room, or `user:<id>` for a direct message) with a fresh
    /// `client_msg_id`. If the connection drops before the answer, the same publish (same
    /// `client_msg_id`) is sent again after the reconnect, so it is stored once. Gives up after
    /// `3 × request_timeout` with [`ClientError::Timeout`] (the message may then be stored or
    /// not; [`Client::publish_with_id`] with the same id settles it).
    pub async fn publish(&self, conv: &str, body: Value) -> Result<Receipt, ClientError> {
        let id = switchboard_proto::ids::new_id("c");
        self.publish_with_id(conv, body, &id).await
    }

    /// [`Client::publish`] with the application's own idempotency key (1 to 128 bytes; unique
    /// per logical message for this user).
    pub async fn publish_with_id(
        &self,
        conv: &str,
        body: Value,
        client_msg_id: &str,
    ) -> Result<Receipt, ClientError> {
        let req = Request::Publish {
            conv: conv.to_owned(),
            body,
            client_msg_id: client_msg_id.to_owned(),
        };
        let within = self.inner.request_timeout.saturating_mul(3);
        match self.request(req, within).await? {
            ServerFrame::Published {
                conv,
                seq,
                message_id,
                ts,
                ..
            } => Ok(Receipt {
                conv: conv.to_string(),
                seq,
                message_id,
                ts,
                client_msg_id: client_msg_id.to_owned(),
            }),
            other => Err(unexpected("publish", &other)),
        }
    }

    /// Reads stored messages of `conv`, ascending: `after` gives those with a larger seq,
    /// `before` those just below it, neither the latest; `limit` defaults to 50 (at most 500).
    /// A reply the server cut short by its byte cap (`more`) is continued from where it ends,
    /// so the answer has `limit` messages unless history has fewer.
    pub async fn history(
        &self,
        conv: &str,
        after: Option<u64>,
        before: Option<u64>,
        limit: Option<u32>,
    ) -> Result<Vec<Message>, ClientError> {
        let want = limit.unwrap_or(50).clamp(1, 500) as usize;
        // Ascending from `after` (continue after the last one), or backwards from `before` or
        // the newest (continue before the first one).
        let forward = after.is_some();
        let (mut after, mut before) = (after, before);
        let mut got: Vec<Message> = Vec::new();
        loop {
            let req = Request::History {
                conv: conv.to_owned(),
                after,
                before,
                limit: Some((want - got.len()) as u32),
            };
            let (page, more) = match self.request(req, self.inner.request_timeout).await? {
                ServerFrame::History { messages, more, .. } => (
                    messages
                        .iter()
                        .map(|m| Message::from_wire(m))
                        .collect::<Result<Vec<_>, _>>()
                        .map_err(|e| ClientError::Protocol(format!("history: {e}")))?,
                    more,
                ),
                other => return Err(unexpected("history", &other)),
            };
            let (first, last) = (page.first().map(|m| m.seq), page.last().map(|m| m.seq));
            if forward {
                got.extend(page);
            } else {
                got.splice(0..0, page);
            }
            match (more, first, last) {
                (true, Some(first), Some(last)) if got.len() < want => {
                    if forward {
                        after = Some(last);
                    } else {
                        before = Some(first);
                    }
                }
                _ => return Ok(got),
            }
        }
    }

    /// Who is subscribed to a room (or, for `user:<own id>`, the own live connections).
    pub async fn presence(&self, conv: &str) -> Result<Vec<PresenceEntry>, ClientError> {
        let req = Request::Presence {
            conv: conv.to_owned(),
        };
        match self.request(req, self.inner.request_timeout).await? {
            ServerFrame::Presence { users, .. } => Ok(users),
            other => Err(unexpected("presence", &other)),
        }
    }

    /// The position of a subscribed conversation: its epoch and the last seq delivered to the
    /// application (`None` when it is not subscribed).
    pub fn position(&self, conv: &str) -> Option<(String, u64)> {
        lock(&self.inner.shared).tracker.position(conv)
    }

    /// The node currently connected to (`None` while reconnecting).
    pub fn node_id(&self) -> Option<String> {
        lock(&self.inner.shared).node_id.clone()
    }

    /// The authenticated user.
    pub fn user_id(&self) -> Option<String> {
        lock(&self.inner.shared).user_id.clone()
    }

    /// Closes the connection (and every clone of this client), fails pending requests with
    /// [`ClientError::Closed`], and ends the event stream.
    pub async fn close(self) {
        let (done, rx) = oneshot::channel();
        let polite = async {
            if self.inner.cmds.send(Cmd::Close { done }).await.is_ok() {
                let _ = rx.await;
            }
        };
        let _ = tokio::time::timeout(Duration::from_secs(5), polite).await;
        let task = self
            .inner
            .task
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .take();
        if let Some(mut t) = task
            && tokio::time::timeout(Duration::from_secs(2), &mut t)
                .await
                .is_err()
        {
            // Stuck, e.g. waiting for room in an event stream nobody reads: stop it.
            t.abort();
        }
    }
}

/// An answer of the wrong frame type (the server and this client disagree on the protocol).
fn unexpected(request: &str, answer: &ServerFrame) -> ClientError {
    ClientError::Protocol(format!("{request} answered with {answer:?}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn handles_are_send_and_sync() {
        fn send_sync<T: Send + Sync>() {}
        fn send<T: Send>() {}
        send_sync::<Client>();
        send_sync::<ClientConfig>();
        send::<Events>();
        send_sync::<ClientError>();
    }

    #[tokio::test]
    async fn bad_configurations_are_refused_before_connecting() {
        let e = Client::connect(ClientConfig::new("127.0.0.1:7700", "t"))
            .await
            .unwrap_err();
        assert!(matches!(e, ClientError::Config(_)), "{e:?}");
        let e = Client::connect(ClientConfig::new("http://127.0.0.1:7700", ""))
            .await
            .unwrap_err();
        assert!(matches!(e, ClientError::Config(_)), "{e:?}");
    }

    #[tokio::test]
    async fn an_unreachable_dispatcher_fails_connect_with_the_last_error() {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let mut c = ClientConfig::new(format!("http://127.0.0.1:{port}"), "t");
        c.request_timeout = Duration::from_millis(200);
        c.backoff_base = Duration::from_millis(10);
        match Client::connect(c).await {
            Err(ClientError::Unreachable(e)) => assert!(e.contains("dispatch"), "{e}"),
            other => panic!("{other:?}"),
        }
    }
}
