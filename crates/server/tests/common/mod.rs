//! Test fixtures: nodes started in-process on port 0 (or as real `switchboard` processes when a
//! test kills them), an HTTP helper, and a WebSocket client over a real socket; and the same
//! router called in-process ([`InProcess`]) for request/response checks.
#![allow(dead_code, missing_docs)]

mod checks;
mod inprocess;
pub mod tls;
// Not every test binary uses them all.
#[allow(unused_imports)]
pub use checks::{assert_error, eventually, ids, now_ms, seqs};
#[allow(unused_imports)]
pub use inprocess::InProcess;

use futures_util::{SinkExt, StreamExt};
use serde_json::{Value, json};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;
use switchboard_server::config::ServeArgs;
use switchboard_server::{RunningServer, ServerConfig};
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::Message as WsMessage;
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};

pub const API_KEY: &str = "test-api-key";
pub const PASSWORD: &str = "correct horse";
/// Upper bound on waiting for any single expected event.
pub const WAIT: Duration = Duration::from_secs(10);

/// A node running inside the test process.
pub struct TestNode {
    pub server: Option<RunningServer>,
    pub addr: SocketAddr,
    pub dir: tempfile::TempDir,
    pub http: Http,
}

/// A default configuration for tests: port 0, a fresh data dir, the test API key.
pub fn test_config(dir: &Path) -> ServerConfig {
    let mut c = ServeArgs {
        listen: Some("127.0.0.1:0".into()),
        tcp_listen: Some("127.0.0.1:0".into()),
        data_dir: Some(dir.to_path_buf()),
        api_key: Some(API_KEY.into()),
        shutdown_timeout_ms: Some(5_000),
        reconnect_jitter_ms: Some(200),
        // Every test registers and logs in its users from 127.0.0.1, many a second: the
        // per-address limits are off here (the abuse tests turn them on).
        register_per_ip_per_min: Some(0),
        login_per_ip_per_min: Some(0),
        ..Default::default()
    }
    .resolve()
    .expect("test config");
    c.node_id = "n_test".into();
    c
}

impl TestNode {
    pub async fn start() -> TestNode {
        TestNode::start_with(|_| {}).await
    }

    /// Starts a node after `tweak` adjusts the configuration.
    pub async fn start_with(tweak: impl FnOnce(&mut ServerConfig)) -> TestNode {
        let dir = tempfile::tempdir().expect("tempdir");
        TestNode::start_in(dir, tweak).await
    }

    /// Starts a node on an existing data dir (restart tests).
    pub async fn start_in(
        dir: tempfile::TempDir,
        tweak: impl FnOnce(&mut ServerConfig),
    ) -> TestNode {
        let mut c = test_config(dir.path());
        tweak(&mut c);
        let server = switchboard_server::start(c).await.expect("node starts");
        let addr = server.addr;
        TestNode {
            server: Some(server),
            addr,
            dir,
            http: Http::new(addr),
        }
    }

    /// Graceful shutdown; returns the data dir for a restart.
    pub async fn stop(mut self) -> tempfile::TempDir {
        if let Some(s) = self.server.take() {
            s.shutdown().await;
        }
        self.dir
    }

    pub fn ws_url(&self) -> String {
        format!("ws://{}/v1/ws", self.addr)
    }

    /// Registers and logs in a user; returns (user_id, token).
    pub async fn user(&self, name: &str) -> (String, String) {
        self.http.user(name).await
    }

    /// The TCP transport's address.
    pub fn tcp_addr(&self) -> SocketAddr {
        self.server
            .as_ref()
            .and_then(|s| s.tcp_addr)
            .expect("the TCP transport is on")
    }

    /// Connects and authenticates with an `auth` frame; returns the client after `welcome`.
    pub async fn connect(&self, token: &str) -> WsClient {
        let mut c = WsClient::connect(&self.ws_url()).await;
        c.send(json!({"type": "auth", "id": "auth", "token": token}))
            .await;
        let w = c.expect("welcome").await;
        assert_eq!(w["id"], "auth");
        c
    }

    pub fn metric(&self, text: &str, name: &str) -> f64 {
        metric(text, name)
    }
}

/// Reads one sample's value from Prometheus text.
pub fn metric(text: &str, name: &str) -> f64 {
    text.lines()
        .find_map(|l| {
            l.strip_prefix(name)
                .and_then(|rest| rest.strip_prefix(' '))
                .map(|v| v.trim().parse().unwrap_or(f64::NAN))
        })
        .unwrap_or_else(|| panic!("metric {name} not found"))
}

/// A tiny JSON-over-HTTP client bound to one node.
#[derive(Clone)]
pub struct Http {
    pub base: String,
    pub client: reqwest::Client,
}

impl Http {
    pub fn new(addr: SocketAddr) -> Http {
        Http {
            base: format!("http://{addr}"),
            client: reqwest::Client::new(),
        }
    }
}

impl JsonApi for Http {
    async fn call(
        &self,
        method: &str,
        path: &str,
        token: Option<&str>,
        body: Option<Value>,
    ) -> (u16, Value) {
        let method = reqwest::Method::from_bytes(method.as_bytes()).unwrap();
        let mut req = self.client.request(method, format!("{}{path}", self.base));
        if let Some(t) = token {
            req = req.bearer_auth(t);
        }
        if let Some(b) = body {
            req = req.json(&b);
        }
        let resp = req.send().await.expect("HTTP request");
        let status = resp.status().as_u16();
        let text = resp.text().await.unwrap_or_default();
        (status, serde_json::from_str(&text).unwrap_or(Value::Null))
    }

    async fn server(&self, path: &str, body: Value) -> (u16, Value) {
        let resp = self
            .client
            .post(format!("{}{path}", self.base))
            .header("x-api-key", API_KEY)
            .json(&body)
            .send()
            .await
            .expect("HTTP request");
        let status = resp.status().as_u16();
        let text = resp.text().await.unwrap_or_default();
        (status, serde_json::from_str(&text).unwrap_or(Value::Null))
    }
}

/// JSON requests to one node's HTTP API, over a socket ([`Http`]) or in-process
/// ([`InProcess`]); the provided methods build on `call` and `server`.
#[allow(async_fn_in_trait)]
pub trait JsonApi {
    /// Sends a request; returns (status, JSON body or Null).
    async fn call(
        &self,
        method: &str,
        path: &str,
        token: Option<&str>,
        body: Option<Value>,
    ) -> (u16, Value);

    /// Server API call with the test key.
    async fn server(&self, path: &str, body: Value) -> (u16, Value);

    async fn get(&self, path: &str, token: &str) -> (u16, Value) {
        self.call("GET", path, Some(token), None).await
    }

    async fn post(&self, path: &str, token: &str, body: Value) -> (u16, Value) {
        self.call("POST", path, Some(token), Some(body)).await
    }

    async fn user(&self, name: &str) -> (String, String) {
        let creds = json!({"username": name, "password": PASSWORD});
        let (s, v) = self
            .call("POST", "/v1/users", None, Some(creds.clone()))
            .await;
        assert!(s == 201 || s == 409, "register {name}: {s} {v}");
        let (s, v) = self.call("POST", "/v1/sessions", None, Some(creds)).await;
        assert_eq!(s, 201, "login {name}: {v}");
        (
            v["user_id"].as_str().unwrap().to_owned(),
            v["token"].as_str().unwrap().to_owned(),
        )
    }

    /// Creates a room owned by the token's user; returns its id.
    async fn room(&self, token: &str, name: &str, visibility: &str) -> String {
        let (s, v) = self
            .post(
                "/v1/rooms",
                token,
                json!({"name": name, "visibility": visibility}),
            )
            .await;
        assert_eq!(s, 201, "{v}");
        v["room_id"].as_str().unwrap().to_owned()
    }

    /// Publishes a room message over HTTP; returns its seq.
    async fn publish(&self, token: &str, room: &str, body: Value) -> u64 {
        let (s, v) = self
            .post(
                &format!("/v1/rooms/{room}/messages"),
                token,
                json!({"body": body}),
            )
            .await;
        assert_eq!(s, 201, "{v}");
        v["seq"].as_u64().unwrap()
    }
}

/// What every test client can do, whatever its transport. The provided methods build on
/// `send` and `next_within`, so a scenario is written once and run over every transport.
#[allow(async_fn_in_trait)]
pub trait Client {
    /// Sends one JSON frame.
    async fn send(&mut self, frame: Value);
    /// Sends raw text as one frame (for malformed-input tests).
    async fn send_raw(&mut self, text: &str);
    /// The next JSON frame within `d`: `Err` on timeout, `Ok(None)` on close. Transport-level
    /// heartbeats are answered and skipped.
    async fn next_within(&mut self, d: Duration) -> Result<Option<Value>, ()>;

    /// The next JSON frame, or `None` when the connection closed. Panics after [`WAIT`].
    async fn next(&mut self) -> Option<Value> {
        self.next_within(WAIT)
            .await
            .expect("timed out waiting for a frame")
    }

    /// Waits for a frame of `kind`, skipping others; panics if the connection closes first.
    async fn expect(&mut self, kind: &str) -> Value {
        loop {
            match self.next().await {
                Some(v) if v["type"] == kind => return v,
                Some(_) => continue,
                None => panic!("connection closed while waiting for {kind}"),
            }
        }
    }

    /// Sends a request and waits for the reply with the same id (skipping message frames).
    async fn request(&mut self, mut frame: Value, id: u64) -> Value {
        frame["id"] = json!(id);
        self.send(frame).await;
        loop {
            let v = self
                .next()
                .await
                .expect("connection closed before the reply");
            if v["id"] == json!(id) {
                return v;
            }
        }
    }

    /// Collects `message` frames of `conv` until `n` have arrived.
    async fn messages(&mut self, conv: &str, n: usize) -> Vec<Value> {
        let mut out = Vec::new();
        while out.len() < n {
            let v = self
                .next()
                .await
                .unwrap_or_else(|| panic!("closed after {} of {n} messages", out.len()));
            if v["type"] == "message" && v["conv"] == conv {
                out.push(v);
            }
        }
        out
    }

    /// Waits until the server closes the connection; returns the frames seen before.
    async fn until_closed(&mut self) -> Vec<Value> {
        let mut seen = Vec::new();
        while let Some(v) = self.next().await {
            seen.push(v);
        }
        seen
    }
}

/// A WebSocket client speaking JSON frames.
pub struct WsClient {
    pub ws: WebSocketStream<MaybeTlsStream<TcpStream>>,
}

impl WsClient {
    pub async fn connect(url: &str) -> WsClient {
        let (ws, _) = tokio_tungstenite::connect_async(url)
            .await
            .expect("WebSocket connect");
        WsClient { ws }
    }
}

impl Client for WsClient {
    async fn send(&mut self, frame: Value) {
        self.ws
            .send(WsMessage::text(frame.to_string()))
            .await
            .expect("send");
    }

    async fn send_raw(&mut self, text: &str) {
        self.ws
            .send(WsMessage::text(text.to_owned()))
            .await
            .expect("send");
    }

    async fn next_within(&mut self, d: Duration) -> Result<Option<Value>, ()> {
        let deadline = tokio::time::Instant::now() + d;
        loop {
            let msg = tokio::time::timeout_at(deadline, self.ws.next())
                .await
                .map_err(|_| ())?;
            match msg {
                None | Some(Err(_)) => return Ok(None),
                Some(Ok(WsMessage::Text(t))) => {
                    return Ok(Some(serde_json::from_str(&t).expect("server sent JSON")));
                }
                Some(Ok(WsMessage::Close(_))) => return Ok(None),
                Some(Ok(_)) => continue,
            }
        }
    }
}

/// A raw TCP client: 4-byte big-endian length, then the JSON frame. It answers the server's
/// `ping` frames with `pong` unless `answer_pings` is turned off.
pub struct TcpClient {
    pub stream: TcpStream,
    buf: Vec<u8>,
    pub answer_pings: bool,
}

impl TcpClient {
    pub async fn connect(addr: SocketAddr) -> TcpClient {
        let stream = TcpStream::connect(addr).await.expect("TCP connect");
        TcpClient {
            stream,
            buf: Vec::new(),
            answer_pings: true,
        }
    }

    /// Writes raw bytes (for framing tests).
    pub async fn write_bytes(&mut self, bytes: &[u8]) -> std::io::Result<()> {
        use tokio::io::AsyncWriteExt;
        self.stream.write_all(bytes).await
    }

    async fn write_frame(&mut self, payload: &[u8]) {
        let mut out = (payload.len() as u32).to_be_bytes().to_vec();
        out.extend_from_slice(payload);
        let _ = self.write_bytes(&out).await;
    }
}

impl Client for TcpClient {
    async fn send(&mut self, frame: Value) {
        self.write_frame(frame.to_string().as_bytes()).await;
    }

    async fn send_raw(&mut self, text: &str) {
        self.write_frame(text.as_bytes()).await;
    }

    async fn next_within(&mut self, d: Duration) -> Result<Option<Value>, ()> {
        use tokio::io::AsyncReadExt;
        let deadline = tokio::time::Instant::now() + d;
        loop {
            if self.buf.len() >= 4 {
                let len = u32::from_be_bytes([self.buf[0], self.buf[1], self.buf[2], self.buf[3]])
                    as usize;
                if self.buf.len() >= 4 + len {
                    let frame: Vec<u8> = self.buf.drain(..4 + len).skip(4).collect();
                    let v: Value = serde_json::from_slice(&frame).expect("server sent JSON");
                    if v["type"] == "ping" && self.answer_pings {
                        self.send(json!({"type": "pong"})).await;
                        continue;
                    }
                    return Ok(Some(v));
                }
            }
            let mut chunk = [0u8; 8192];
            let n = tokio::time::timeout_at(deadline, self.stream.read(&mut chunk))
                .await
                .map_err(|_| ())?;
            match n {
                Ok(0) | Err(_) => return Ok(None),
                Ok(n) => self.buf.extend_from_slice(&chunk[..n]),
            }
        }
    }
}

/// A `switchboard serve` child process (for SIGKILL and SIGTERM tests).
pub struct NodeProcess {
    pub child: tokio::process::Child,
    pub addr: SocketAddr,
    pub http: Http,
    /// What the node printed on stdout before its `listening on` line (warnings included).
    pub startup: Vec<String>,
}

impl NodeProcess {
    /// Starts the real binary on a free port and waits for its `listening on` line.
    pub async fn start(data_dir: &Path, extra: &[&str]) -> NodeProcess {
        let mut cmd = tokio::process::Command::new(env!("CARGO_BIN_EXE_switchboard"));
        cmd.arg("serve");
        if !extra.contains(&"--listen") {
            cmd.args(["--listen", "127.0.0.1:0"]);
        }
        if !extra.contains(&"--tcp-listen") {
            cmd.args(["--tcp-listen", "off"]);
        }
        cmd.args(["--api-key", API_KEY, "--data-dir"])
            .arg(data_dir)
            .args(extra)
            .env("RUST_LOG", "warn")
            // As in `test_config`: many registrations and logins from one address.
            .env("SWITCHBOARD_REGISTER_PER_IP_PER_MIN", "0")
            .env("SWITCHBOARD_LOGIN_PER_IP_PER_MIN", "0")
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .kill_on_drop(true);
        let mut child = cmd.spawn().expect("spawn switchboard");
        let stdout = child.stdout.take().unwrap();
        let mut lines = BufReader::new(stdout).lines();
        let mut startup = Vec::new();
        let addr = tokio::time::timeout(WAIT, async {
            while let Some(line) = lines.next_line().await.unwrap() {
                if let Some((_, rest)) = line.split_once("listening on ") {
                    let addr = rest.split_whitespace().next().unwrap();
                    return addr.parse::<SocketAddr>().unwrap();
                }
                startup.push(line);
            }
            panic!("switchboard exited before listening")
        })
        .await
        .expect("switchboard did not print `listening on` in time");
        tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });
        NodeProcess {
            child,
            addr,
            http: Http::new(addr),
            startup,
        }
    }

    pub fn ws_url(&self) -> String {
        format!("ws://{}/v1/ws", self.addr)
    }

    pub fn signal(&self, sig: &str) {
        let pid = self.child.id().expect("running").to_string();
        let ok = std::process::Command::new("kill")
            .args([format!("-{sig}"), pid])
            .status()
            .unwrap()
            .success();
        assert!(ok, "kill -{sig}");
    }

    /// Waits for exit; returns the exit code.
    pub async fn wait(&mut self, within: Duration) -> Option<i32> {
        tokio::time::timeout(within, self.child.wait())
            .await
            .expect("process did not exit in time")
            .unwrap()
            .code()
    }
}

/// A cluster-mode child on the Redis at `redis_url` with `roles`, node id `id`, a 2 s lease,
/// and `extra` arguments.
pub async fn redis_node(
    redis_url: &str,
    dir: &Path,
    roles: &str,
    id: &str,
    extra: &[&str],
) -> NodeProcess {
    let mut args = vec![
        "--roles",
        roles,
        "--redis",
        redis_url,
        "--node-id",
        id,
        "--lease-ms",
        "2000",
    ];
    args.extend_from_slice(extra);
    NodeProcess::start(dir, &args).await
}

pub fn data_path(dir: &tempfile::TempDir) -> PathBuf {
    dir.path().to_path_buf()
}

/// A long-polling client: frames go out by `POST /v1/poll/{session}`, come back by
/// `GET /v1/poll/{session}?after=N&wait_ms=W`, acknowledged by the next GET's `after`.
pub struct PollClient {
    pub http: Http,
    /// The session URL (`.../v1/poll/<session>`) the node answered.
    pub url: String,
    pub session: String,
    pub after: u64,
    pending: std::collections::VecDeque<Value>,
    closed: bool,
    pub answer_pings: bool,
}

impl PollClient {
    /// Opens a session with a bearer token (and `resume`); `Err((status, body))` when refused.
    pub async fn open(
        http: &Http,
        token: &str,
        resume: Option<Value>,
    ) -> Result<PollClient, (u16, Value)> {
        let body = resume.map(|r| json!({"resume": r}));
        let (s, v) = http.call("POST", "/v1/poll", Some(token), body).await;
        if s != 201 {
            return Err((s, v));
        }
        Ok(PollClient {
            http: http.clone(),
            url: v["poll"].as_str().unwrap().to_owned(),
            session: v["session"].as_str().unwrap().to_owned(),
            after: 0,
            pending: Default::default(),
            closed: false,
            answer_pings: true,
        })
    }

    /// Follows an existing session at `url` (e.g. the node-specific URL a `wrong_node`
    /// answer named).
    pub fn attach(http: &Http, url: &str, session: &str) -> PollClient {
        PollClient {
            http: http.clone(),
            url: url.to_owned(),
            session: session.to_owned(),
            after: 0,
            pending: Default::default(),
            closed: false,
            answer_pings: true,
        }
    }

    /// POSTs a raw body to the session; returns the status.
    pub async fn post_raw(&self, body: String) -> (u16, Value) {
        let resp = self
            .http
            .client
            .post(&self.url)
            .body(body)
            .send()
            .await
            .expect("poll POST");
        let status = resp.status().as_u16();
        (status, resp.json().await.unwrap_or(Value::Null))
    }
}

impl Client for PollClient {
    async fn send(&mut self, frame: Value) {
        let (s, v) = self.post_raw(json!([frame]).to_string()).await;
        assert!(s == 202 || s == 404, "poll POST: {s} {v}");
    }

    async fn send_raw(&mut self, text: &str) {
        let _ = self.post_raw(format!("[{text}]")).await;
    }

    async fn next_within(&mut self, d: Duration) -> Result<Option<Value>, ()> {
        let deadline = tokio::time::Instant::now() + d;
        loop {
            if let Some(v) = self.pending.pop_front() {
                return Ok(Some(v));
            }
            if self.closed {
                return Ok(None);
            }
            let left = deadline.saturating_duration_since(tokio::time::Instant::now());
            if left.is_zero() {
                return Err(());
            }
            let wait_ms = left.as_millis().min(25_000) as u64;
            let url = format!("{}?after={}&wait_ms={wait_ms}", self.url, self.after);
            let sent = tokio::time::timeout(
                left + Duration::from_secs(2),
                self.http.client.get(&url).send(),
            )
            .await
            .map_err(|_| ())?;
            // The node went away (shutdown, crash): the session is over.
            let Ok(resp) = sent else {
                self.closed = true;
                continue;
            };
            match resp.status().as_u16() {
                200 => {}
                404 => {
                    self.closed = true;
                    continue;
                }
                other => panic!("poll GET answered {other}: {:?}", resp.text().await),
            }
            let frames: Vec<Value> = resp.json().await.expect("poll GET answers a JSON array");
            for f in frames {
                let pseq = f["pseq"].as_u64().expect("every polled frame has a pseq");
                assert!(
                    pseq > self.after,
                    "frame {pseq} repeated after {}",
                    self.after
                );
                self.after = pseq;
                if f["type"] == "ping" && self.answer_pings {
                    self.send(json!({"type": "pong"})).await;
                    continue;
                }
                self.pending.push_back(f);
            }
        }
    }
}

/// The transports a scenario can run over.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Ws,
    Tcp,
    Poll,
}

/// A client of any transport.
#[allow(clippy::large_enum_variant)] // test clients; size does not matter
pub enum AnyClient {
    Ws(WsClient),
    Tcp(TcpClient),
    Poll(PollClient),
}

impl Client for AnyClient {
    async fn send(&mut self, frame: Value) {
        match self {
            AnyClient::Ws(c) => c.send(frame).await,
            AnyClient::Tcp(c) => c.send(frame).await,
            AnyClient::Poll(c) => c.send(frame).await,
        }
    }
    async fn send_raw(&mut self, text: &str) {
        match self {
            AnyClient::Ws(c) => c.send_raw(text).await,
            AnyClient::Tcp(c) => c.send_raw(text).await,
            AnyClient::Poll(c) => c.send_raw(text).await,
        }
    }
    async fn next_within(&mut self, d: Duration) -> Result<Option<Value>, ()> {
        match self {
            AnyClient::Ws(c) => c.next_within(d).await,
            AnyClient::Tcp(c) => c.next_within(d).await,
            AnyClient::Poll(c) => c.next_within(d).await,
        }
    }
}

impl TestNode {
    /// Opens an unauthenticated connection over `kind` (WebSocket or TCP: long-poll sessions
    /// are authenticated when opened).
    pub async fn open(&self, kind: Kind) -> AnyClient {
        match kind {
            Kind::Ws => AnyClient::Ws(WsClient::connect(&self.ws_url()).await),
            Kind::Tcp => AnyClient::Tcp(TcpClient::connect(self.tcp_addr()).await),
            Kind::Poll => panic!("long-poll sessions open with a token: use connect_over"),
        }
    }

    /// Connects over `kind` and authenticates (an `auth` frame, or the token that opens a
    /// long-poll session); returns the client and the `welcome` frame.
    pub async fn connect_with_welcome(&self, kind: Kind, token: &str) -> (AnyClient, Value) {
        if kind == Kind::Poll {
            let p = PollClient::open(&self.http, token, None)
                .await
                .expect("poll session opens");
            let mut c = AnyClient::Poll(p);
            let w = c.expect("welcome").await;
            return (c, w);
        }
        let mut c = self.open(kind).await;
        c.send(json!({"type": "auth", "id": "auth", "token": token}))
            .await;
        let w = c.expect("welcome").await;
        assert_eq!(w["id"], "auth");
        (c, w)
    }

    /// Connects over `kind` and authenticates.
    pub async fn connect_over(&self, kind: Kind, token: &str) -> AnyClient {
        self.connect_with_welcome(kind, token).await.0
    }
}
