//! What the ops page at `/ops` reads, behind the server API key: `GET /v1/server/stats` (this
//! node's roles, load and message counters) and `GET /v1/server/nodes` (every live node's
//! stats, each read from that node's own `/v1/server/stats`).
//!
//! The counters are totals since the node started; the page turns two readings into rates, so
//! no node keeps time series.

use crate::AppState;
use crate::extract::ServerKey;
use axum::Json;
use axum::extract::State;
use axum::http::HeaderMap;
use serde_json::{Value, json};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// How long the answering node waits for another node's stats before reporting it unreachable.
const PEER_TIMEOUT: Duration = Duration::from_millis(1500);

/// Most nodes read per `GET /v1/server/nodes` (the announcements of a cluster are bounded by its
/// size; this keeps one request's fan-out bounded too).
const MAX_NODES: usize = 256;

/// One HTTP client for every peer read (it pools connections to the other nodes).
fn peer_client() -> &'static reqwest::Client {
    static CLIENT: std::sync::OnceLock<reqwest::Client> = std::sync::OnceLock::new();
    CLIENT.get_or_init(reqwest::Client::new)
}

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

/// This node's stats (also what [`nodes`] reports for the node answering).
pub fn local_stats(s: &AppState) -> Value {
    let m = &s.node.metrics;
    json!({
        "node_id": s.node.id,
        "roles": s.config.roles,
        "public_url": s.config.public_url,
        "connections": s.node.hub.open_connections(),
        "max_connections": s.node.limits.max_connections,
        "weight": s.config.weight,
        "draining": s.node.is_draining(),
        "messages_published": m.messages_published.get(),
        "messages_delivered": m.messages_delivered.get(),
        "version": crate::ops::VERSION,
        "ts": now_ms(),
    })
}

/// `GET /v1/server/stats` (server API key; every role): this node's roles, connections, weight,
/// draining state and message counters, with the time they were read.
pub async fn stats(State(s): State<AppState>, _k: ServerKey) -> Json<Value> {
    Json(local_stats(&s))
}

/// `GET /v1/server/nodes` (server API key; api role): every live node (the registry's
/// announcements, and this node), each with the stats it reports itself. A node that does not
/// answer within 1.5 s is listed with `"reachable": false` and the error.
pub async fn nodes(State(s): State<AppState>, _k: ServerKey, headers: HeaderMap) -> Json<Value> {
    let key = headers
        .get("x-api-key")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_owned();
    let mut out = vec![json!({"reachable": true, "stats": local_stats(&s)})];
    let peers = s
        .node
        .backend
        .registry
        .live_nodes()
        .await
        .unwrap_or_default();
    let http = peer_client().clone();
    let reads = peers
        .into_iter()
        .filter(|n| *n.node_id != *s.node.id)
        .take(MAX_NODES)
        .map(|n| {
            let http = http.clone();
            let key = key.clone();
            async move {
                let Some(base) = n.public_url.clone() else {
                    return json!({"node_id": n.node_id, "reachable": false,
                                  "error": "the node announced no public URL"});
                };
                let url = format!("{}/v1/server/stats", base.trim_end_matches('/'));
                let read = async {
                    let resp = http
                        .get(&url)
                        .header("x-api-key", key)
                        .timeout(PEER_TIMEOUT)
                        .send()
                        .await?
                        .error_for_status()?;
                    resp.json::<Value>().await
                };
                match read.await {
                    Ok(stats) => json!({"node_id": n.node_id, "reachable": true, "stats": stats}),
                    Err(e) => json!({"node_id": n.node_id, "reachable": false,
                                     "error": e.to_string()}),
                }
            }
        });
    out.extend(futures_util::future::join_all(reads).await);
    Json(json!({"nodes": out, "ts": now_ms()}))
}
