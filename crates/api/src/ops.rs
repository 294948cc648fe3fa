//! Operational endpoints: `/v1/node` (what dispatchers probe), `/v1/dispatch` (placement),
//! `/healthz`, `/readyz` and `/metrics`.
//!
//! Dispatch is answered by `switchboard-dispatcher` from its probed view of the gateways; with
//! no gateway able to take a client: `503 overloaded` with a jittered `Retry-After`.

use crate::AppState;
use axum::Json;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};
use switchboard_core::Error;
use switchboard_gateway::http_error::ApiError;
use switchboard_proto::ErrorCode;

/// The version reported by `/v1/node`.
pub const VERSION: &str = env!("CARGO_PKG_VERSION");

fn endpoints(s: &AppState) -> Value {
    endpoints_for(&s.config.public_url, s.config.tcp_url.as_deref())
}

/// The client endpoints of a node with this base URL (and TCP address, if any).
pub fn endpoints_for(public_url: &str, tcp_url: Option<&str>) -> Value {
    let base = public_url.trim_end_matches('/');
    let ws = if let Some(rest) = base.strip_prefix("https://") {
        format!("wss://{rest}/v1/ws")
    } else {
        format!("ws://{}/v1/ws", base.trim_start_matches("http://"))
    };
    json!({"ws": ws, "poll": format!("{base}/v1/poll"), "tcp": tcp_url})
}

/// `GET /v1/node`.
pub async fn node_info(State(s): State<AppState>) -> Json<Value> {
    Json(json!({
        "node_id": s.node.id,
        "connections": s.node.hub.open_connections(),
        "max_connections": s.node.limits.max_connections,
        "weight": s.config.weight,
        "draining": s.node.is_draining(),
        "endpoints": endpoints(&s),
        "version": VERSION,
    }))
}

/// `?user_id=` on `/v1/dispatch`.
#[derive(serde::Deserialize, Default)]
pub struct DispatchQuery {
    user_id: Option<String>,
}

/// `GET /v1/dispatch`: where a client should connect, from the dispatcher's in-memory view (no
/// backend round trip). The affinity key is `user_id` when given, else a hash of the bearer
/// token (so one device keeps its node), else none.
pub async fn dispatch(
    State(s): State<AppState>,
    headers: axum::http::HeaderMap,
    crate::extract::QueryParams(q): crate::extract::QueryParams<DispatchQuery>,
) -> Response {
    let affinity = q.user_id.filter(|u| !u.is_empty()).or_else(|| {
        switchboard_gateway::http_error::bearer(&headers).map(|t| {
            use sha2::Digest;
            hex::encode(&sha2::Sha256::digest(t.as_bytes())[..8])
        })
    });
    let answer = s
        .dispatcher
        .as_ref()
        .and_then(|d| d.dispatch(affinity.as_deref()));
    match answer {
        Some(body) => Json(body).into_response(),
        None => {
            let why = if s.dispatcher.is_none() {
                "this process is not a dispatcher"
            } else {
                "no gateway can take a client now (all full, draining or down)"
            };
            ApiError(Error::new(ErrorCode::Overloaded, why)).into_response()
        }
    }
}

/// `GET /healthz`: the process is alive.
pub async fn healthz() -> Json<Value> {
    Json(json!({"status": "ok"}))
}

/// `GET /readyz`: ready to take clients (backend up, not draining).
pub async fn readyz(State(s): State<AppState>) -> Response {
    if s.node.is_draining() {
        return ApiError(Error::new(ErrorCode::Unavailable, "draining")).into_response();
    }
    if !s.node.backend.lifecycle.ready().await {
        return ApiError(Error::new(ErrorCode::Unavailable, "backend not ready")).into_response();
    }
    Json(json!({"status": "ready"})).into_response()
}

/// `GET /metrics`: Prometheus (OpenMetrics) text.
pub async fn metrics(State(s): State<AppState>) -> Response {
    (
        StatusCode::OK,
        [(
            header::CONTENT_TYPE,
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
        )],
        s.node.metrics.render(),
    )
        .into_response()
}

/// `POST /v1/server/nodes/self/drain` (server API key; served on every role, since it is about
/// this node): stop taking clients, tell the clients to reconnect elsewhere (paced over the
/// drain window), then exit.
pub async fn drain(State(s): State<AppState>, _k: crate::extract::ServerKey) -> Response {
    s.node.request_drain();
    (
        StatusCode::ACCEPTED,
        Json(json!({"node_id": s.node.id, "draining": true})),
    )
        .into_response()
}

/// Body of [`shed`].
#[derive(serde::Deserialize)]
pub struct ShedRequest {
    count: u64,
}

/// The most connections one shed request moves.
const SHED_MAX: u64 = 10_000;

/// `POST /v1/server/nodes/self/shed {count}` (server API key): tells up to `count` of this
/// gateway's connections to reconnect through the dispatcher (`reconnect`, then `disconnect
/// shutdown`; they resume where they were). The dispatcher's rebalancing sends it to gateways
/// above their share after new gateways joined.
pub async fn shed(
    State(s): State<AppState>,
    _k: crate::extract::ServerKey,
    crate::extract::JsonBody(r): crate::extract::JsonBody<ShedRequest>,
) -> Response {
    let n = usize::try_from(r.count.min(SHED_MAX)).unwrap_or(0);
    let told = s
        .node
        .hub
        .kill_some(n, switchboard_proto::DisconnectReason::Shutdown);
    Json(json!({"node_id": s.node.id, "told": told})).into_response()
}
