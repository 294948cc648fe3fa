//! Configuration of `switchboard serve`: command-line flags, `SWITCHBOARD_<NAME>` environment
//! variables and an optional TOML file, resolved in that order of precedence over defaults.
//!
//! The flags live in `args`, the TOML layer in `file`, and the conversion into a
//! [`ServerConfig`] with its validation in `resolve`; this module holds the resolved types.

mod args;
mod file;
mod resolve;

pub use args::ServeArgs;

use std::path::PathBuf;
use std::time::Duration;
use switchboard_core::config::Limits;
use switchboard_gateway::limits::HttpLimits;
use switchboard_gateway::origin::OriginPolicy;

/// Which roles a process runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Roles {
    /// Holds client connections.
    pub gateway: bool,
    /// Serves the HTTP business and server API.
    pub api: bool,
    /// Serves `/v1/dispatch`.
    pub dispatcher: bool,
}

/// A fully resolved configuration.
#[derive(Debug, Clone)]
pub struct ServerConfig {
    /// HTTP listen address.
    pub listen: String,
    /// TCP transport address, if on.
    pub tcp_listen: Option<String>,
    /// Embedded backend directory.
    pub data_dir: PathBuf,
    /// Redis URL (cluster mode).
    pub redis: Option<String>,
    /// Rebalancing band (0: off).
    pub rebalance_band: f64,
    /// Rebalancing step per round.
    pub rebalance_step: f64,
    /// Redis Cluster seed URLs (cluster mode on Redis Cluster); empty otherwise.
    pub redis_cluster: Vec<String>,
    /// Replicas that must confirm a message (`WAIT`) before it is acknowledged.
    pub redis_wait_replicas: u32,
    /// How long to wait for them.
    pub redis_wait_timeout: Duration,
    /// Redis key prefix.
    pub redis_prefix: String,
    /// Node lease in cluster mode.
    pub lease: Duration,
    /// Node id.
    pub node_id: String,
    /// Roles.
    pub roles: Roles,
    /// Server API key.
    pub api_key: Option<String>,
    /// Offline webhook URL.
    pub webhook_url: Option<String>,
    /// Offline webhook secret.
    pub webhook_secret: Option<String>,
    /// Placement weight.
    pub weight: u32,
    /// Advertised base URL (`None`: derived from the bound address).
    pub public_url: Option<String>,
    /// Static gateway list.
    pub gateways: Vec<String>,
    /// Limits shared by all transports.
    pub limits: Limits,
    /// History retention by count.
    pub history_max_messages: u64,
    /// History retention by age.
    pub history_max_age: Duration,
    /// Embedded backend: a busy writer's wait for more writes before it commits.
    pub commit_delay: Duration,
    /// Embedded backend: the stream index's cycle under load (`--index-cycle-ms`).
    pub index_cycle: Duration,
    /// Embedded backend: what a `published` answer promises (`--durability`).
    pub durability: switchboard_backend_embedded::Durability,
    /// Shutdown wait.
    pub shutdown_timeout: Duration,
    /// Long-poll idle expiry.
    pub poll_idle: Duration,
    /// Long-poll expiry of a session never polled.
    pub poll_first_get: Duration,
    /// Long-poll buffer bound in bytes.
    pub poll_buffer_bytes: usize,
    /// Dispatcher probe interval.
    pub probe_interval: Duration,
    /// Drain pacing window.
    pub drain_window: Duration,
    /// Threads writing large fan-outs.
    pub fanout_threads: usize,
    /// JSON logs.
    pub json_logs: bool,
    /// What the HTTP server allows a client (timeouts, head and body size, connection caps).
    pub http: HttpLimits,
    /// Per-address cap of the raw TCP transport (`0` = none).
    pub tcp_max_connections_per_ip: usize,
    /// A listener of its own for `/metrics` (then not served on `listen`).
    pub metrics_listen: Option<String>,
    /// Socket.IO: Engine.IO ping interval.
    pub socketio_ping_interval: Duration,
    /// Socket.IO: Engine.IO ping timeout.
    pub socketio_ping_timeout: Duration,
    /// Socket.IO: connection state recovery window.
    pub socketio_recovery: Duration,
    /// Browser origins allowed (`None`: the public URL's).
    pub allowed_origins: Option<OriginPolicy>,
    /// TLS certificate chain and key files (PEM), if the node terminates TLS.
    pub tls: Option<(PathBuf, PathBuf)>,
    /// Extra CA certificates (PEM) the node trusts as a client.
    pub ca: Option<PathBuf>,
}

/// A configuration error, reported before anything starts.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct ConfigError(pub String);

#[cfg(test)]
mod tests;
