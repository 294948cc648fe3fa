//! Switchboard's HTTP API: the business endpoints (users, sessions, rooms, members, messages,
//! presence), the server API for application back ends, and the operational endpoints
//! (dispatch, node info, health, metrics). `router(state)` is used by the binary and by tests.

pub mod bodies;
pub mod cluster;
pub mod extract;
pub mod handlers;
pub mod limits;
pub mod ops;
pub mod server_api;
pub mod web;

use axum::Router;
use axum::extract::DefaultBodyLimit;
use axum::response::IntoResponse;
use axum::routing::{get, post, put};
use std::sync::Arc;
use switchboard_core::{Error, Node};
use switchboard_gateway::http_error::ApiError;
use switchboard_proto::ErrorCode;

/// What the HTTP surface needs besides the node.
#[derive(Debug, Clone)]
pub struct ApiConfig {
    /// Base URL this node advertises (`http://host:port`), from `--public-url`.
    pub public_url: String,
    /// The TCP endpoint to advertise (`tcp://host:port`), if the TCP transport is on.
    pub tcp_url: Option<String>,
    /// Placement weight, from `--weight`.
    pub weight: u32,
    /// The server API key; `None` disables the server API.
    pub api_key: Option<String>,
    /// Whether this process holds client connections (the gateway role).
    pub gateway: bool,
    /// The roles this process runs (`gateway`, `api`, `dispatcher`), as the ops page shows them.
    pub roles: Vec<String>,
}

/// Shared state of every handler.
#[derive(Clone)]
pub struct AppState {
    /// The node's services.
    pub node: Arc<Node>,
    /// HTTP settings.
    pub config: Arc<ApiConfig>,
    /// The dispatcher, when this process has the dispatcher role.
    pub dispatcher: Option<Arc<switchboard_dispatcher::Dispatcher>>,
}

/// The business API and server API routes (the `api` role).
pub fn api_routes(state: AppState) -> Router {
    use handlers::*;
    Router::new()
        .route("/v1/users", post(register).get(find_user))
        .route("/v1/sessions", post(login).delete(logout_everywhere))
        .route("/v1/sessions/current", axum::routing::delete(logout))
        .route("/v1/me", get(me))
        .route("/v1/me/password", put(change_password))
        .route("/v1/users/me/messages", get(my_messages))
        .route("/v1/users/{user_id}", get(user))
        .route("/v1/users/{user_id}/messages", post(send_direct))
        .route("/v1/rooms", post(create_room).get(list_rooms))
        .route("/v1/rooms/{room_id}", get(get_room))
        .route("/v1/rooms/{room_id}/members", get(members))
        .route(
            "/v1/rooms/{room_id}/members/{user_id}",
            put(add_member).delete(remove_member),
        )
        .route(
            "/v1/rooms/{room_id}/messages",
            post(publish_room).get(room_messages),
        )
        .route("/v1/rooms/{room_id}/presence", get(room_presence))
        .route("/v1/presence/users", get(user_presence))
        .route("/v1/server/nodes", get(cluster::nodes))
        .merge(server_api::routes())
        .with_state(state)
}

/// Node info, health, readiness, drain, shedding and stats (every role); `/metrics` is [`metrics_routes`], served
/// with these or on `--metrics-listen`.
pub fn ops_routes(state: AppState) -> Router {
    Router::new()
        .route("/v1/node", get(ops::node_info))
        .route("/healthz", get(ops::healthz))
        .route("/readyz", get(ops::readyz))
        .route("/v1/server/nodes/self/drain", post(ops::drain))
        .route("/v1/server/stats", get(cluster::stats))
        .route("/v1/server/nodes/self/shed", post(ops::shed))
        .with_state(state)
}

/// `/metrics` (every role), on the main listener or on a listener of its own.
pub fn metrics_routes(state: AppState) -> Router {
    Router::new()
        .route("/metrics", get(ops::metrics))
        .with_state(state)
}

/// The dispatcher's route (the `dispatcher` role).
pub fn dispatch_routes(state: AppState) -> Router {
    Router::new()
        .route("/v1/dispatch", get(ops::dispatch))
        .with_state(state)
}

/// Adds what every HTTP surface shares: JSON 404 and 405 answers, the body limit, and the
/// count of error answers by code (`switchboard_errors_total`).
pub fn finish(router: Router, node: Arc<Node>, max_body_bytes: usize) -> Router {
    router
        .fallback(|| async { ApiError(Error::not_found("no such endpoint")) })
        .method_not_allowed_fallback(switchboard_gateway::http_error::method_not_allowed)
        .layer(DefaultBodyLimit::max(max_body_bytes))
        .layer(axum::middleware::from_fn_with_state(node, count_errors))
}

/// Counts error answers by the code [`ApiError`] left in the response extensions, and gives
/// every other error answer (a rejection made inside axum, such as a bad percent-encoding in
/// the path or a plain GET on the WebSocket route) the contract's JSON error shape.
async fn count_errors(
    axum::extract::State(node): axum::extract::State<Arc<Node>>,
    req: axum::extract::Request,
    next: axum::middleware::Next,
) -> axum::response::Response {
    let resp = next.run(req).await;
    let status = resp.status();
    if let Some(code) = resp.extensions().get::<ErrorCode>() {
        node.metrics.error(*code);
        return resp;
    }
    if !(status.is_client_error() || status.is_server_error()) {
        return resp;
    }
    let code = match status.as_u16() {
        401 => ErrorCode::Unauthorized,
        403 => ErrorCode::Forbidden,
        404 => ErrorCode::NotFound,
        413 => ErrorCode::TooLarge,
        429 => ErrorCode::RateLimited,
        503 => ErrorCode::Unavailable,
        500..=599 => ErrorCode::Internal,
        _ => ErrorCode::BadRequest,
    };
    let (parts, body) = resp.into_parts();
    let text = axum::body::to_bytes(body, 4096).await.unwrap_or_default();
    let message = String::from_utf8_lossy(&text).trim().to_owned();
    let mut out = ApiError(Error::new(
        code,
        if message.is_empty() {
            status.to_string()
        } else {
            message
        },
    ))
    .into_response();
    *out.status_mut() = status;
    for (name, value) in parts.headers.iter() {
        if name != axum::http::header::CONTENT_TYPE && name != axum::http::header::CONTENT_LENGTH {
            out.headers_mut().insert(name.clone(), value.clone());
        }
    }
    if let Some(code) = out.extensions().get::<ErrorCode>() {
        node.metrics.error(*code);
    }
    out
}
