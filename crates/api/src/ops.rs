//! Operational endpoints: `/v1/node` (what dispatchers probe), `/v1/dispatch` (placement),
//! `/healthz`, `/readyz` and `/metrics`.
//!
//! Dispatch on a single node answers with the node itself, and honours draining and the
//! connection high-water mark (90% of `--max-connections`): past it, `503 overloaded` with a
//! jittered `Retry-After`. Cluster-wide placement over many gateways is the dispatcher issue's.

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

/// Share of `max_connections` past which a node takes no new clients.
pub const HIGH_WATER: f64 = 0.9;

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

/// `GET /v1/dispatch`: where a client should connect.
pub async fn dispatch(State(s): State<AppState>) -> Response {
    let max = s.node.limits.max_connections as f64;
    let full = (s.node.hub.open_connections() as f64) >= max * HIGH_WATER;
    if !s.config.gateway || s.node.is_draining() || full {
        let why = if !s.config.gateway {
            "no gateway is known to this dispatcher"
        } else if s.node.is_draining() {
            "the node is draining"
        } else {
            "every node is at capacity"
        };
        return ApiError(Error::new(ErrorCode::Overloaded, why)).into_response();
    }
    Json(json!({
        "node_id": s.node.id,
        "endpoints": endpoints(&s),
        "alternates": [],
        "ttl_ms": 30_000,
        "backoff": {"base_ms": 500, "max_ms": 30_000},
    }))
    .into_response()
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
