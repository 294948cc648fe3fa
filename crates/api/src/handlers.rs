//! The business API handlers: users, sessions, rooms, members, messages, presence.
//! Each one checks input, calls the node's services, and shapes the JSON answer.

use crate::AppState;
use crate::extract::{Authed, JsonBody, QueryParams};
use crate::limits::ClientIp;
use axum::Json;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use serde_json::{Value, json};
use switchboard_core::Error;
use switchboard_core::backend::{HistoryQuery, Room, Visibility};
use switchboard_core::node::{Publisher, clamp_limit};
use switchboard_gateway::http_error::ApiError;
use switchboard_proto::{Conv, MessageBody};

type ApiResult<T = Response> = Result<T, ApiError>;

fn created(v: Value) -> Response {
    (StatusCode::CREATED, Json(v)).into_response()
}

fn room_json(r: &Room) -> Value {
    json!({"room_id": r.room_id, "name": r.name, "visibility": r.visibility, "owner": r.owner, "created_at": r.created_at_ms})
}

/// `{username, password}`.
#[derive(Deserialize)]
pub struct Credentials {
    username: String,
    password: String,
}

/// `POST /v1/users`: registers a user (limited per client address).
pub async fn register(
    State(s): State<AppState>,
    ClientIp(ip): ClientIp,
    JsonBody(c): JsonBody<Credentials>,
) -> ApiResult {
    let user = s.node.register_from(ip, &c.username, &c.password).await?;
    Ok(created(
        json!({"user_id": user.user_id, "username": user.username}),
    ))
}

/// `POST /v1/sessions`: logs in and returns a token (limited per client address, with a
/// backoff after failures per username and per address).
pub async fn login(
    State(s): State<AppState>,
    ClientIp(ip): ClientIp,
    JsonBody(c): JsonBody<Credentials>,
) -> ApiResult {
    let t = s.node.login_from(ip, &c.username, &c.password).await?;
    Ok(created(json!(t)))
}

/// `DELETE /v1/sessions/current`: revokes the token and ends its live connections everywhere.
pub async fn logout(State(s): State<AppState>, a: Authed) -> ApiResult {
    s.node.logout(&a.token).await?;
    Ok(StatusCode::NO_CONTENT.into_response())
}

/// `DELETE /v1/sessions`: revokes every token of the caller and ends their live connections
/// everywhere (`disconnect` `logged_out`).
pub async fn logout_everywhere(State(s): State<AppState>, a: Authed) -> ApiResult {
    s.node
        .revoke_sessions(
            &a.principal.user_id,
            None,
            switchboard_proto::DisconnectReason::LoggedOut,
        )
        .await?;
    Ok(StatusCode::NO_CONTENT.into_response())
}

/// `{password, new_password}`.
#[derive(Deserialize)]
pub struct PasswordChange {
    password: String,
    new_password: String,
}

/// `PUT /v1/me/password`: changes the password (a wrong current one is 401) and revokes every
/// other token of the user, ending their connections everywhere.
pub async fn change_password(
    State(s): State<AppState>,
    a: Authed,
    JsonBody(c): JsonBody<PasswordChange>,
) -> ApiResult {
    s.node
        .change_password(&a.principal, &c.password, &c.new_password)
        .await?;
    Ok(StatusCode::NO_CONTENT.into_response())
}

/// `GET /v1/me`.
pub async fn me(State(s): State<AppState>, a: Authed) -> ApiResult {
    let u = s.node.user(&a.principal.user_id).await?;
    Ok(Json(json!({"user_id": u.user_id, "username": u.username})).into_response())
}

/// `GET /v1/users/{user_id}`: a user's public profile (so clients can show names).
pub async fn user(State(s): State<AppState>, _a: Authed, Path(user_id): Path<String>) -> ApiResult {
    let u = s.node.user(&user_id).await?;
    Ok(Json(json!({"user_id": u.user_id, "username": u.username})).into_response())
}

/// `?username=` on `GET /v1/users`.
#[derive(Deserialize)]
pub struct UsernameQuery {
    username: Option<String>,
}

/// `GET /v1/users?username=`: finds a user by username (compared as at login: NFKC, ignoring
/// case), so a client can open a direct message to a name. Any signed-in user may ask.
pub async fn find_user(
    State(s): State<AppState>,
    _a: Authed,
    QueryParams(q): QueryParams<UsernameQuery>,
) -> ApiResult {
    let Some(name) = q.username.filter(|n| !n.is_empty()) else {
        return Err(Error::bad_request("the username query parameter is required").into());
    };
    let u = s.node.user_by_username(&name).await?;
    Ok(Json(json!({"user_id": u.user_id, "username": u.username})).into_response())
}

/// `{name, visibility}`.
#[derive(Deserialize)]
pub struct NewRoom {
    name: String,
    #[serde(default = "public")]
    visibility: Visibility,
}

fn public() -> Visibility {
    Visibility::Public
}

/// `POST /v1/rooms`.
pub async fn create_room(
    State(s): State<AppState>,
    a: Authed,
    JsonBody(r): JsonBody<NewRoom>,
) -> ApiResult {
    let room = s
        .node
        .create_room(&a.principal.user_id, &r.name, r.visibility)
        .await?;
    Ok(created(room_json(&room)))
}

/// `GET /v1/rooms`: public rooms and rooms I belong to.
pub async fn list_rooms(State(s): State<AppState>, a: Authed) -> ApiResult {
    let rooms = s.node.rooms(&a.principal.user_id).await?;
    Ok(Json(json!({"rooms": rooms.iter().map(room_json).collect::<Vec<_>>()})).into_response())
}

/// `GET /v1/rooms/{room_id}`.
pub async fn get_room(
    State(s): State<AppState>,
    a: Authed,
    Path(room_id): Path<String>,
) -> ApiResult {
    let room = s.node.visible_room(&a.principal.user_id, &room_id).await?;
    Ok(Json(room_json(&room)).into_response())
}

/// `GET /v1/rooms/{room_id}/members`.
pub async fn members(
    State(s): State<AppState>,
    a: Authed,
    Path(room_id): Path<String>,
) -> ApiResult {
    let members = s.node.members(&a.principal.user_id, &room_id).await?;
    Ok(Json(json!({"members": members})).into_response())
}

/// `PUT /v1/rooms/{room_id}/members/{user_id}`: join, or the owner adds someone.
pub async fn add_member(
    State(s): State<AppState>,
    a: Authed,
    Path((room_id, user_id)): Path<(String, String)>,
) -> ApiResult {
    s.node
        .add_member(&a.principal.user_id, &room_id, &user_id)
        .await?;
    Ok(StatusCode::NO_CONTENT.into_response())
}

/// `DELETE /v1/rooms/{room_id}/members/{user_id}`: leave, or the owner removes someone.
pub async fn remove_member(
    State(s): State<AppState>,
    a: Authed,
    Path((room_id, user_id)): Path<(String, String)>,
) -> ApiResult {
    s.node
        .remove_member(&a.principal.user_id, &room_id, &user_id)
        .await?;
    Ok(StatusCode::NO_CONTENT.into_response())
}

/// `{body, client_msg_id?}`.
#[derive(Deserialize)]
pub struct NewMessage {
    body: MessageBody,
    #[serde(default)]
    client_msg_id: Option<String>,
}

/// `POST /v1/rooms/{room_id}/messages`.
pub async fn publish_room(
    State(s): State<AppState>,
    a: Authed,
    Path(room_id): Path<String>,
    JsonBody(m): JsonBody<NewMessage>,
) -> ApiResult {
    let conv = conv_of(Conv::parse(&format!("room:{room_id}")))?;
    publish_as_user(&s, &a, conv, m).await
}

/// `POST /v1/users/{user_id}/messages`: a direct message.
pub async fn send_direct(
    State(s): State<AppState>,
    a: Authed,
    Path(user_id): Path<String>,
    JsonBody(m): JsonBody<NewMessage>,
) -> ApiResult {
    let conv = conv_of(Conv::parse(&format!("user:{user_id}")))?;
    publish_as_user(&s, &a, conv, m).await
}

/// Publishes `m` into `conv` as the authenticated user (within the user's HTTP publish rate);
/// `201` with the receipt.
async fn publish_as_user(s: &AppState, a: &Authed, conv: Conv, m: NewMessage) -> ApiResult {
    s.node.guards.http_publish(&a.principal.user_id)?;
    let r = s
        .node
        .publish(
            Publisher::User(&a.principal.user_id),
            conv,
            m.body,
            m.client_msg_id,
        )
        .await?;
    Ok(created(json!(r)))
}

fn conv_of(c: Option<Conv>) -> Result<Conv, ApiError> {
    c.ok_or_else(|| ApiError(Error::not_found("no such conversation")))
}

/// `after`, `before`, `limit`.
#[derive(Deserialize)]
pub struct Page {
    after: Option<u64>,
    before: Option<u64>,
    limit: Option<u32>,
}

async fn page(s: &AppState, user_id: &str, conv: Conv, p: Page) -> ApiResult {
    let limit = clamp_limit(p.limit)?;
    let query = HistoryQuery {
        after: p.after,
        before: p.before,
        limit,
    };
    let page = s.node.history(user_id, &conv, query).await?;
    // `more` only when the byte cap cut the page short, as in the `history` frame.
    let body = if page.more {
        json!({"messages": page.messages, "more": true})
    } else {
        json!({"messages": page.messages})
    };
    Ok(Json(body).into_response())
}

/// `GET /v1/rooms/{room_id}/messages`.
pub async fn room_messages(
    State(s): State<AppState>,
    a: Authed,
    Path(room_id): Path<String>,
    QueryParams(p): QueryParams<Page>,
) -> ApiResult {
    let conv = conv_of(Conv::parse(&format!("room:{room_id}")))?;
    page(&s, &a.principal.user_id, conv, p).await
}

/// `GET /v1/users/me/messages`: my personal stream.
pub async fn my_messages(
    State(s): State<AppState>,
    a: Authed,
    QueryParams(p): QueryParams<Page>,
) -> ApiResult {
    let conv = Conv::user(&a.principal.user_id);
    page(&s, &a.principal.user_id, conv, p).await
}

/// `ids=a,b,c`.
#[derive(Deserialize)]
pub struct Ids {
    ids: String,
}

/// `GET /v1/presence/users?ids=a,b,c`.
pub async fn user_presence(
    State(s): State<AppState>,
    _a: Authed,
    QueryParams(q): QueryParams<Ids>,
) -> ApiResult {
    let ids: Vec<String> = q
        .ids
        .split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(str::to_owned)
        .collect();
    let counts = s.node.user_presence(&ids).await?;
    let users: serde_json::Map<String, Value> = ids
        .into_iter()
        .zip(counts)
        .map(|(id, n)| {
            let v = if n > 0 {
                json!({"online": true, "connections": n})
            } else {
                json!({"online": false})
            };
            (id, v)
        })
        .collect();
    Ok(Json(json!({"users": users})).into_response())
}

/// `GET /v1/rooms/{room_id}/presence`: online subscribers.
pub async fn room_presence(
    State(s): State<AppState>,
    a: Authed,
    Path(room_id): Path<String>,
) -> ApiResult {
    let conv = conv_of(Conv::parse(&format!("room:{room_id}")))?;
    let users = s.node.presence(&a.principal.user_id, &conv).await?;
    Ok(Json(json!({"users": users})).into_response())
}
