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
        }
    }
}
