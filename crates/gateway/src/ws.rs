//! The WebSocket transport at `GET /v1/ws`.
//!
//! Buffers are tuned (see shared/DEPENDENCIES.md and docs/PERFORMANCE.md). The read buffer is
//! [`READ_BUFFER`] bytes: tungstenite keeps it for the connection's life and zero-fills it before
//! every read attempt, so it is both per-connection memory and per-delivery work; client frames
//! are small, and a larger one is read in several calls. Written frames collect in tungstenite's
//! write buffer until the session flushes a batch (or [`WRITE_BATCH`] bytes are waiting), so a
//! connection with several queued deliveries gets them in one `send()`. Frames up to
//! `max_frame_bytes` are handed to the session; larger ones up to four times that are answered
//! with `too_large` and the connection goes on; beyond that the socket is closed (1009).

use crate::http_error::{ApiError, bearer};
use axum::Router;
use axum::extract::ws::{CloseFrame, Message, Utf8Bytes, WebSocket, WebSocketUpgrade};
use axum::extract::{Query, State};
use axum::http::HeaderMap;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use bytes::Bytes;
use futures_util::SinkExt;
use std::sync::Arc;
use switchboard_core::Node;
use switchboard_core::session::run_session;
use switchboard_core::transport::{Inbound, Transport, TransportError};
use switchboard_core::{Error, auth::Principal};
use switchboard_proto::ErrorCode;

/// Bytes read from the socket per read call (tungstenite's `read_buffer_size`).
pub const READ_BUFFER: usize = 512;

/// Buffered outgoing bytes that force a write before the session's flush
/// (tungstenite's `write_buffer_size`).
pub const WRITE_BATCH: usize = 4096;

/// WebSocket settings derived from the node's limits.
#[derive(Debug, Clone, Copy)]
pub struct WsConfig {
    /// Frames above this get `too_large`.
    pub max_frame_bytes: usize,
}

impl WsConfig {
    /// The size past which the WebSocket library refuses a message and the socket is closed.
    fn hard_limit(self) -> usize {
        self.max_frame_bytes.saturating_mul(4).max(16 * 1024)
    }
}

/// The `/v1/ws` route.
pub fn ws_route(node: Arc<Node>) -> Router {
    Router::new().route("/v1/ws", get(upgrade)).with_state(node)
}

#[derive(serde::Deserialize)]
struct WsQuery {
    token: Option<String>,
}

/// Refuses early (before the upgrade) what would be refused anyway: a full or draining node,
/// a bad token on the request. A good token means `welcome` is sent unasked.
async fn upgrade(
    State(node): State<Arc<Node>>,
    headers: HeaderMap,
    Query(query): Query<WsQuery>,
    ws: WebSocketUpgrade,
) -> Response {
    if node.is_draining() {
        return ApiError(Error::new(
            ErrorCode::Overloaded,
            "this node is draining; ask the dispatcher for another",
        ))
        .into_response();
    }
    if node.hub.open_connections() >= node.limits.max_connections {
        return ApiError(Error::new(
            ErrorCode::Overloaded,
            "this node is at its connection limit",
        ))
        .into_response();
    }
    let token = bearer(&headers).map(str::to_owned).or(query.token);
    let principal: Option<Principal> = match token {
        Some(t) => match node.authenticate(&t).await {
            Ok(p) => Some(p),
            Err(e) => return ApiError(e).into_response(),
        },
        None => None,
    };
    let cfg = WsConfig {
        max_frame_bytes: node.limits.max_frame_bytes,
    };
    ws.read_buffer_size(READ_BUFFER)
        .write_buffer_size(WRITE_BATCH)
        .max_message_size(cfg.hard_limit())
        .max_frame_size(cfg.hard_limit())
        .on_upgrade(move |socket| {
            run_session(
                node,
                WsTransport::new(socket, cfg),
                principal.map(Into::into),
            )
        })
}

/// A WebSocket as a session transport.
pub struct WsTransport {
    socket: WebSocket,
    config: WsConfig,
    /// Set after an unrecoverable read error, with the close code to send (1009 message too
    /// big, 1007 invalid UTF-8, 1002 protocol error): the next `recv` reports the end.
    broken: Option<u16>,
}

impl WsTransport {
    /// Wraps an upgraded socket.
    pub fn new(socket: WebSocket, config: WsConfig) -> WsTransport {
        WsTransport {
            socket,
            config,
            broken: None,
        }
    }

    fn frame(&self, data: Bytes) -> Inbound {
        if data.len() > self.config.max_frame_bytes {
            Inbound::TooLarge(data.len())
        } else {
            Inbound::Frame(data)
        }
    }
}

impl Transport for WsTransport {
    async fn recv(&mut self) -> Option<Inbound> {
        if self.broken.is_some() {
            return None;
        }
        match self.socket.recv().await? {
            Ok(Message::Text(t)) => Some(self.frame(Bytes::from(t))),
            // Binary frames carry the same JSON (some client libraries only send binary).
            Ok(Message::Binary(b)) => Some(self.frame(b)),
            Ok(Message::Ping(_) | Message::Pong(_)) => Some(Inbound::Alive),
            Ok(Message::Close(_)) => None,
            Err(e) => {
                use tokio_tungstenite::tungstenite::Error as WsError;
                let inner = e.into_inner();
                match inner.downcast_ref::<WsError>() {
                    Some(WsError::Capacity(c)) => {
                        tracing::debug!(error = %c, "oversized WebSocket message");
                        self.broken = Some(1009);
                        Some(Inbound::TooLarge(self.config.hard_limit() + 1))
                    }
                    Some(WsError::Utf8(_)) => {
                        self.broken = Some(1007);
                        None
                    }
                    _ => {
                        tracing::debug!(error = %inner, "WebSocket read failed");
                        self.broken = Some(1002);
                        None
                    }
                }
            }
        }
    }

    async fn send(&mut self, frame: Bytes) -> Result<(), TransportError> {
        let text = Utf8Bytes::try_from(frame).map_err(|e| TransportError(e.to_string()))?;
        self.socket
            .feed(Message::Text(text))
            .await
            .map_err(|e| TransportError(e.to_string()))
    }

    async fn flush(&mut self) -> Result<(), TransportError> {
        self.socket
            .flush()
            .await
            .map_err(|e| TransportError(e.to_string()))
    }

    async fn ping(&mut self) -> Result<(), TransportError> {
        self.socket
            .feed(Message::Ping(Bytes::new()))
            .await
            .map_err(|e| TransportError(e.to_string()))
    }

    async fn close(&mut self) {
        let code = self.broken.unwrap_or(1000);
        let _ = self
            .socket
            .send(Message::Close(Some(CloseFrame {
                code,
                reason: Utf8Bytes::from_static(""),
            })))
            .await;
    }
}
