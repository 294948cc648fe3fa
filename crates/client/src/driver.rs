//! The background task that owns the live connection: dispatch, connect, authenticate with
//! resume, route replies to waiting requests, feed messages through the tracker, and start over
//! on any failure.

use crate::dispatch::{Backoff, BackoffHint, DispatchError, Placement, dispatch, jitter};
use crate::link::{Incoming, Link, OpenError, open_poll, open_tcp, open_ws};
use crate::tracker::{Action, FILL_PAGE};
use crate::{
    ClientConfig, ClientError, Cmd, Event, Message, Request, Shared, Transport, TransportChoice,
    lock,
};
use serde::Deserialize;
use serde_json::{Value, json};
use std::collections::{BTreeMap, VecDeque};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::{mpsc, oneshot};
use tokio::time::Instant;

/// Disconnect reasons after which reconnecting cannot help.
const FINAL_REASONS: [&str; 3] = ["logged_out", "kicked", "auth_expired"];

/// Who waits for a request's answer.
enum Waiter {
    /// The application.
    App(oneshot::Sender<Result<Value, ClientError>>),
    /// The first connection's subscription of the own stream (`connect` returns after it).
    Setup,
    /// A gap fill of this conversation.
    Fill(String),
    /// Nobody (an internal request whose answer does not matter).
    Nobody,
}

struct Pending {
    req: Request,
    waiter: Waiter,
}

impl Pending {
    fn abandoned(&self) -> bool {
        matches!(&self.waiter, Waiter::App(tx) if tx.is_closed())
    }
}

impl Request {
    fn frame(&self, id: u64) -> Value {
        match self {
            Request::Subscribe { conv } => json!({"type": "subscribe", "id": id, "conv": conv}),
            Request::Unsubscribe { conv } => {
                json!({"type": "unsubscribe", "id": id, "conv": conv})
            }
            Request::Publish {
                conv,
                body,
                client_msg_id,
            } => json!({"type": "publish", "id": id, "conv": conv, "body": body,
                        "client_msg_id": client_msg_id}),
            Request::History {
                conv,
                after,
                before,
                limit,
            } => {
                let mut f = json!({"type": "history", "id": id, "conv": conv});
                if let Some(a) = after {
                    f["after"] = json!(a);
                }
                if let Some(b) = before {
                    f["before"] = json!(b);
                }
                if let Some(l) = limit {
                    f["limit"] = json!(l);
                }
                f
            }
            Request::Presence { conv } => json!({"type": "presence", "id": id, "conv": conv}),
        }
    }

    /// Safe to send again on a new connection (idempotent on the server).
    fn retried(&self) -> bool {
        matches!(
            self,
            Request::Subscribe { .. } | Request::Unsubscribe { .. } | Request::Publish { .. }
        )
    }
}

#[derive(Debug, Deserialize)]
struct ResumedEntry {
    recovered: bool,
    from_seq: u64,
    #[serde(default)]
    epoch: String,
}

/// The `welcome` frame.
#[derive(Debug, Deserialize)]
pub(crate) struct Welcome {
    user_id: String,
    node_id: String,
    #[serde(default)]
    heartbeat_ms: u64,
    #[serde(default)]
    resumed: BTreeMap<String, ResumedEntry>,
}

/// Why a live connection ended.
enum After {
    /// Reconnect after this delay.
    Reconnect { delay: Duration, reason: String },
    /// The server ended the session for good.
    Final(String),
    /// The application closed the client.
    Closed,
}

/// Why no connection could be made.
enum Stop {
    Closed,
    Fatal(ClientError),
}

enum NodeError {
    Fatal(ClientError),
    Refused(u16),
    Failed(String),
}

enum RoundError {
    Fatal(ClientError),
    Overloaded(Duration),
    Failed(String),
}

pub(crate) struct Driver {
    cfg: Arc<ClientConfig>,
    http: reqwest::Client,
    cmds: mpsc::UnboundedReceiver<Cmd>,
    events: mpsc::UnboundedSender<Event>,
    shared: Shared,
    next_id: u64,
    /// Requests waiting for a connection.
    queue: VecDeque<Pending>,
    /// Requests sent on the current connection, by id.
    inflight: BTreeMap<u64, Pending>,
    backoff: Backoff,
    /// Whether the user's own stream is wanted (until the application unsubscribes it).
    own_wanted: bool,
    own_conv: Option<String>,
    ready: Option<oneshot::Sender<Result<(), ClientError>>>,
    closing: Option<oneshot::Sender<()>>,
}

impl Driver {
    pub fn new(
        cfg: ClientConfig,
        cmds: mpsc::UnboundedReceiver<Cmd>,
        events: mpsc::UnboundedSender<Event>,
        shared: Shared,
        ready: oneshot::Sender<Result<(), ClientError>>,
    ) -> Driver {
        let backoff = Backoff::new(cfg.backoff_base, cfg.backoff_max);
        Driver {
            cfg: Arc::new(cfg),
            http: reqwest::Client::new(),
            cmds,
            events,
            shared,
            next_id: 0,
            queue: VecDeque::new(),
            inflight: BTreeMap::new(),
            backoff,
            own_wanted: true,
            own_conv: None,
            ready: Some(ready),
            closing: None,
        }
    }

    fn next_id(&mut self) -> u64 {
        self.next_id += 1;
        self.next_id
    }

    fn emit(&self, e: Event) {
        let _ = self.events.send(e);
    }

    /// Runs until the client is closed or the server ends the session.
    pub async fn run(mut self) {
        let mut delay = Duration::ZERO;
        loop {
            if !delay.is_zero() && !self.wait(delay).await {
                break;
            }
            let (mut link, welcome, auth_id) = match self.establish().await {
                Ok(x) => x,
                Err(Stop::Closed) => break,
                Err(Stop::Fatal(e)) => {
                    match self.ready.take() {
                        Some(ready) => {
                            let _ = ready.send(Err(e));
                        }
                        None => self.emit(Event::ServerDisconnect {
                            reason: match &e {
                                ClientError::Server { code, .. } => code.clone(),
                                other => other.to_string(),
                            },
                        }),
                    }
                    break;
                }
            };
            self.backoff.reset();
            let after = self.live(&mut link, welcome, auth_id).await;
            link.close().await;
            self.dropped();
            match after {
                After::Reconnect { delay: d, reason } => {
                    tracing::info!(%reason, delay_ms = d.as_millis() as u64, "disconnected; reconnecting");
                    self.emit(Event::Disconnected { reason });
                    delay = d;
                }
                After::Final(reason) => {
                    tracing::info!(%reason, "the server ended the session");
                    self.emit(Event::ServerDisconnect { reason });
                    break;
                }
                After::Closed => break,
            }
        }
        for p in self
            .queue
            .drain(..)
            .chain(std::mem::take(&mut self.inflight).into_values())
        {
            if let Waiter::App(tx) = p.waiter {
                let _ = tx.send(Err(ClientError::Closed));
            }
        }
        let done = self.closing.take();
        drop(self);
        if let Some(done) = done {
            let _ = done.send(());
        }
    }

    /// A command while no connection is up: requests wait for the next one. False when the
    /// client is closing.
    fn offline(&mut self, cmd: Option<Cmd>) -> bool {
        match cmd {
            None => false,
            Some(Cmd::Close { done }) => {
                self.closing = Some(done);
                false
            }
            Some(Cmd::Request { req, reply }) => {
                self.queue.retain(|p| !p.abandoned());
                self.queue.push_back(Pending {
                    req,
                    waiter: Waiter::App(reply),
                });
                true
            }
        }
    }

    /// Sleeps `d`, taking commands meanwhile. False when the client is closing.
    async fn wait(&mut self, d: Duration) -> bool {
        let until = Instant::now() + d;
        loop {
            tokio::select! {
                _ = tokio::time::sleep_until(until) => return true,
                cmd = self.cmds.recv() => if !self.offline(cmd) { return false },
            }
        }
    }

    /// `{conv: {seq, epoch}}` for every tracked conversation.
    fn resume(&self) -> Value {
        let positions = lock(&self.shared).tracker.positions();
        let mut map = serde_json::Map::new();
        for (conv, (epoch, seq)) in positions {
            map.insert(conv, json!({"seq": seq, "epoch": epoch}));
        }
        Value::Object(map)
    }

    /// Dispatch and connect, in rounds separated by backoff, until a node welcomes us.
    async fn establish(&mut self) -> Result<(Link, Welcome, u64), Stop> {
        loop {
            let auth_id = self.next_id();
            let round = attempt_round(self.cfg.clone(), self.http.clone(), self.resume(), auth_id);
            tokio::pin!(round);
            let (hint, outcome) = loop {
                tokio::select! {
                    r = &mut round => break r,
                    cmd = self.cmds.recv() => if !self.offline(cmd) { return Err(Stop::Closed) },
                }
            };
            if let Some(h) = hint {
                self.backoff.hint(h);
            }
            let delay = match outcome {
                Ok((link, welcome)) => return Ok((link, welcome, auth_id)),
                Err(RoundError::Fatal(e)) => return Err(Stop::Fatal(e)),
                Err(RoundError::Overloaded(retry_after)) => {
                    self.note_error("dispatcher: every node is full or draining".into());
                    self.backoff.next_delay();
                    retry_after + jitter(self.backoff.base)
                }
                Err(RoundError::Failed(e)) => {
                    self.note_error(e);
                    self.backoff.next_delay()
                }
            };
            tracing::debug!(
                delay_ms = delay.as_millis() as u64,
                "no connection; retrying"
            );
            if !self.wait(delay).await {
                return Err(Stop::Closed);
            }
        }
    }

    fn note_error(&self, e: String) {
        tracing::debug!(error = %e, "connection attempt failed");
        lock(&self.shared).last_error = Some(e);
    }

    /// After a connection ended: held messages go, retried requests wait for the next
    /// connection, the others fail.
    fn dropped(&mut self) {
        {
            let mut s = lock(&self.shared);
            s.tracker.on_disconnect();
            s.node_id = None;
        }
        for (_, p) in std::mem::take(&mut self.inflight) {
            match p.waiter {
                Waiter::App(tx) if !p.req.retried() => {
                    let _ = tx.send(Err(ClientError::Disconnected));
                }
                Waiter::App(_) => self.queue.push_back(p),
                Waiter::Setup | Waiter::Fill(_) | Waiter::Nobody => {}
            }
        }
    }

    fn send_request(&mut self, link: &Link, p: Pending) {
        if p.abandoned() {
            return;
        }
        // The server subscribes every connection to the own stream at auth, so a `subscribed`
        // answer for it would not be a fresh start: unsubscribe first so that `head_seq` is
        // exactly where live messages begin. (Anything missed between is fetched as a gap.)
        if let Request::Subscribe { conv } = &p.req
            && self.own_conv.as_deref() == Some(conv.as_str())
            && !lock(&self.shared).tracker.is_tracked(conv)
        {
            let id = self.next_id();
            let req = Request::Unsubscribe { conv: conv.clone() };
            link.send(&req.frame(id));
            self.inflight.insert(
                id,
                Pending {
                    req,
                    waiter: Waiter::Nobody,
                },
            );
        }
        let id = self.next_id();
        link.send(&p.req.frame(id));
        self.inflight.insert(id, p);
    }

    /// Serves one connection until it ends.
    async fn live(&mut self, link: &mut Link, welcome: Welcome, auth_id: u64) -> After {
        let own = format!("user:{}", welcome.user_id);
        self.own_conv = Some(own.clone());
        {
            let mut s = lock(&self.shared);
            s.node_id = Some(welcome.node_id.clone());
            s.user_id = Some(welcome.user_id.clone());
            s.last_error = None;
        }
        tracing::info!(node_id = %welcome.node_id, transport = %link.transport, "connected");
        self.emit(Event::Connected {
            node_id: welcome.node_id.clone(),
            transport: link.transport,
        });
        for (conv, r) in &welcome.resumed {
            lock(&self.shared)
                .tracker
                .on_resumed(conv, r.recovered, r.from_seq, &r.epoch);
            self.emit(Event::Resumed {
                conv: conv.clone(),
                recovered: r.recovered,
                from_seq: r.from_seq,
            });
        }
        let own_tracked = lock(&self.shared).tracker.is_tracked(&own);
        if self.own_wanted && !own_tracked {
            let waiter = if self.ready.is_some() {
                Waiter::Setup
            } else {
                Waiter::Nobody
            };
            let req = Request::Subscribe { conv: own };
            self.send_request(link, Pending { req, waiter });
        } else if let Some(ready) = self.ready.take() {
            let _ = ready.send(Ok(()));
        }
        while let Some(p) = self.queue.pop_front() {
            self.send_request(link, p);
        }

        let silence = match link.transport {
            Transport::LongPoll => None,
            _ if welcome.heartbeat_ms == 0 => None,
            _ => Some(Duration::from_millis(
                welcome.heartbeat_ms.saturating_mul(5) / 2,
            )),
        };
        let far = Duration::from_secs(3600 * 24 * 365);
        let mut dead_at = Instant::now() + silence.unwrap_or(far);
        loop {
            tokio::select! {
                cmd = self.cmds.recv() => match cmd {
                    None => return After::Closed,
                    Some(Cmd::Close { done }) => {
                        self.closing = Some(done);
                        return After::Closed;
                    }
                    Some(Cmd::Request { req, reply }) => {
                        self.send_request(link, Pending { req, waiter: Waiter::App(reply) });
                    }
                },
                inc = link.inc.recv() => {
                    dead_at = Instant::now() + silence.unwrap_or(far);
                    match inc {
                        None => return self.reconnect("connection closed".into()),
                        Some(Incoming::Closed(reason)) => return self.reconnect(reason),
                        Some(Incoming::Alive) => {}
                        Some(Incoming::Frame(v)) => {
                            if let Some(after) = self.on_frame(link, v, auth_id) {
                                return after;
                            }
                        }
                    }
                }
                _ = tokio::time::sleep_until(dead_at), if silence.is_some() => {
                    return self.reconnect("heartbeat timeout: the server went silent".into());
                }
            }
        }
    }

    fn reconnect(&mut self, reason: String) -> After {
        After::Reconnect {
            delay: self.backoff.next_delay(),
            reason,
        }
    }

    /// One server frame. `Some` when the connection must end.
    fn on_frame(&mut self, link: &Link, v: Value, auth_id: u64) -> Option<After> {
        let kind = v["type"].as_str().unwrap_or_default().to_owned();
        let id = v["id"].as_u64();
        match kind.as_str() {
            "message" => {
                match serde_json::from_value::<Message>(v) {
                    Ok(m) => {
                        let actions = lock(&self.shared).tracker.on_message(m);
                        self.apply(link, actions);
                    }
                    Err(e) => tracing::warn!(error = %e, "unreadable message frame ignored"),
                }
                None
            }
            "ping" => {
                link.send(&json!({"type": "pong"}));
                None
            }
            "reconnect" => {
                let delay = Duration::from_millis(v["delay_ms"].as_u64().unwrap_or(0));
                let reason = v["reason"].as_str().unwrap_or("reconnect").to_owned();
                Some(After::Reconnect { delay, reason })
            }
            "disconnect" => {
                let reason = v["reason"].as_str().unwrap_or("disconnect").to_owned();
                if FINAL_REASONS.contains(&reason.as_str()) {
                    Some(After::Final(reason))
                } else {
                    Some(self.reconnect(reason))
                }
            }
            "unsubscribed" if id.is_none() => {
                // The server ended a subscription (e.g. removed from a private room).
                let conv = v["conv"].as_str().unwrap_or_default().to_owned();
                let reason = v["reason"].as_str().unwrap_or("unsubscribed").to_owned();
                self.forget(&conv, reason);
                None
            }
            _ => {
                if let Some(p) = id.and_then(|id| self.inflight.remove(&id)) {
                    self.on_reply(link, p, &kind, v);
                } else if kind == "error" && id == Some(auth_id) {
                    // A resumed conversation that could not be subscribed again; the message
                    // starts with its name.
                    let message = v["message"].as_str().unwrap_or_default();
                    let code = v["code"].as_str().unwrap_or("error").to_owned();
                    if let Some((conv, _)) = message.split_once(": ") {
                        self.forget(conv, code);
                    }
                } else if kind == "error" {
                    tracing::warn!(frame = %v, "error from the server");
                }
                None
            }
        }
    }

    fn forget(&mut self, conv: &str, reason: String) {
        let tracked = {
            let mut s = lock(&self.shared);
            let t = s.tracker.is_tracked(conv);
            s.tracker.remove(conv);
            t
        };
        if tracked {
            self.emit(Event::Unsubscribed {
                conv: conv.to_owned(),
                reason,
            });
        }
    }

    fn on_reply(&mut self, link: &Link, p: Pending, kind: &str, v: Value) {
        let failed = kind == "error";
        match (&p.req, &p.waiter) {
            (Request::Subscribe { conv }, _) if !failed => {
                let head = v["head_seq"].as_u64().unwrap_or(0);
                let epoch = v["epoch"].as_str().unwrap_or_default();
                lock(&self.shared).tracker.on_subscribed(conv, head, epoch);
                if self.own_conv.as_deref() == Some(conv.as_str()) {
                    self.own_wanted = true;
                }
            }
            (Request::Unsubscribe { conv }, Waiter::App(_)) if !failed => {
                lock(&self.shared).tracker.remove(conv);
                if self.own_conv.as_deref() == Some(conv.as_str()) {
                    self.own_wanted = false;
                }
            }
            (_, Waiter::Fill(conv)) => {
                let actions = if failed {
                    tracing::warn!(%conv, frame = %v, "gap fill failed");
                    lock(&self.shared).tracker.on_fill_failed(conv)
                } else {
                    let page: Vec<Message> =
                        serde_json::from_value(v["messages"].clone()).unwrap_or_default();
                    lock(&self.shared).tracker.on_fill(conv, page)
                };
                self.apply(link, actions);
            }
            _ => {}
        }
        match p.waiter {
            Waiter::App(tx) => {
                let _ = tx.send(if failed { Err(server_error(&v)) } else { Ok(v) });
            }
            Waiter::Setup => {
                if failed {
                    tracing::warn!(frame = %v, "could not subscribe to the own stream");
                }
                if let Some(ready) = self.ready.take() {
                    let _ = ready.send(Ok(()));
                }
            }
            Waiter::Fill(_) | Waiter::Nobody => {}
        }
    }

    fn apply(&mut self, link: &Link, actions: Vec<Action>) {
        for a in actions {
            match a {
                Action::Deliver(m) => self.emit(Event::Message(m)),
                Action::Fetch {
                    conv,
                    after,
                    before,
                } => {
                    tracing::debug!(%conv, after, before, "seq jump; filling the gap from history");
                    let req = Request::History {
                        conv: conv.clone(),
                        after: Some(after),
                        before: Some(before),
                        limit: Some(FILL_PAGE),
                    };
                    self.send_request(
                        link,
                        Pending {
                            req,
                            waiter: Waiter::Fill(conv),
                        },
                    );
                }
            }
        }
    }
}

fn server_error(v: &Value) -> ClientError {
    ClientError::Server {
        code: v["code"].as_str().unwrap_or("internal").to_owned(),
        message: v["message"].as_str().unwrap_or_default().to_owned(),
    }
}

/// One round: ask the dispatcher, then try the chosen node and the alternates in order.
async fn attempt_round(
    cfg: Arc<ClientConfig>,
    http: reqwest::Client,
    resume: Value,
    auth_id: u64,
) -> (Option<BackoffHint>, Result<(Link, Welcome), RoundError>) {
    let d = match dispatch(&http, &cfg.dispatcher, &cfg.token, cfg.request_timeout).await {
        Ok(d) => d,
        Err(DispatchError::Overloaded { retry_after }) => {
            return (None, Err(RoundError::Overloaded(retry_after)));
        }
        Err(DispatchError::Failed(e)) => return (None, Err(RoundError::Failed(e))),
    };
    let mut failures = Vec::new();
    for node in d.nodes() {
        match connect_node(&cfg, &http, node, &resume, auth_id).await {
            Ok(x) => return (d.backoff, Ok(x)),
            Err(NodeError::Fatal(e)) => return (d.backoff, Err(RoundError::Fatal(e))),
            Err(NodeError::Refused(status)) => failures.push(format!(
                "{}: WebSocket upgrade refused with {status}",
                node.node_id
            )),
            Err(NodeError::Failed(e)) => failures.push(format!("{}: {e}", node.node_id)),
        }
    }
    (d.backoff, Err(RoundError::Failed(failures.join("; "))))
}

fn open_error(e: OpenError) -> NodeError {
    match e {
        OpenError::Unauthorized(message) => NodeError::Fatal(ClientError::Server {
            code: "unauthorized".into(),
            message,
        }),
        OpenError::UpgradeRefused(s) => NodeError::Refused(s),
        OpenError::Failed(e) => NodeError::Failed(e),
    }
}

async fn connect_node(
    cfg: &ClientConfig,
    http: &reqwest::Client,
    node: &Placement,
    resume: &Value,
    auth_id: u64,
) -> Result<(Link, Welcome), NodeError> {
    let t = cfg.request_timeout;
    let ep = &node.endpoints;
    let via_poll = || async {
        let poll = ep
            .poll
            .as_deref()
            .ok_or_else(|| NodeError::Failed("no long-poll endpoint".into()))?;
        let mut link = open_poll(http, poll, &cfg.token, resume.clone(), t)
            .await
            .map_err(open_error)?;
        let w = await_welcome(&mut link, None, t).await?;
        Ok((link, w))
    };
    let via_ws = || async {
        let url = ep.ws.as_deref().ok_or(NodeError::Refused(0))?;
        let mut link = open_ws(url, t).await.map_err(open_error)?;
        let w = authenticate(&mut link, &cfg.token, resume, auth_id, t).await?;
        Ok((link, w))
    };
    match cfg.transport {
        TransportChoice::LongPoll => via_poll().await,
        TransportChoice::WebSocket => match via_ws().await {
            Err(NodeError::Refused(s)) => Err(NodeError::Failed(format!(
                "WebSocket upgrade refused ({s})"
            ))),
            other => other,
        },
        TransportChoice::Auto => match via_ws().await {
            Err(NodeError::Refused(status)) => {
                tracing::info!(
                    node_id = %node.node_id,
                    status,
                    "WebSocket upgrade refused; falling back to long-polling"
                );
                via_poll().await
            }
            other => other,
        },
        TransportChoice::Tcp => {
            let url = ep
                .tcp
                .as_deref()
                .ok_or_else(|| NodeError::Failed("no TCP endpoint".into()))?;
            let mut link = open_tcp(url, t).await.map_err(open_error)?;
            let w = authenticate(&mut link, &cfg.token, resume, auth_id, t).await?;
            Ok((link, w))
        }
    }
}

/// Sends the `auth` frame (with `resume`) and waits for `welcome`.
async fn authenticate(
    link: &mut Link,
    token: &str,
    resume: &Value,
    auth_id: u64,
    timeout: Duration,
) -> Result<Welcome, NodeError> {
    let mut frame = json!({"type": "auth", "id": auth_id, "token": token});
    if resume.as_object().is_some_and(|m| !m.is_empty()) {
        frame["resume"] = resume.clone();
    }
    link.send(&frame);
    await_welcome(link, Some(auth_id), timeout).await
}

/// Reads frames until `welcome` (answering pings); what follows it stays in the link.
async fn await_welcome(
    link: &mut Link,
    auth_id: Option<u64>,
    timeout: Duration,
) -> Result<Welcome, NodeError> {
    let deadline = Instant::now() + timeout;
    loop {
        let inc = match tokio::time::timeout_at(deadline, link.inc.recv()).await {
            Err(_) => return Err(NodeError::Failed("no welcome in time".into())),
            Ok(None) => return Err(NodeError::Failed("connection closed before welcome".into())),
            Ok(Some(i)) => i,
        };
        let v = match inc {
            Incoming::Frame(v) => v,
            Incoming::Alive => continue,
            Incoming::Closed(reason) => return Err(NodeError::Failed(reason)),
        };
        match v["type"].as_str().unwrap_or_default() {
            "welcome" => {
                return serde_json::from_value(v)
                    .map_err(|e| NodeError::Failed(format!("unreadable welcome: {e}")));
            }
            "ping" => {
                link.send(&json!({"type": "pong"}));
            }
            "error" => {
                let code = v["code"].as_str().unwrap_or_default();
                let for_auth = auth_id.is_none() || v["id"].as_u64() == auth_id;
                if code == "unauthorized" && for_auth {
                    return Err(NodeError::Fatal(server_error(&v)));
                }
                if code == "unauthorized" {
                    // An auth timeout (id null): the node was too slow to read us.
                    return Err(NodeError::Failed(format!("auth refused: {v}")));
                }
                return Err(NodeError::Failed(format!("refused before welcome: {code}")));
            }
            "reconnect" | "disconnect" => {
                return Err(NodeError::Failed(format!(
                    "the node ended the connection before welcome: {}",
                    v["reason"].as_str().unwrap_or_default()
                )));
            }
            _ => {}
        }
    }
}
