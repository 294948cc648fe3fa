//! Limits and timings of a node, shared by every transport. Defaults follow the contract.

use std::time::Duration;

/// Per-node limits. Most are configurable from the command line or the TOML file (see
/// docs/CONFIG.md); `max_subscriptions`, `write_timeout` and `server_token_ttl` are fixed there.
#[derive(Debug, Clone)]
pub struct Limits {
    /// Largest accepted frame or HTTP body, in bytes.
    pub max_frame_bytes: usize,
    /// An unauthenticated connection is closed after this long.
    pub auth_timeout: Duration,
    /// Server heartbeat interval; a peer silent for two intervals is dead.
    pub heartbeat: Duration,
    /// Per-connection outbound queue, in frames; overflow ends the connection (`slow_consumer`).
    pub outbound_queue: usize,
    /// The same queue in bytes (frames not yet taken by the socket plus deliveries left to the
    /// session); overflow ends the connection too. A connection's own replies wait once a
    /// quarter of it is unsent.
    pub outbound_queue_bytes: usize,
    /// Largest history reply (HTTP or frame), in bytes of messages: a page that would be larger
    /// is cut short and says `more` (always at least one message).
    pub history_page_bytes: usize,
    /// Publishes per connection per second (0 = unlimited).
    pub publish_rate: u32,
    /// Publish burst per connection.
    pub publish_burst: u32,
    /// Frames of any kind per connection per second (0 = unlimited); a flood guard.
    pub frame_rate: u32,
    /// Subscriptions one connection may hold.
    pub max_subscriptions: usize,
    /// Live connections this node accepts; more get `overloaded`.
    pub max_connections: usize,
    /// A write to a client that takes longer than this ends the connection as a slow consumer.
    pub write_timeout: Duration,
    /// Lifetime of tokens from `POST /v1/sessions`.
    pub session_ttl: Duration,
    /// Default lifetime of server-API tokens when `ttl_s` is not given.
    pub server_token_ttl: Duration,
    /// `reconnect` frames sent at shutdown carry a random `delay_ms` below this, so clients
    /// do not all come back at once.
    pub reconnect_jitter: Duration,
    /// Deepest nesting of arrays and objects a message body may have; deeper is `bad_request`
    /// on every path (clients' JSON parsers have depth limits of their own).
    pub max_body_depth: usize,
    /// Abuse limits of the HTTP API and of long-poll sessions (per user, per IP).
    pub abuse: AbuseLimits,
}

/// Rate limits and caps against one client eating a node's resources. Every rate here is a
/// token bucket: the burst is available at once, then the rate; `0` turns a limit off.
#[derive(Debug, Clone)]
pub struct AbuseLimits {
    /// HTTP publishes (rooms and direct messages) per user per second; `None` follows
    /// `publish_rate`, so one setting governs publishing on every path.
    pub http_publish_rate: Option<u32>,
    /// HTTP publish burst per user; `None` follows `publish_burst`.
    pub http_publish_burst: Option<u32>,
    /// Direct messages per user per minute, on every path (burst: the same number).
    pub dm_per_min: u32,
    /// Rooms a user may create per minute (burst: the same number).
    pub rooms_per_min: u32,
    /// Registrations per client IP per minute (burst: the same number).
    pub register_per_ip_per_min: u32,
    /// Login attempts per client IP per minute (burst: the same number).
    pub login_per_ip_per_min: u32,
    /// Failed logins per username before each further attempt waits (1 s, doubling up to
    /// `login_backoff_max`); per client IP four times as many. `0` turns the backoff off.
    pub login_free_failures: u32,
    /// Longest wait the login backoff imposes.
    pub login_backoff_max: Duration,
    /// Password hashes waiting for a core before more are refused with `overloaded`.
    pub hash_queue: usize,
    /// Long-poll sessions one user may hold on a node at once.
    pub poll_sessions_per_user: usize,
    /// Messages a user may publish per day on every path (a storage quota; a direct message
    /// counts once), kept per node; `0` (the default) turns it off.
    pub messages_per_day: u32,
}

impl Default for AbuseLimits {
    fn default() -> Self {
        AbuseLimits {
            http_publish_rate: None,
            http_publish_burst: None,
            dm_per_min: 600,
            rooms_per_min: 10,
            register_per_ip_per_min: 20,
            login_per_ip_per_min: 60,
            login_free_failures: 5,
            login_backoff_max: Duration::from_secs(60),
            hash_queue: 64,
            poll_sessions_per_user: 16,
            messages_per_day: 0,
        }
    }
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_frame_bytes: 64 * 1024,
            auth_timeout: Duration::from_secs(10),
            heartbeat: Duration::from_secs(25),
            outbound_queue: 1024,
            outbound_queue_bytes: 4 << 20,
            history_page_bytes: 1 << 20,
            publish_rate: 100,
            publish_burst: 200,
            frame_rate: 1000,
            max_subscriptions: 1024,
            max_connections: 100_000,
            write_timeout: Duration::from_secs(10),
            session_ttl: Duration::from_secs(30 * 24 * 3600),
            server_token_ttl: Duration::from_secs(24 * 3600),
            reconnect_jitter: Duration::from_secs(5),
            max_body_depth: 64,
            abuse: AbuseLimits::default(),
        }
    }
}
