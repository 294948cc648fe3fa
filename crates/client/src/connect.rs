//! One connection round: ask the dispatcher, try the chosen node and the alternates over the
//! configured transport, authenticate with `resume`, and wait for `welcome`.

use crate::dispatch::{BackoffHint, DispatchError, Placement, dispatch};
use crate::link::{Incoming, Link, OpenError, open_poll, open_tcp, open_ws};
use crate::net::Net;
use crate::{ClientConfig, ClientError, TransportChoice};
use serde_json::{Value, json};
use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;
use switchboard_proto::frame::Resumed;
use switchboard_proto::{Conv, ErrorCode, ServerFrame};
use tokio::time::Instant;

/// The `welcome` frame's fields the driver uses.
#[derive(Debug)]
pub(crate) struct Welcome {
    pub user_id: String,
    pub node_id: String,
    pub heartbeat_ms: u64,
    pub resumed: BTreeMap<Conv, Resumed>,
}

/// Why one node did not take the connection.
enum NodeError {
    Fatal(ClientError),
    Refused(u16),
    Failed(String),
}

/// Why a whole round failed.
pub(crate) enum RoundError {
    /// Reconnecting cannot help (the token was refused).
    Fatal(ClientError),
    /// Every node is full or draining: the dispatcher's `Retry-After`.
    Overloaded(Duration),
    /// Anything else: back off and try again.
    Failed(String),
}

/// The error a server `error` frame stands for.
pub(crate) fn server_error(code: ErrorCode, message: &str) -> ClientError {
    ClientError::Server {
        code: code.as_str().to_owned(),
        message: message.to_owned(),
    }
}

/// A request's id as the driver numbers them (it only sends numbers).
pub(crate) fn numeric_id(id: Option<&Value>) -> Option<u64> {
    id.and_then(Value::as_u64)
}

/// One round: ask the dispatcher, then try the chosen node and the alternates in order.
pub(crate) async fn attempt_round(
    cfg: Arc<ClientConfig>,
    net: Net,
    resume: Value,
    auth_id: u64,
) -> (Option<BackoffHint>, Result<(Link, Welcome), RoundError>) {
    let d = match dispatch(&net.http, &cfg.dispatcher, &cfg.token, cfg.request_timeout).await {
        Ok(d) => d,
        Err(DispatchError::Overloaded { retry_after }) => {
            return (None, Err(RoundError::Overloaded(retry_after)));
        }
        Err(DispatchError::Failed(e)) => return (None, Err(RoundError::Failed(e))),
    };
    let mut failures = Vec::new();
    for node in d.nodes() {
        match connect_node(&cfg, &net, node, &resume, auth_id).await {
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
    net: &Net,
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
        let mut link = open_poll(&net.http, poll, &cfg.token, resume.clone(), t)
            .await
            .map_err(open_error)?;
        let w = await_welcome(&mut link, None, t).await?;
        Ok((link, w))
    };
    let via_ws = || async {
        let url = ep.ws.as_deref().ok_or(NodeError::Refused(0))?;
        let mut link = open_ws(net, url, t).await.map_err(open_error)?;
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
            let mut link = open_tcp(net, url, t).await.map_err(open_error)?;
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
    link.send(&frame).await;
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
        let frame = match inc {
            Incoming::Frame(f) => f,
            Incoming::Alive => continue,
            Incoming::Closed(reason) => return Err(NodeError::Failed(reason)),
            Incoming::Unreadable(e) => {
                tracing::warn!(error = %e, "unreadable server frame before welcome");
                if auth_id.is_none() || numeric_id(e.id.as_ref()) == auth_id {
                    return Err(NodeError::Failed(format!("unreadable answer to auth: {e}")));
                }
                continue;
            }
        };
        match frame {
            ServerFrame::Welcome {
                user_id,
                node_id,
                heartbeat_ms,
                resumed,
                ..
            } => {
                return Ok(Welcome {
                    user_id,
                    node_id,
                    heartbeat_ms,
                    resumed,
                });
            }
            ServerFrame::Ping {} => {
                link.send(&json!({"type": "pong"})).await;
            }
            ServerFrame::Error {
                id, code, message, ..
            } => {
                let for_auth = auth_id.is_none() || numeric_id(id.as_ref()) == auth_id;
                if code == ErrorCode::Unauthorized && for_auth {
                    return Err(NodeError::Fatal(server_error(code, &message)));
                }
                if code == ErrorCode::Unauthorized {
                    // An auth timeout (id null): the node was too slow to read us.
                    return Err(NodeError::Failed(format!("auth refused: {message}")));
                }
                return Err(NodeError::Failed(format!(
                    "refused before welcome: {}",
                    code.as_str()
                )));
            }
            ServerFrame::Reconnect { reason, .. } => {
                return Err(ended_before_welcome(&reason));
            }
            ServerFrame::Disconnect { reason } => {
                return Err(ended_before_welcome(reason.as_str()));
            }
            _ => {}
        }
    }
}

fn ended_before_welcome(reason: &str) -> NodeError {
    NodeError::Failed(format!(
        "the node ended the connection before welcome: {reason}"
    ))
}
