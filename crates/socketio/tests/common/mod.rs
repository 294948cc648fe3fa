//! The test harness: a Socket.IO server on 127.0.0.1 port 0 with recording handlers, and real
//! clients (HTTP long-polling with reqwest, WebSocket with tokio-tungstenite).
#![allow(dead_code)]

use std::net::SocketAddr;
use std::time::Duration;

use async_trait::async_trait;
use futures_util::{SinkExt, StreamExt};
use serde_json::json;
use switchboard_socketio::{
    Accept, Config, ConnectRequest, DisconnectReason, Event, Namespace, Refuse, Socket,
    SocketHandler, SocketIo,
};
use tokio::net::TcpStream;
use tokio::sync::mpsc;
use tokio_tungstenite::tungstenite::Message as WsMessage;
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};

/// What the server's handlers saw, in order.
#[derive(Debug)]
pub enum Seen {
    Connected(Socket, Option<serde_json::Value>),
    Event(String, Vec<String>, usize),
    Disconnected(DisconnectReason),
}

/// A running server.
pub struct Server {
    pub addr: SocketAddr,
    pub io: SocketIo,
    pub seen: mpsc::UnboundedReceiver<Seen>,
}

impl Server {
    pub fn url(&self, query: &str) -> String {
        format!("http://{}/socket.io/?EIO=4&{query}", self.addr)
    }

    pub fn ws_url(&self, query: &str) -> String {
        format!("ws://{}/socket.io/?EIO=4&{query}", self.addr)
    }

    /// The next thing the handlers saw (waits at most 5 s).
    pub async fn next_seen(&mut self) -> Seen {
        tokio::time::timeout(Duration::from_secs(5), self.seen.recv())
            .await
            .expect("the server saw nothing within 5 s")
            .expect("server gone")
    }

    /// Waits for the next socket end, skipping anything else.
    pub async fn next_disconnect(&mut self) -> DisconnectReason {
        loop {
            if let Seen::Disconnected(reason) = self.next_seen().await {
                return reason;
            }
        }
    }

    /// Waits for the next connected socket, skipping anything else.
    pub async fn next_socket(&mut self) -> Socket {
        loop {
            if let Seen::Connected(socket, _) = self.next_seen().await {
                return socket;
            }
        }
    }
}

struct TestNamespace(mpsc::UnboundedSender<Seen>);

#[async_trait]
impl Namespace for TestNamespace {
    async fn connect(&self, socket: &Socket, request: ConnectRequest) -> Result<Accept, Refuse> {
        let auth = request.auth_value();
        if auth.as_ref().and_then(|a| a.get("refuse")).is_some() {
            return Err(Refuse(
                json!({"message": "refused", "data": {"code": "unauthorized"}}),
            ));
        }
        let mut accept = Accept::new(Handler(self.0.clone()));
        if let Some(pid) = auth.as_ref().and_then(|a| a.get("pid")) {
            accept = accept.with_reply(json!({"sid": socket.id(), "pid": pid}));
        }
        // The handshake request as the namespace sees it (`Config::keep_handshake`).
        if auth.as_ref().and_then(|a| a.get("request")).is_some() {
            let host = request.request.headers.get("host").map(|h| h.to_str().ok());
            let uri = request.request.uri.to_string();
            accept = accept.with_reply(json!({"uri": uri, "host": host}));
        }
        let _ = self.0.send(Seen::Connected(socket.clone(), auth));
        Ok(accept)
    }
}

struct Handler(mpsc::UnboundedSender<Seen>);

#[async_trait]
impl SocketHandler for Handler {
    async fn event(&self, socket: &Socket, event: Event) {
        let args = event.args.iter().map(|a| a.get().to_owned()).collect();
        let _ = self.0.send(Seen::Event(
            event.name.clone(),
            args,
            event.attachments.len(),
        ));
        match (event.name.as_str(), event.ack) {
            ("echo", _) => {
                let _ = socket.emit_binary("echo-back", &event.args, event.attachments);
            }
            ("ack", Some(ack)) => {
                let _ = ack.send_binary(&event.args, event.attachments);
            }
            ("ack-json", Some(ack)) => {
                let _ = ack.send_json(r#"["raw",1]"#);
            }
            ("slow", _) => tokio::time::sleep(Duration::from_millis(200)).await,
            _ => {}
        }
    }

    fn disconnect(&self, _socket: &Socket, reason: DisconnectReason) {
        let _ = self.0.send(Seen::Disconnected(reason));
    }
}

/// Settings with a slow heartbeat (tests that need a fast one set it).
pub fn config() -> Config {
    Config {
        ping_interval: Duration::from_secs(20),
        ping_timeout: Duration::from_secs(20),
        max_payload: 10_000,
        ..Config::default()
    }
}

/// Starts a server with namespaces `/` and `/other`.
pub async fn start(config: Config) -> Server {
    start_with(SocketIo::builder(config)).await
}

/// Starts a server from a builder (namespaces `/` and `/other` added), served by the
/// library's `serve` (WebSockets on their plain sockets, written directly).
pub async fn start_with(builder: switchboard_socketio::Builder) -> Server {
    start_served(builder, false).await
}

/// The same served by `axum::serve`: WebSockets on hyper's upgraded connections, every frame
/// written by the session's task.
pub async fn start_axum(builder: switchboard_socketio::Builder) -> Server {
    start_served(builder, true).await
}

async fn start_served(builder: switchboard_socketio::Builder, axum: bool) -> Server {
    let (tx, seen) = mpsc::unbounded_channel();
    let io = builder
        .namespace("/", TestNamespace(tx.clone()))
        .namespace("/other", TestNamespace(tx))
        .build();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let app = io.router();
    if axum {
        tokio::spawn(async move {
            axum::serve(
                listener,
                app.into_make_service_with_connect_info::<SocketAddr>(),
            )
            .await
        });
    } else {
        tokio::spawn(switchboard_socketio::serve(listener, app));
    }
    Server { addr, io, seen }
}

/// A long-polling client.
pub struct Poll {
    pub http: reqwest::Client,
    pub base: String,
    pub sid: String,
}

impl Poll {
    /// Opens a session; returns the client and the open packet's JSON.
    pub async fn open(server: &Server) -> (Poll, serde_json::Value) {
        let http = reqwest::Client::new();
        let body = http
            .get(server.url("transport=polling"))
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap();
        assert!(body.starts_with('0'), "{body}");
        let open: serde_json::Value = serde_json::from_str(&body[1..]).unwrap();
        let sid = open["sid"].as_str().unwrap().to_owned();
        (
            Poll {
                http,
                base: server.url("transport=polling"),
                sid,
            },
            open,
        )
    }

    pub fn url(&self) -> String {
        format!("{}&sid={}", self.base, self.sid)
    }

    /// Opens a session and connects it to `/`; returns the client and the server's socket.
    pub async fn connected(server: &mut Server) -> (Poll, Socket) {
        let (poll, _) = Poll::open(server).await;
        poll.post("40").await;
        poll.get().await;
        loop {
            let socket = server.next_socket().await;
            if socket.conn().sid() == poll.sid {
                return (poll, socket);
            }
        }
    }

    /// Starts a GET that waits (its body when it ends), and gives it time to reach the server.
    pub async fn pending_get(&self) -> tokio::task::JoinHandle<String> {
        let (http, url) = (self.http.clone(), self.url());
        let pending =
            tokio::spawn(async move { http.get(url).send().await.unwrap().text().await.unwrap() });
        tokio::time::sleep(Duration::from_millis(50)).await;
        pending
    }

    pub async fn get(&self) -> (u16, String) {
        let response =
            tokio::time::timeout(Duration::from_secs(5), self.http.get(self.url()).send())
                .await
                .expect("poll within 5 s")
                .unwrap();
        (response.status().as_u16(), response.text().await.unwrap())
    }

    pub async fn post(&self, body: impl Into<reqwest::Body>) -> (u16, String) {
        let response = self.http.post(self.url()).body(body).send().await.unwrap();
        (response.status().as_u16(), response.text().await.unwrap())
    }
}

pub type Ws = WebSocketStream<MaybeTlsStream<TcpStream>>;

/// Opens a WebSocket (to `url`), panicking on a refused handshake.
pub async fn ws_connect(url: &str) -> Ws {
    tokio_tungstenite::connect_async(url)
        .await
        .expect("WebSocket handshake")
        .0
}

/// The next frame that is not a ping (`2`), or `None` when the socket closed (waits at most 5 s).
pub async fn ws_next(ws: &mut Ws) -> Option<WsMessage> {
    loop {
        let message = tokio::time::timeout(Duration::from_secs(5), ws.next())
            .await
            .expect("a frame within 5 s");
        match message {
            Some(Ok(WsMessage::Text(t))) if t.as_str() == "2" => continue,
            Some(Ok(WsMessage::Close(_))) | None | Some(Err(_)) => return None,
            Some(Ok(m)) => return Some(m),
        }
    }
}

/// The next text frame (not a ping); panics on anything else.
pub async fn ws_text(ws: &mut Ws) -> String {
    match ws_next(ws).await {
        Some(WsMessage::Text(t)) => t.as_str().to_owned(),
        other => panic!("expected a text frame, got {other:?}"),
    }
}

pub async fn ws_send(ws: &mut Ws, text: &str) {
    ws.send(WsMessage::Text(text.into())).await.unwrap();
}

/// Whether the server closes the WebSocket (within 5 s), skipping other frames.
pub async fn ws_closed(ws: &mut Ws) -> bool {
    while ws_next(ws).await.is_some() {}
    true
}

/// A WebSocket session connected to namespace `/`; returns it with its CONNECT reply's text.
pub async fn ws_session(server: &Server) -> (Ws, String) {
    let mut ws = ws_connect(&server.ws_url("transport=websocket")).await;
    assert!(ws_text(&mut ws).await.starts_with('0'));
    ws_send(&mut ws, "40").await;
    let reply = ws_text(&mut ws).await;
    (ws, reply)
}
