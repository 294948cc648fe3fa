//! Non-sticky long-polling: an Engine.IO polling request whose `sid` names another node is
//! forwarded to that node, and its answer relayed, so a stock client behind a round-robin load
//! balancer works (it cannot follow a redirect).
//!
//! Bounded on every side: the request body (the node's `maxPayload` plus framing), the answer
//! body (the same), the time (a polling GET may be held for a ping interval), and the forwards
//! in flight at once (past it, `503`). A forwarded request carries [`FORWARDED_HEADER`] and is
//! never forwarded again (a loop, e.g. two nodes that both think the other owns a sid, ends at
//! the second hop with Engine.IO's "Session ID unknown"), and a request is only forwarded to a
//! node the registry lists as live.

use crate::poll::NodeLocator;
use axum::body::{Body, Bytes};
use axum::extract::Request;
use axum::http::{HeaderValue, Method, StatusCode, header};
use axum::response::{IntoResponse, Response};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::Semaphore;

/// Marks a request one node forwarded to another (its value: the forwarding node's id).
pub const FORWARDED_HEADER: &str = "x-switchboard-forwarded-by";

/// Forwards polling requests to the node owning their session.
pub struct Forwarder {
    client: reqwest::Client,
    locate: NodeLocator,
    node_id: String,
    permits: Arc<Semaphore>,
    max_body: usize,
}

/// How a forward is bounded.
#[derive(Debug, Clone)]
pub struct ForwardLimits {
    /// Largest request or answer body, in bytes.
    pub max_body: usize,
    /// Longest wait for the owner's whole answer (longer than a polling GET is held).
    pub timeout: Duration,
    /// Forwards in flight at once.
    pub concurrent: usize,
}

impl Forwarder {
    /// A forwarder for node `node_id`, finding other nodes with `locate`.
    pub fn new(node_id: String, locate: NodeLocator, limits: ForwardLimits) -> Forwarder {
        let client = reqwest::Client::builder()
            .timeout(limits.timeout)
            .connect_timeout(Duration::from_secs(2))
            .pool_max_idle_per_host(32)
            .build()
            .unwrap_or_default();
        Forwarder {
            client,
            locate,
            node_id,
            permits: Arc::new(Semaphore::new(limits.concurrent.max(1))),
            max_body: limits.max_body,
        }
    }

    /// Forwards `req` (a polling request for a session of node `owner`) to that node and
    /// answers what it answered; an Engine.IO error when it cannot.
    pub async fn forward(&self, owner: &str, req: Request) -> Response {
        if req.headers().contains_key(FORWARDED_HEADER) || owner == self.node_id {
            return unknown_sid();
        }
        let Ok(_permit) = self.permits.clone().try_acquire_owned() else {
            return (
                StatusCode::SERVICE_UNAVAILABLE,
                "too many forwarded requests",
            )
                .into_response();
        };
        let Some(base) = (self.locate)(owner.to_owned()).await else {
            return unknown_sid();
        };
        let (parts, body) = req.into_parts();
        let Some(path) = parts.uri.path_and_query().map(|p| p.as_str().to_owned()) else {
            return unknown_sid();
        };
        let body = match axum::body::to_bytes(body, self.max_body).await {
            Ok(b) => b,
            Err(_) => return (StatusCode::PAYLOAD_TOO_LARGE, "payload too large").into_response(),
        };
        let url = format!("{}{path}", base.trim_end_matches('/'));
        let method = match parts.method {
            Method::GET => reqwest::Method::GET,
            Method::POST => reqwest::Method::POST,
            _ => return (StatusCode::BAD_REQUEST, "unsupported method").into_response(),
        };
        let mut out = self.client.request(method, &url).body(body);
        for name in [
            header::CONTENT_TYPE,
            header::COOKIE,
            header::USER_AGENT,
            header::ORIGIN,
        ] {
            if let Some(v) = parts.headers.get(&name).and_then(|v| v.to_str().ok()) {
                out = out.header(name.as_str(), v);
            }
        }
        out = out.header(FORWARDED_HEADER, &self.node_id);
        match out.send().await {
            Ok(resp) => self.relay(resp).await,
            Err(e) => {
                tracing::debug!(owner, error = %e, "forwarding a polling request failed");
                (StatusCode::BAD_GATEWAY, "the session's node did not answer").into_response()
            }
        }
    }

    /// The owner's answer, with its status and content type, bounded in size.
    async fn relay(&self, mut resp: reqwest::Response) -> Response {
        let status =
            StatusCode::from_u16(resp.status().as_u16()).unwrap_or(StatusCode::BAD_GATEWAY);
        // The content type, and CORS as the owner answered it (browsers).
        let kept: Vec<(header::HeaderName, HeaderValue)> = resp
            .headers()
            .iter()
            .filter(|(n, _)| {
                *n == reqwest::header::CONTENT_TYPE || n.as_str().starts_with("access-control-")
            })
            .filter_map(|(n, v)| {
                Some((
                    header::HeaderName::from_bytes(n.as_str().as_bytes()).ok()?,
                    HeaderValue::from_bytes(v.as_bytes()).ok()?,
                ))
            })
            .collect();
        let mut body = Vec::new();
        loop {
            match resp.chunk().await {
                Ok(Some(chunk)) => {
                    if body.len() + chunk.len() > self.max_body {
                        return (StatusCode::BAD_GATEWAY, "the answer was too large")
                            .into_response();
                    }
                    body.extend_from_slice(&chunk);
                }
                Ok(None) => break,
                Err(_) => {
                    return (StatusCode::BAD_GATEWAY, "the session's node did not answer")
                        .into_response();
                }
            }
        }
        let mut out = Response::new(Body::from(Bytes::from(body)));
        *out.status_mut() = status;
        for (n, v) in kept {
            out.headers_mut().append(n, v);
        }
        out
    }
}

/// Engine.IO's answer for a session this node cannot reach: the client starts over.
pub fn unknown_sid() -> Response {
    (
        StatusCode::BAD_REQUEST,
        [(header::CONTENT_TYPE, "application/json")],
        r#"{"code":1,"message":"Session ID unknown"}"#,
    )
        .into_response()
}

/// The node that owns an Engine.IO `sid` (`<random>~<node_id>`), if it names one.
pub fn owner_of(sid: &str) -> Option<&str> {
    sid.rsplit_once('~')
        .map(|(_, node)| node)
        .filter(|n| !n.is_empty())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sids_name_their_node() {
        assert_eq!(owner_of("abc~n_1"), Some("n_1"));
        assert_eq!(owner_of("abc"), None);
        assert_eq!(owner_of("abc~"), None);
    }
}
