//! The server API for application back ends, authenticated by `X-Api-Key`: publish anywhere,
//! issue tokens for your own users (bring-your-own-auth), disconnect a user everywhere, revoke
//! every token of a user.

use crate::AppState;
use crate::extract::{JsonBody, OptionalJsonBody, ServerKey};
use axum::Json;
use axum::Router;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use serde::Deserialize;
use serde_json::json;
use std::time::Duration;
use switchboard_core::node::Publisher;
use switchboard_gateway::http_error::ApiError;
use switchboard_proto::{Conv, DisconnectReason, MessageBody};

/// The server API routes.
pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/v1/server/publish", post(publish))
        .route("/v1/server/users/{user_id}/tokens", post(token))
        .route("/v1/server/users/{user_id}/disconnect", post(disconnect))
        .route("/v1/server/users/{user_id}/revoke", post(revoke))
}

/// `{conv, body, client_msg_id?}`.
#[derive(Deserialize)]
pub struct ServerPublish {
    conv: Conv,
    body: MessageBody,
    #[serde(default)]
    client_msg_id: Option<String>,
}

/// `POST /v1/server/publish`: publish as the server (`from: null`) into any conversation.
pub async fn publish(
    State(s): State<AppState>,
    _k: ServerKey,
    JsonBody(p): JsonBody<ServerPublish>,
) -> Result<Response, ApiError> {
    let r = s
        .node
        .publish(Publisher::Server, p.conv, p.body, p.client_msg_id)
        .await?;
    Ok((StatusCode::CREATED, Json(json!(r))).into_response())
}

/// `{ttl_s?}`.
#[derive(Deserialize, Default)]
pub struct TokenRequest {
    #[serde(default)]
    ttl_s: Option<u64>,
}

/// `POST /v1/server/users/{user_id}/tokens`: a token for an application user (created if unknown).
pub async fn token(
    State(s): State<AppState>,
    _k: ServerKey,
    Path(user_id): Path<String>,
    OptionalJsonBody(body): OptionalJsonBody<TokenRequest>,
) -> Result<Response, ApiError> {
    let ttl = body
        .ttl_s
        .map(|s| Duration::from_secs(s.clamp(1, 366 * 24 * 3600)));
    let t = s.node.issue_server_token(&user_id, ttl).await?;
    Ok((StatusCode::CREATED, Json(json!(t))).into_response())
}

/// `{reason?}`: `kicked` (default) or another disconnect reason.
#[derive(Deserialize, Default)]
pub struct DisconnectRequest {
    #[serde(default)]
    reason: Option<DisconnectReason>,
}

/// `POST /v1/server/users/{user_id}/disconnect`: ends that user's connections on every node.
pub async fn disconnect(
    State(s): State<AppState>,
    _k: ServerKey,
    Path(user_id): Path<String>,
    OptionalJsonBody(body): OptionalJsonBody<DisconnectRequest>,
) -> Result<Response, ApiError> {
    let reason = body.reason.unwrap_or(DisconnectReason::Kicked);
    s.node.disconnect_user(&user_id, reason).await?;
    Ok(StatusCode::NO_CONTENT.into_response())
}

/// `POST /v1/server/users/{user_id}/revoke` (`{reason?}`, default `logged_out`): revokes every
/// token of the user and ends their connections on every node with that reason.
pub async fn revoke(
    State(s): State<AppState>,
    _k: ServerKey,
    Path(user_id): Path<String>,
    OptionalJsonBody(body): OptionalJsonBody<DisconnectRequest>,
) -> Result<Response, ApiError> {
    let reason = body.reason.unwrap_or(DisconnectReason::LoggedOut);
    s.node.revoke_sessions(&user_id, None, reason).await?;
    Ok(StatusCode::NO_CONTENT.into_response())
}
