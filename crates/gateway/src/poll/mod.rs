//! The long-polling transport: no WebSocket, no sticky load balancer needed.
//!
//! `POST /v1/poll` (bearer token, optional `{"resume":{...}}`) opens an authenticated session on
//! this node and answers `201 {session, node_id, poll}`. `POST /v1/poll/{session}` takes a JSON
//! array of client frames. `GET /v1/poll/{session}?after=N&wait_ms=W` answers the server frames
//! after `N`, each with its per-session `pseq`, holding the request open up to `W` ms when there
//! is nothing yet. Frames stay buffered until a later GET acknowledges them with a larger
//! `after`, so a lost response loses nothing. The buffer is bounded: a client that stops
//! collecting frames stops the session from draining its queue, and the session is cut as a
//! slow consumer like any other (see the `session` module). A user holds a bounded number of sessions on
//! a node (more are `429 rate_limited`), and a session never polled ends quickly. A session id
//! names its node (`<random>~<node_id>`): a request
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
use session::{PollWire, Shared};
use std::collections::HashMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;
use switchboard_core::session::{PreAuth, run_session};
use switchboard_core::transport::Inbound;
use switchboard_core::{Error, Node};
use switchboard_proto::ErrorCode;
use tokio::sync::mpsc;

pub mod body;
mod session;

pub use session::PollTransport;

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
    /// Bytes buffered per session before the session stops draining (then is cut).
    pub max_buffered_bytes: usize,
    /// A session with no GET at all for this long ends (shorter than `idle`: a session nobody
    /// polls holds a connection slot and shows its user online).
    pub first_get: Duration,
    /// Client frames queued per session before `POST` answers `rate_limited`.
    pub inbound_queue: usize,
    /// Resolves other nodes' URLs (cluster mode); `None` on a single node.
    pub locate: Option<NodeLocator>,
}

impl PollConfig {
    /// Defaults: 60 s idle expiry (10 s before the first GET), 30 s longest wait, 1024
    /// buffered frames and 4 MiB, 256 queued inbound.
    pub fn new(public_url: String) -> PollConfig {
        PollConfig {
            public_url,
            idle: Duration::from_secs(60),
            max_wait: Duration::from_secs(30),
            max_buffered: 1024,
            max_buffered_bytes: 4 << 20,
            first_get: Duration::from_secs(10),
            inbound_queue: 256,
            locate: None,
        }
    }
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
    let body = match body::parse_open_body(&body) {
        Ok(b) => b,
        Err(e) => return ApiError(Error::bad_request(e)).into_response(),
    };
    let id = format!(
        "{:016x}{:016x}~{}",
        switchboard_proto::ids::random_u64(),
        switchboard_proto::ids::random_u64(),
        node.id
    );
    let (tx, rx) = mpsc::channel(polls.config.inbound_queue.max(1));
    let shared = Arc::new(Shared::new(principal.user_id.clone(), tx));
    {
        // Counted and added under one lock, so racing opens cannot pass the cap together.
        let mut sessions = polls.sessions.lock();
        let cap = node.limits.abuse.poll_sessions_per_user;
        let held = sessions
            .values()
            .filter(|s| s.user_id == principal.user_id && s.is_running())
            .count();
        if held >= cap {
            return ApiError(Error::rate_limited(
                format!("at most {cap} long-poll sessions per user; close one (DELETE) first"),
                polls.config.first_get,
            ))
            .into_response();
        }
        sessions.insert(id.clone(), shared.clone());
    }
    let wire = Arc::new(PollWire {
        shared: shared.clone(),
        max: polls.config.max_buffered.max(8),
        max_bytes: polls.config.max_buffered_bytes.max(1),
    });
    let transport = PollTransport {
        shared,
        rx,
        idle: polls.config.idle,
        first_get: polls.config.first_get,
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
        Some((_, owner)) if owner != &*polls.node.id => {
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
    let frames = match body::parse_frames_body(&body) {
        Ok(f) => f,
        Err(e) => return ApiError(Error::bad_request(e)).into_response(),
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
    shared.got();
    if let Some(tx) = shared.inbound.lock().as_ref() {
        let _ = tx.try_send(Inbound::Alive);
    }
    let generation = {
        let mut b = shared.buffer.lock();
        b.get_generation += 1;
        b.acknowledge(q.after);
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

/// A node's poll URL from its announced base URL.
pub fn poll_endpoint(public_url: &str) -> Value {
    Value::String(format!("{}/v1/poll", public_url.trim_end_matches('/')))
}
