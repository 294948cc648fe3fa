//! Engine.IO protocol 4 and Socket.IO protocol 5, server side, as a library with no tie to
//! Switchboard: the packet codecs are pure functions ([`engine::packet`], [`sio::packet`],
//! [`sio::binary`]); the transports (HTTP long-polling, WebSocket, the upgrade between them) and
//! the heartbeat run on tokio and are served as an axum [`Router`](axum::Router).
//!
//! The application implements a [`Namespace`] per namespace (it accepts or refuses each CONNECT
//! and gives each socket a [`SocketHandler`]) and holds [`Socket`]s to emit to.
//!
//! ```no_run
//! use async_trait::async_trait;
//! use switchboard_socketio::{Accept, Config, ConnectRequest, Event, Namespace, Refuse, Socket, SocketHandler, SocketIo};
//!
//! struct Chat;
//!
//! #[async_trait]
//! impl Namespace for Chat {
//!     async fn connect(&self, _socket: &Socket, request: ConnectRequest) -> Result<Accept, Refuse> {
//!         match request.auth_value() {
//!             Some(auth) if auth.get("token").is_some() => Ok(Accept::new(Echo)),
//!             _ => Err(Refuse::message("unauthorized")),
//!         }
//!     }
//! }
//!
//! struct Echo;
//!
//! #[async_trait]
//! impl SocketHandler for Echo {
//!     async fn event(&self, socket: &Socket, event: Event) {
//!         match event.ack {
//!             // `io.emit("hello", 1, "two", ack)` is answered with the same arguments.
//!             Some(ack) => { let _ = ack.send_binary(&event.args, event.attachments); }
//!             None => { let _ = socket.emit_binary("hello-back", &event.args, event.attachments); }
//!         }
//!     }
//! }
//!
//! # async fn run() -> std::io::Result<()> {
//! let io = SocketIo::builder(Config::default()).namespace("/", Chat).build();
//! let listener = tokio::net::TcpListener::bind("127.0.0.1:3000").await?;
//! // Or `axum::serve`: WebSocket frames are then all written by each session's task.
//! switchboard_socketio::serve(listener, io.router()).await
//! # }
//! ```
//!
//! Served by [`serve`] (hyper on each plain `TcpStream`), a WebSocket session runs on its
//! socket, and an emit to a socket with nothing queued writes its frame at once, from the
//! caller's thread, without waking the session's task (a fan-out to many sockets costs one
//! `sendmsg` each). A server that wraps its streams says how to unwrap them
//! ([`engine::Hooks::take_socket`]).
//!
//! Every input is bounded ([`Config`]): `maxPayload` on POST bodies and WebSocket messages, the
//! packets per POST, the queue of packets per session (a client that does not read is closed
//! with [`DisconnectReason::QueueFull`], not buffered), binary attachments per packet, JSON
//! depth, namespaces per session. A malformed packet closes its session; nothing panics.

mod config;
pub mod engine;
mod reason;
mod serve;
pub mod sio;

pub use config::Config;
pub use reason::DisconnectReason;
pub use serve::{ServeOptions, serve, serve_with};
pub use sio::{
    Accept, AckError, AckResponse, AckSender, Builder, ConnectRequest, EmitError, EncodedPacket,
    Event, EventHead, Namespace, Refuse, Socket, SocketHandler, SocketIo,
};
