//! Where a node takes client connections: in dispatch answers, `GET /v1/node` and node
//! announcements.

use serde::{Deserialize, Serialize};

/// A node's client endpoints. Absent ones are `null` (e.g. `tcp` when it does not listen).
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct Endpoints {
    /// WebSocket URL (`ws://host:port/v1/ws`).
    #[serde(default)]
    pub ws: Option<String>,
    /// Long-poll URL (`http://host:port/v1/poll`).
    #[serde(default)]
    pub poll: Option<String>,
    /// Raw TCP address (`tcp://host:port`).
    #[serde(default)]
    pub tcp: Option<String>,
}
