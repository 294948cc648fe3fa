//! The plan a worker runs, as the coordinator sends it: its connections, and the `run` phase's
//! own load (direct messages, HTTP requests).

use crate::proto::Protocol;
use serde::{Deserialize, Serialize};
use std::net::{Ipv4Addr, SocketAddr};

/// Everything a worker needs, sent by the coordinator.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Plan {
    /// How to speak to the server.
    pub protocol: Protocol,
    /// This worker's index (for messages).
    pub worker: usize,
    /// Tokio worker threads (1 = a current-thread runtime).
    pub threads: usize,
    /// Connections opened at the same time.
    pub connect_concurrency: usize,
    /// The WebSocket connections to open.
    pub conns: Vec<ConnSpec>,
    /// Direct messages to send during `run`, if any.
    pub dm: Option<DmPlan>,
    /// An HTTP request loop to run during `run`, if any.
    pub http_load: Option<HttpLoadPlan>,
}

/// One client connection.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ConnSpec {
    /// Server address.
    pub addr: SocketAddr,
    /// Source address to bind.
    pub src: Option<Ipv4Addr>,
    /// The user's token.
    pub token: String,
    /// The user's index (user id = prefix + index); messages from it are its own echoes.
    pub user: u64,
    /// Conversations (rooms) to subscribe to after connecting.
    pub convs: Vec<String>,
}

/// Direct messages sent by this worker's connections to random users.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct DmPlan {
    /// Messages per second sent by this worker.
    pub rate: f64,
    /// Seconds of sending.
    pub duration_s: f64,
    /// Padding bytes in each body.
    pub payload: usize,
    /// User ids are this prefix followed by the index.
    pub user_prefix: String,
    /// Number of users in the whole run (recipients are drawn from all of them).
    pub users: u64,
}

/// Closed-loop HTTP requests (the dispatch scenario).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct HttpLoadPlan {
    /// Server address.
    pub addr: SocketAddr,
    /// Path to GET.
    pub path: String,
    /// Keep-alive connections, each with one request in flight.
    pub conns: usize,
    /// Seconds of load.
    pub duration_s: f64,
    /// Source addresses, used in turn.
    pub srcs: Vec<Ipv4Addr>,
}
