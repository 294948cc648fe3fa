//! The server the official test suites of socket.io-protocol and engine.io-protocol expect,
//! built only on this crate: Socket.IO at `/socket.io/` (namespaces `/` and `/custom`; every
//! connect first emits `auth` with the CONNECT payload; on `/`, `message` comes back as
//! `message-back` and `message-with-ack` is acknowledged with its arguments, binary too) and a
//! bare Engine.IO echo at `/engine.io/`.
//!
//! `cargo run --release -p switchboard-socketio --example protocol-suite -- --listen 127.0.0.1:3000`

use std::net::SocketAddr;
use std::time::Duration;

use async_trait::async_trait;
use clap::Parser;
use switchboard_socketio::engine::{
    EngineConn, EngineHandler, EngineIo, Hooks, Message, RequestInfo, SessionHandler,
};
use switchboard_socketio::{
    Accept, Config, ConnectRequest, DisconnectReason, Event, Namespace, Refuse, Socket,
    SocketHandler, SocketIo,
};

#[derive(Parser)]
struct Args {
    /// The address to listen on.
    #[arg(long, default_value = "127.0.0.1:3000")]
    listen: SocketAddr,
    /// Overrides the suites' ping interval (e.g. to measure idle connections).
    #[arg(long, default_value_t = 300)]
    ping_interval_ms: u64,
}

/// Accepts every CONNECT; `echo` says whether the namespace echoes `message` events.
struct Suite {
    echo: bool,
}

#[async_trait]
impl Namespace for Suite {
    async fn connect(&self, _socket: &Socket, request: ConnectRequest) -> Result<Accept, Refuse> {
        let auth = request
            .auth
            .map(|a| a.get().to_owned())
            .unwrap_or_else(|| "{}".to_owned());
        Ok(Accept::new(Sock {
            echo: self.echo,
            auth,
        }))
    }
}

struct Sock {
    echo: bool,
    /// The CONNECT payload, emitted back as `auth` once connected.
    auth: String,
}

#[async_trait]
impl SocketHandler for Sock {
    async fn connected(&self, socket: &Socket) {
        let auth: Box<serde_json::value::RawValue> =
            serde_json::value::RawValue::from_string(self.auth.clone())
                .expect("the CONNECT payload is JSON");
        let _ = socket.emit("auth", [auth]);
    }

    async fn event(&self, socket: &Socket, event: Event) {
        if !self.echo {
            return;
        }
        match (event.name.as_str(), event.ack) {
            ("message", _) => {
                let _ = socket.emit_binary("message-back", &event.args, event.attachments);
            }
            ("message-with-ack", Some(ack)) => {
                let _ = ack.send_binary(&event.args, event.attachments);
            }
            _ => {}
        }
    }
}

/// The bare Engine.IO endpoint: every message goes back to its sender.
struct Echo;

impl EngineHandler for Echo {
    fn open(&self, conn: EngineConn, _request: RequestInfo) -> Box<dyn SessionHandler> {
        Box::new(EchoSession(conn))
    }
}

struct EchoSession(EngineConn);

#[async_trait]
impl SessionHandler for EchoSession {
    async fn message(&mut self, message: Message) -> Result<(), DisconnectReason> {
        let _ = match message {
            Message::Text(text) => self.0.send_text(&text),
            Message::Binary(data) => self.0.send_binary(data),
        };
        Ok(())
    }

    async fn close(&mut self, _reason: DisconnectReason) {}
}

/// The settings the suites expect.
fn config(ping_interval_ms: u64) -> Config {
    Config {
        ping_interval: Duration::from_millis(ping_interval_ms),
        ping_timeout: Duration::from_millis(200),
        max_payload: 1_000_000,
        connect_timeout: Duration::from_millis(1_000),
        ..Config::default()
    }
}

#[tokio::main]
async fn main() -> std::io::Result<()> {
    let args = Args::parse();
    let io = SocketIo::builder(config(args.ping_interval_ms))
        .namespace("/", Suite { echo: true })
        .namespace("/custom", Suite { echo: false })
        .build();
    let engine = EngineIo::new(config(args.ping_interval_ms), Echo, Hooks::default());
    let app = io.router().merge(engine.router("/engine.io/"));
    let listener = tokio::net::TcpListener::bind(args.listen).await?;
    println!("listening on {}", listener.local_addr()?);
    // Nagle on: the suites' client takes only the first frame of each TCP read, and the
    // CONNECT answer and the `auth` event are written back to back (see `ServeOptions`).
    let options = switchboard_socketio::ServeOptions { nodelay: false };
    switchboard_socketio::serve_with(listener, app, options).await
}
