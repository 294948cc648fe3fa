//! The long-polling transport: no WebSocket, no sticky load balancer needed.
//!
//! `POST /v1/poll` (bearer token, optional `{"resume":{...}}`) opens an authenticated session on
//! this node and answers `201 {session, node_id, poll}`. `POST /v1/poll/{session}` takes a JSON
//! array of client frames. `GET /v1/poll/{session}?after=N&wait_ms=W` answers the server frames
//! after `N`, each with its per-session `pseq`, holding the request open up to `W` ms when there
//! is nothing yet. Frames stay buffered until a later GET acknowledges them with a larger
//! `after`, so a lost response loses nothing. The buffer is bounded: a client that stops
//! collecting frames stops the session from draining its queue, and the session is cut as a
//! slow consumer like any other. A session id names its node (`<random>~<node_id>`): a request
//! that reaches another node is answered `421 wrong_node` with the right node's poll URL.

use crate::http_error::{ApiError, bearer};
use axum::Router;
use axum::body::Bytes;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use parking_lot::Mutex;
use serde::Deserialize;
use serde_json::{Value, json};
use std::collections::{BTreeMap, HashMap, VecDeque};
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll, Waker};
use std::time::{Duration, Instant};
use switchboard_core::session::{PreAuth, run_session};
use switchboard_core::transport::{Inbound, Transport};
use switchboard_core::transport::{Out, Progress, Wire};
use switchboard_core::{Error, Node};
use switchboard_proto::frame::ResumePosition;
use switchboard_proto::{Conv, ErrorCode, ServerFrame};
use tokio::sync::{Notify, mpsc};

/// Finds the base URL (`http://host:port`) of another node, for `wrong_node` answers.
pub type NodeLocator =
    Arc<dyn Fn(String) -> Pin<Box<dyn Future<Output = Option<String>> + Send>> + Send + Sync>;

/// Long-polling settings.
#[derive(Clone)]
pub struct PollConfig {
    /// This node's advertised base URL.
    pub public_url: String,
    /// A session with no GET for this long ends.
    pub idle: Duration,
    /// Longest `wait_ms` honoured.
    pub max_wait: Duration,
    /// Frames buffered per session before the session stops draining (then is cut).
    pub max_buffered: usize,
    /// Client frames queued per session before `POST` answers `rate_limited`.
    pub inbound_queue: usize,
    /// Resolves other nodes' URLs (cluster mode); `None` on a single node.
    pub locate: Option<NodeLocator>,
}

impl PollConfig {
    /// Defaults: 60 s idle expiry, 30 s longest wait, 1024 buffered frames, 256 queued inbound.
    pub fn new(public_url: String) -> PollConfig {
        PollConfig {
            public_url,
            idle: Duration::from_secs(60),
            max_wait: Duration::from_secs(30),
            max_buffered: 1024,
            inbound_queue: 256,
            locate: None,
        }
    }
}

#[derive(Default)]
struct Buffer {
    frames: VecDeque<(u64, Bytes)>,
    next_pseq: u64,
    /// The session task ended (no more frames will come).
    ended: bool,
    /// Bumped by every GET; an older waiting GET sees the change and returns.
    get_generation: u64,
}

/// One session's shared state, between its task, the fan-out and the HTTP handlers.
struct Shared {
    buffer: Mutex<Buffer>,
    /// New frames, the end, or a newer GET.
    changed: Notify,
    /// The session waiting for room in the buffer (woken when a GET acknowledges frames).
    space: Mutex<Option<Waker>>,
    /// Client frames to the session; taken (closed) by `DELETE`.
    inbound: Mutex<Option<mpsc::Sender<Inbound>>>,
    last_get: Mutex<Instant>,
    ended_at: Mutex<Option<Instant>>,
}

/// The node's long-poll sessions.
pub struct PollSessions {
    node: Arc<Node>,
    config: PollConfig,
    sessions: Mutex<HashMap<String, Arc<Shared>>>,
}

impl PollSessions {
    /// Starts the registry (and its reaper task, which ends with the registry).
    pub fn new(node: Arc<Node>, config: PollConfig) -> Arc<PollSessions> {
        let sessions = Arc::new(PollSessions {
            node,
            config,
            sessions: Mutex::new(HashMap::new()),
        });
        let weak = Arc::downgrade(&sessions);
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(Duration::from_secs(5));
            loop {
                tick.tick().await;
                let Some(s) = weak.upgrade() else { return };
                s.reap();
            }
        });
        sessions
    }

    /// Sessions on this node (open or ended but not yet collected).
    pub fn len(&self) -> usize {
        self.sessions.lock().len()
    }

    /// Whether there are none.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Sessions whose task ended but whose last frames (e.g. `reconnect`, `disconnect`) were
    /// not collected yet. Shutdown keeps serving HTTP until this is zero (or a deadline), so
    /// long-poll clients learn they must reconnect.
    pub fn uncollected(&self) -> usize {
        self.sessions
            .lock()
            .values()
            .filter(|s| s.ended_at.lock().is_some() && !s.buffer.lock().frames.is_empty())
            .count()
    }

    /// Forgets sessions that ended and were fully collected, or ended a while ago.
    fn reap(&self) {
        let grace = self.config.idle;
        self.sessions
            .lock()
            .retain(|_, s| match *s.ended_at.lock() {
                None => true,
                Some(at) => !s.buffer.lock().frames.is_empty() && at.elapsed() < grace,
            });
    }
}

/// The long-poll routes.
pub fn poll_routes(sessions: Arc<PollSessions>) -> Router {
    Router::new()
        .route("/v1/poll", post(open))
        .route(
            "/v1/poll/{session}",
            post(send_frames).get(receive).delete(close),
        )
        .with_state(sessions)
}

#[derive(Deserialize, Default)]
struct OpenBody {
    #[serde(default)]
    resume: Option<BTreeMap<Conv, ResumePosition>>,
}

async fn open(State(polls): State<Arc<PollSessions>>, headers: HeaderMap, body: Bytes) -> Response {
    let node = &polls.node;
    // The session's slot, held through the token check and then by the session's task for as
    // long as the poll session runs.
    let permit = (!node.is_draining()).then(|| node.admission.try_admit());
    let Some(Some(permit)) = permit else {
        return ApiError(Error::new(
            ErrorCode::Overloaded,
            "this node is full or draining; ask the dispatcher",
        ))
        .into_response();
    };
    let Some(token) = bearer(&headers) else {
        return ApiError(Error::unauthorized("missing bearer token")).into_response();
    };
    let principal = match node.authenticate(token).await {
        Ok(p) => p,
        Err(e) => return ApiError(e).into_response(),
    };
    let body: OpenBody = if body.iter().all(u8::is_ascii_whitespace) {
        OpenBody::default()
    } else {
        match serde_json::from_slice(&body) {
            Ok(b) => b,
            Err(e) => {
                return ApiError(Error::bad_request(format!("invalid body: {e}"))).into_response();
            }
        }
    };
    let id = format!(
        "{:016x}{:016x}~{}",
        switchboard_proto::ids::random_u64(),
        switchboard_proto::ids::random_u64(),
        node.id
    );
    let (tx, rx) = mpsc::channel(polls.config.inbound_queue.max(1));
    let shared = Arc::new(Shared {
        buffer: Mutex::new(Buffer {
            next_pseq: 1,
            ..Default::default()
        }),
        changed: Notify::new(),
        space: Mutex::new(None),
        inbound: Mutex::new(Some(tx)),
        last_get: Mutex::new(Instant::now()),
        ended_at: Mutex::new(None),
    });
    polls.sessions.lock().insert(id.clone(), shared.clone());
    let wire = Arc::new(PollWire {
        shared: shared.clone(),
        max: polls.config.max_buffered.max(8),
    });
    let transport = PollTransport {
        shared,
        rx,
        idle: polls.config.idle,
    };
    let pre = PreAuth {
        principal,
        resume: body.resume.unwrap_or_default(),
    };
    let session = run_session(node.clone(), transport, wire, Some(pre));
    node.admission.spawn(permit, session);
    let poll = format!(
        "{}/v1/poll/{id}",
        polls.config.public_url.trim_end_matches('/')
    );
    (
        StatusCode::CREATED,
        axum::Json(json!({"session": id, "node_id": node.id, "poll": poll})),
    )
        .into_response()
}

/// The session, or the right answer when it is not here: `421 wrong_node` for another node's
/// session, `404 not_found` for one of this node that ended or never existed.
async fn find(polls: &PollSessions, id: &str) -> Result<Arc<Shared>, Response> {
    if let Some(s) = polls.sessions.lock().get(id).cloned() {
        return Ok(s);
    }
    match id.split_once('~') {
        Some((_, owner)) if owner != polls.node.id => {
            let base = match &polls.config.locate {
                Some(locate) => locate(owner.to_owned()).await,
                None => None,
            };
            let poll = base.map(|b| format!("{}/v1/poll/{id}", b.trim_end_matches('/')));
            let body = json!({"error": {"code": "wrong_node", "message": "this session lives on another node", "node_id": owner, "poll": poll}});
            let mut resp = (StatusCode::MISDIRECTED_REQUEST, axum::Json(body)).into_response();
            resp.extensions_mut().insert(ErrorCode::WrongNode);
            Err(resp)
        }
        _ => Err(ApiError(Error::not_found(
            "no such poll session (it ended or expired); open a new one and resume",
        ))
        .into_response()),
    }
}

async fn send_frames(
    State(polls): State<Arc<PollSessions>>,
    Path(id): Path<String>,
    body: Bytes,
) -> Response {
    let shared = match find(&polls, &id).await {
        Ok(s) => s,
        Err(r) => return r,
    };
    let frames: Vec<Box<serde_json::value::RawValue>> = match serde_json::from_slice(&body) {
        Ok(f) => f,
        Err(e) => {
            return ApiError(Error::bad_request(format!(
                "the body must be a JSON array of frames: {e}"
            )))
            .into_response();
        }
    };
    let Some(tx) = shared.inbound.lock().clone() else {
        return ApiError(Error::not_found("this poll session has ended")).into_response();
    };
    let mut accepted = 0;
    for f in frames {
        if tx
            .try_send(Inbound::Frame(Bytes::from(f.get().to_owned())))
            .is_err()
        {
            let msg = format!(
                "{accepted} frames accepted; the rest were refused: the session's input queue is full"
            );
            return ApiError(Error::new(ErrorCode::RateLimited, msg)).into_response();
        }
        accepted += 1;
    }
    (
        StatusCode::ACCEPTED,
        axum::Json(json!({"accepted": accepted})),
    )
        .into_response()
}

#[derive(Deserialize)]
struct ReceiveQuery {
    #[serde(default)]
    after: u64,
    #[serde(default)]
    wait_ms: Option<u64>,
}

async fn receive(
    State(polls): State<Arc<PollSessions>>,
    Path(id): Path<String>,
    Query(q): Query<ReceiveQuery>,
) -> Response {
    let shared = match find(&polls, &id).await {
        Ok(s) => s,
        Err(r) => return r,
    };
    *shared.last_get.lock() = Instant::now();
    if let Some(tx) = shared.inbound.lock().as_ref() {
        let _ = tx.try_send(Inbound::Alive);
    }
    let generation = {
        let mut b = shared.buffer.lock();
        b.get_generation += 1;
        while b.frames.front().is_some_and(|(p, _)| *p <= q.after) {
            b.frames.pop_front();
        }
        b.get_generation
    };
    // Wake an older GET of this session (it answers empty) and a session waiting for room.
    shared.changed.notify_waiters();
    if let Some(w) = shared.space.lock().take() {
        w.wake();
    }
    let wait = Duration::from_millis(q.wait_ms.unwrap_or(25_000)).min(polls.config.max_wait);
    let deadline = tokio::time::Instant::now() + wait;
    loop {
        let changed = shared.changed.notified();
        tokio::pin!(changed);
        changed.as_mut().enable();
        {
            let b = shared.buffer.lock();
            if b.get_generation != generation {
                return frames_response(&[]);
            }
            let ready: Vec<(u64, Bytes)> = b
                .frames
                .iter()
                .filter(|(p, _)| *p > q.after)
                .cloned()
                .collect();
            if !ready.is_empty() {
                return frames_response(&ready);
            }
            if b.ended {
                drop(b);
                polls.sessions.lock().remove(&id);
                return ApiError(Error::not_found(
                    "this poll session has ended; open a new one and resume",
                ))
                .into_response();
            }
        }
        tokio::select! {
            _ = &mut changed => {}
            _ = tokio::time::sleep_until(deadline) => return frames_response(&[]),
        }
    }
}

/// `[{"pseq":N, ...frame}, ...]`, built from the frames' bytes without re-encoding them.
fn frames_response(frames: &[(u64, Bytes)]) -> Response {
    let mut out = Vec::with_capacity(2 + frames.iter().map(|(_, f)| f.len() + 16).sum::<usize>());
    out.push(b'[');
    for (i, (pseq, frame)) in frames.iter().enumerate() {
        if i > 0 {
            out.push(b',');
        }
        out.extend_from_slice(format!("{{\"pseq\":{pseq},").as_bytes());
        // Every server frame is a non-empty JSON object: splice after its opening brace.
        out.extend_from_slice(&frame[1..]);
    }
    out.push(b']');
    ([(header::CONTENT_TYPE, "application/json")], out).into_response()
}

async fn close(State(polls): State<Arc<PollSessions>>, Path(id): Path<String>) -> Response {
    let shared = match find(&polls, &id).await {
        Ok(s) => s,
        Err(r) => return r,
    };
    // Dropping the sender ends the session's input: it closes like a disconnected socket.
    shared.inbound.lock().take();
    polls.sessions.lock().remove(&id);
    StatusCode::NO_CONTENT.into_response()
}

/// The reading half of a long-poll session: frames from `POST`, proof of life from `GET`.
pub struct PollTransport {
    shared: Arc<Shared>,
    rx: mpsc::Receiver<Inbound>,
    idle: Duration,
}

impl Transport for PollTransport {
    async fn recv(&mut self) -> Option<Inbound> {
        loop {
            let idle_until = *self.shared.last_get.lock() + self.idle;
            tokio::select! {
                inbound = self.rx.recv() => return inbound,
                _ = tokio::time::sleep_until(idle_until.into()) => {
                    if self.shared.last_get.lock().elapsed() >= self.idle {
                        tracing::debug!("poll session idle; ending it");
                        return None;
                    }
                }
            }
        }
    }
}

/// The writing half of a long-poll session: frames go into the session's buffer, numbered, for
/// the next `GET`. A full buffer takes nothing more until a `GET` acknowledges frames.
struct PollWire {
    shared: Arc<Shared>,
    max: usize,
}

impl Wire for PollWire {
    fn try_write(
        &self,
        frames: &mut dyn Iterator<Item = &Out>,
        _offset: usize,
    ) -> std::io::Result<Progress> {
        let mut p = Progress {
            frames: 0,
            offset: 0,
            blocked: false,
        };
        let mut b = self.shared.buffer.lock();
        let before = b.frames.len();
        for frame in frames {
            let bytes = match frame {
                Out::Text(bytes) => bytes.clone(),
                Out::Ping => ServerFrame::Ping {}.encode(),
                // Long-polling has no protocol pings to answer and no close frame.
                Out::Pong(_) | Out::Close(_) => {
                    p.frames += 1;
                    continue;
                }
            };
            if b.frames.len() >= self.max {
                p.blocked = true;
                break;
            }
            let pseq = b.next_pseq;
            b.next_pseq += 1;
            b.frames.push_back((pseq, bytes));
            p.frames += 1;
        }
        let added = b.frames.len() > before;
        drop(b);
        if added {
            self.shared.changed.notify_waiters();
        }
        Ok(p)
    }

    fn poll_writable(&self, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        // Register first, then look: a GET that acknowledges in between wakes us.
        *self.shared.space.lock() = Some(cx.waker().clone());
        if self.shared.buffer.lock().frames.len() < self.max {
            Poll::Ready(Ok(()))
        } else {
            Poll::Pending
        }
    }

    fn shutdown(&self) {
        self.shared.buffer.lock().ended = true;
        *self.shared.ended_at.lock() = Some(Instant::now());
        self.shared.inbound.lock().take();
        self.shared.changed.notify_waiters();
    }
}

/// A node's poll URL from its announced base URL.
pub fn poll_endpoint(public_url: &str) -> Value {
    Value::String(format!("{}/v1/poll", public_url.trim_end_matches('/')))
}
