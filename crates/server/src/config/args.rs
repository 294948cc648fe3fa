//! The clap flags of `switchboard serve` ([`ServeArgs`]), which double as the TOML file's keys.

use clap::Args;
use serde::Deserialize;
use std::path::PathBuf;

/// Flags of `switchboard serve`. Every flag also reads `SWITCHBOARD_<NAME>`; every one may be
/// set in the `--config` TOML file under its name with underscores (`max_connections = 5000`).
#[derive(Args, Debug, Default, Deserialize, Clone)]
#[serde(default, deny_unknown_fields)]
pub struct ServeArgs {
    /// TOML file with any of these settings (flags and environment variables win over it).
    #[arg(long, env = "SWITCHBOARD_CONFIG", value_name = "FILE")]
    #[serde(skip)]
    pub config: Option<PathBuf>,
    /// Address for HTTP, WebSocket and long-poll [default: 127.0.0.1:7700].
    #[arg(long, env = "SWITCHBOARD_LISTEN", value_name = "ADDR")]
    pub listen: Option<String>,
    /// Address for the raw TCP transport (4-byte length + JSON frames), or `off`
    /// [default: 127.0.0.1:7701].
    #[arg(long, env = "SWITCHBOARD_TCP_LISTEN", value_name = "ADDR")]
    pub tcp_listen: Option<String>,
    /// Directory of the embedded backend's database [default: ./data].
    #[arg(long, env = "SWITCHBOARD_DATA_DIR", value_name = "DIR")]
    pub data_dir: Option<PathBuf>,
    /// Redis URL for cluster mode instead of the embedded backend (e.g. redis://127.0.0.1:6379/).
    #[arg(long, env = "SWITCHBOARD_REDIS", value_name = "URL")]
    pub redis: Option<String>,
    /// Dispatcher: move clients off gateways whose connections exceed their share by more than
    /// this fraction (e.g. after new gateways joined), paced; 0 = off [default: 0]. Needs
    /// --api-key (the gateways' server API key). Turn it on in one dispatcher per cluster.
    #[arg(long, env = "SWITCHBOARD_REBALANCE_BAND", value_name = "FRACTION")]
    pub rebalance_band: Option<f64>,
    /// Dispatcher: the most of one gateway's connections moved per probe round [default: 0.05].
    #[arg(long, env = "SWITCHBOARD_REBALANCE_STEP", value_name = "FRACTION")]
    pub rebalance_step: Option<f64>,
    /// Redis Cluster seed nodes, comma separated (e.g. redis://10.0.0.1:6379,redis://10.0.0.2:6379),
    /// instead of `--redis`: keys hash-tagged per conversation, sharded pub/sub.
    #[arg(long, env = "SWITCHBOARD_REDIS_CLUSTER", value_name = "URL[,URL...]")]
    pub redis_cluster: Option<String>,
    /// Replicas that must hold a message before it is acknowledged and published (Redis `WAIT`)
    /// [default: 1 with --redis-cluster, else 0].
    #[arg(long, env = "SWITCHBOARD_REDIS_WAIT_REPLICAS", value_name = "N")]
    pub redis_wait_replicas: Option<u32>,
    /// How long a publish waits for those replicas before answering 503 `unavailable` [default: 500].
    #[arg(long, env = "SWITCHBOARD_REDIS_WAIT_TIMEOUT_MS", value_name = "MS")]
    pub redis_wait_timeout_ms: Option<u64>,
    /// Prefix of every Redis key and channel, so several clusters can share one Redis [default: sb:].
    #[arg(long, env = "SWITCHBOARD_REDIS_PREFIX", value_name = "PREFIX")]
    pub redis_prefix: Option<String>,
    /// Cluster mode: this node's lease; its connections count as online only while it is renewed
    /// (every third of it), so a crashed node's users read offline within this time [default: 10000].
    #[arg(long, env = "SWITCHBOARD_LEASE_MS", value_name = "MS")]
    pub lease_ms: Option<u64>,
    /// This node's id [default: a random `n_...`].
    #[arg(long, env = "SWITCHBOARD_NODE_ID", value_name = "ID")]
    pub node_id: Option<String>,
    /// Roles of this process, comma separated: gateway, api, dispatcher [default: all three].
    #[arg(long, env = "SWITCHBOARD_ROLES", value_name = "LIST")]
    pub roles: Option<String>,
    /// Key for the server API (`X-Api-Key`); without it the server API answers 403.
    #[arg(long, env = "SWITCHBOARD_API_KEY", value_name = "KEY")]
    pub api_key: Option<String>,
    /// URL that receives offline-message webhooks.
    #[arg(long, env = "SWITCHBOARD_WEBHOOK_URL", value_name = "URL")]
    pub webhook_url: Option<String>,
    /// HMAC-SHA256 key for the webhook signature header.
    #[arg(long, env = "SWITCHBOARD_WEBHOOK_SECRET", value_name = "KEY")]
    pub webhook_secret: Option<String>,
    /// Live connections this node accepts before answering 503 overloaded [default: 100000].
    #[arg(long, env = "SWITCHBOARD_MAX_CONNECTIONS", value_name = "N")]
    pub max_connections: Option<usize>,
    /// Placement weight relative to other nodes [default: 1].
    #[arg(long, env = "SWITCHBOARD_WEIGHT", value_name = "N")]
    pub weight: Option<u32>,
    /// Base URL this node advertises to clients and dispatchers
    /// [default: http:// and the --listen address].
    #[arg(long, env = "SWITCHBOARD_PUBLIC_URL", value_name = "URL")]
    pub public_url: Option<String>,
    /// Static gateway list for a dispatcher (base URLs, comma separated), probed besides the
    /// gateways the cluster registry announces.
    #[arg(long, env = "SWITCHBOARD_GATEWAYS", value_name = "URL,URL")]
    pub gateways: Option<String>,
    /// Publishes per connection per second, 0 = unlimited [default: 100].
    #[arg(long, env = "SWITCHBOARD_PUBLISH_RATE", value_name = "N")]
    pub publish_rate: Option<u32>,
    /// Publish burst per connection [default: 200].
    #[arg(long, env = "SWITCHBOARD_PUBLISH_BURST", value_name = "N")]
    pub publish_burst: Option<u32>,
    /// Frames of any kind per connection per second, 0 = unlimited [default: 1000].
    #[arg(long, env = "SWITCHBOARD_FRAME_RATE", value_name = "N")]
    pub frame_rate: Option<u32>,
    /// Per-connection outbound queue in frames; overflow disconnects with slow_consumer [default: 1024].
    #[arg(long, env = "SWITCHBOARD_OUTBOUND_QUEUE", value_name = "N")]
    pub outbound_queue: Option<usize>,
    /// Per-connection outbound queue in bytes; overflow disconnects with slow_consumer, and a
    /// connection's own replies wait once a quarter of it is unsent [default: 4194304].
    #[arg(long, env = "SWITCHBOARD_OUTBOUND_QUEUE_BYTES", value_name = "N")]
    pub outbound_queue_bytes: Option<usize>,
    /// Largest history reply in bytes of messages; a page cut short says `more` [default: 1048576].
    #[arg(long, env = "SWITCHBOARD_HISTORY_PAGE_BYTES", value_name = "N")]
    pub history_page_bytes: Option<usize>,
    /// Largest frame or HTTP body in bytes [default: 65536].
    #[arg(long, env = "SWITCHBOARD_MAX_FRAME_BYTES", value_name = "N")]
    pub max_frame_bytes: Option<usize>,
    /// Heartbeat interval; two missed answers end a connection [default: 25000].
    #[arg(long, env = "SWITCHBOARD_HEARTBEAT_MS", value_name = "MS")]
    pub heartbeat_ms: Option<u64>,
    /// Time a new connection has to authenticate [default: 10000].
    #[arg(long, env = "SWITCHBOARD_AUTH_TIMEOUT_MS", value_name = "MS")]
    pub auth_timeout_ms: Option<u64>,
    /// Messages kept per conversation, 0 = unlimited [default: 10000].
    #[arg(long, env = "SWITCHBOARD_HISTORY_MAX_MESSAGES", value_name = "N")]
    pub history_max_messages: Option<u64>,
    /// Age after which messages leave history, in seconds, 0 = forever [default: 0].
    #[arg(long, env = "SWITCHBOARD_HISTORY_MAX_AGE_S", value_name = "S")]
    pub history_max_age_s: Option<u64>,
    /// Embedded backend: when a commit would carry two or more writes (the writer is busy), how
    /// long it may wait for more first, in microseconds (it stops waiting once none come); 0
    /// commits at once [default: 0].
    #[arg(long, env = "SWITCHBOARD_COMMIT_DELAY_US", value_name = "US")]
    pub commit_delay_us: Option<u64>,
    /// Embedded backend: under load, how long the stream index takes to write every waiting
    /// entry once, in milliseconds (at most 60000). Longer writes fewer pages per message and
    /// holds more entries in memory [default: 4000].
    #[arg(long, env = "SWITCHBOARD_INDEX_CYCLE_MS", value_name = "MS")]
    pub index_cycle_ms: Option<u64>,
    /// Embedded backend: what a `published` answer promises. `disk`: the message is fsynced
    /// (survives power loss). `process`: it is in the operating system's file cache (survives
    /// the node process dying, not the machine) and no commit waits for an fsync [default: disk].
    #[arg(long, env = "SWITCHBOARD_DURABILITY", value_name = "disk|process")]
    pub durability: Option<String>,
    /// Lifetime of login tokens in seconds [default: 2592000 (30 days)].
    #[arg(long, env = "SWITCHBOARD_SESSION_TTL_S", value_name = "S")]
    pub session_ttl_s: Option<u64>,
    /// Longest time shutdown waits for clients to leave [default: 30000].
    #[arg(long, env = "SWITCHBOARD_SHUTDOWN_TIMEOUT_MS", value_name = "MS")]
    pub shutdown_timeout_ms: Option<u64>,
    /// Upper bound of the random `delay_ms` in shutdown `reconnect` frames [default: 5000].
    #[arg(long, env = "SWITCHBOARD_RECONNECT_JITTER_MS", value_name = "MS")]
    pub reconnect_jitter_ms: Option<u64>,
    /// Dispatcher: how often every gateway's `/v1/node` is probed [default: 1000].
    #[arg(long, env = "SWITCHBOARD_PROBE_INTERVAL_MS", value_name = "MS")]
    pub probe_interval_ms: Option<u64>,
    /// Drain: `reconnect` frames go out in paced batches spread over this window [default: 30000].
    #[arg(long, env = "SWITCHBOARD_DRAIN_WINDOW_MS", value_name = "MS")]
    pub drain_window_ms: Option<u64>,
    /// A long-poll session with no GET for this long ends [default: 60000].
    #[arg(long, env = "SWITCHBOARD_POLL_IDLE_MS", value_name = "MS")]
    pub poll_idle_ms: Option<u64>,
    /// Threads that write a large room's messages to its subscribers' sockets, each taking a
    /// share of the connections [default: the number of CPUs].
    #[arg(long, env = "SWITCHBOARD_FANOUT_THREADS", value_name = "N")]
    pub fanout_threads: Option<usize>,
    /// HTTP: total time a client has to send a request head, also the longest a keep-alive
    /// connection waits for its next request [default: 20000].
    #[arg(long, env = "SWITCHBOARD_HTTP_HEADER_TIMEOUT_MS", value_name = "MS")]
    pub http_header_timeout_ms: Option<u64>,
    /// HTTP: total time a client has to send a request body, from the end of its head
    /// [default: 20000].
    #[arg(long, env = "SWITCHBOARD_HTTP_BODY_TIMEOUT_MS", value_name = "MS")]
    pub http_body_timeout_ms: Option<u64>,
    /// HTTP: a response write blocked this long (the client does not read) ends the connection
    /// [default: 10000].
    #[arg(long, env = "SWITCHBOARD_HTTP_WRITE_TIMEOUT_MS", value_name = "MS")]
    pub http_write_timeout_ms: Option<u64>,
    /// HTTP: largest request head (request line and headers), at least 8192; larger get 431
    /// [default: 16384].
    #[arg(long, env = "SWITCHBOARD_HTTP_MAX_HEAD_BYTES", value_name = "N")]
    pub http_max_head_bytes: Option<usize>,
    /// HTTP connections served at once (not counting upgraded WebSockets), 0 = no cap; more get
    /// 503 [default: 10000].
    #[arg(long, env = "SWITCHBOARD_HTTP_MAX_CONNECTIONS", value_name = "N")]
    pub http_max_connections: Option<usize>,
    /// HTTP connections (not counting upgraded WebSockets), and separately raw TCP connections,
    /// held at once from one client address (IPv6: one /64), 0 = no cap [default: 256].
    #[arg(long, env = "SWITCHBOARD_MAX_CONNECTIONS_PER_IP", value_name = "N")]
    pub max_connections_per_ip: Option<usize>,
    /// Serve `/metrics` on this address instead of on `--listen` [default: on --listen].
    #[arg(long, env = "SWITCHBOARD_METRICS_LISTEN", value_name = "ADDR")]
    pub metrics_listen: Option<String>,
    /// Deepest nesting of arrays and objects in a message body; deeper is refused with
    /// bad_request on every path [default: 64].
    #[arg(long, env = "SWITCHBOARD_MAX_BODY_DEPTH", value_name = "N")]
    pub max_body_depth: Option<usize>,
    /// HTTP publishes (rooms and direct messages) per user per second, 0 = unlimited
    /// [default: --publish-rate].
    #[arg(long, env = "SWITCHBOARD_HTTP_PUBLISH_RATE", value_name = "N")]
    pub http_publish_rate: Option<u32>,
    /// HTTP publish burst per user [default: --publish-burst].
    #[arg(long, env = "SWITCHBOARD_HTTP_PUBLISH_BURST", value_name = "N")]
    pub http_publish_burst: Option<u32>,
    /// Direct messages per user per minute on every path (all at once at most), 0 = unlimited
    /// [default: 600].
    #[arg(long, env = "SWITCHBOARD_DM_PER_MIN", value_name = "N")]
    pub dm_per_min: Option<u32>,
    /// Rooms a user may create per minute (all at once at most), 0 = unlimited [default: 10].
    #[arg(long, env = "SWITCHBOARD_ROOMS_PER_MIN", value_name = "N")]
    pub rooms_per_min: Option<u32>,
    /// Registrations per client IP per minute (all at once at most), 0 = unlimited [default: 20].
    #[arg(long, env = "SWITCHBOARD_REGISTER_PER_IP_PER_MIN", value_name = "N")]
    pub register_per_ip_per_min: Option<u32>,
    /// Login attempts per client IP per minute (all at once at most), 0 = unlimited [default: 60].
    #[arg(long, env = "SWITCHBOARD_LOGIN_PER_IP_PER_MIN", value_name = "N")]
    pub login_per_ip_per_min: Option<u32>,
    /// Failed logins per username (per client IP: four times as many) before each further
    /// attempt waits 1 s, doubling up to --login-backoff-max-ms; 0 = no backoff [default: 5].
    #[arg(long, env = "SWITCHBOARD_LOGIN_FREE_FAILURES", value_name = "N")]
    pub login_free_failures: Option<u32>,
    /// Longest wait the login backoff imposes [default: 60000].
    #[arg(long, env = "SWITCHBOARD_LOGIN_BACKOFF_MAX_MS", value_name = "MS")]
    pub login_backoff_max_ms: Option<u64>,
    /// Password hashes (logins, registrations) waiting for a core before more are refused with
    /// 503 overloaded [default: 64].
    #[arg(long, env = "SWITCHBOARD_HASH_QUEUE", value_name = "N")]
    pub hash_queue: Option<usize>,
    /// Long-poll sessions one user may hold on this node; more are refused with 429
    /// rate_limited [default: 16].
    #[arg(long, env = "SWITCHBOARD_POLL_SESSIONS_PER_USER", value_name = "N")]
    pub poll_sessions_per_user: Option<usize>,
    /// A long-poll session that has never been polled (GET) ends after this long [default: 10000].
    #[arg(long, env = "SWITCHBOARD_POLL_FIRST_GET_MS", value_name = "MS")]
    pub poll_first_get_ms: Option<u64>,
    /// Bytes of frames a long-poll session buffers for its client; past it (or past the frame
    /// bound) the session is a slow consumer [default: 4194304].
    #[arg(long, env = "SWITCHBOARD_POLL_BUFFER_BYTES", value_name = "N")]
    pub poll_buffer_bytes: Option<usize>,
    /// Messages a user may publish per day on every path (a storage quota, per node; a direct
    /// message counts once), 0 = no quota [default: 0].
    #[arg(long, env = "SWITCHBOARD_MESSAGES_PER_DAY", value_name = "N")]
    pub messages_per_day: Option<u32>,
    /// Log format: text or json [default: text].
    #[arg(long, env = "SWITCHBOARD_LOG_FORMAT", value_name = "FORMAT")]
    pub log_format: Option<String>,
    /// Socket.IO: the server's Engine.IO ping interval [default: 25000].
    #[arg(long, env = "SWITCHBOARD_SOCKETIO_PING_INTERVAL_MS", value_name = "MS")]
    pub socketio_ping_interval_ms: Option<u64>,
    /// Socket.IO: how long the server waits for a pong before closing [default: 20000].
    #[arg(long, env = "SWITCHBOARD_SOCKETIO_PING_TIMEOUT_MS", value_name = "MS")]
    pub socketio_ping_timeout_ms: Option<u64>,
    /// Socket.IO: connection state recovery window, from the end of a session [default: 120000].
    #[arg(long, env = "SWITCHBOARD_SOCKETIO_RECOVERY_MS", value_name = "MS")]
    pub socketio_recovery_ms: Option<u64>,
    /// Web origins allowed to use the WebSocket and long-poll transports from a browser,
    /// comma separated, or `*`; others get 403 [default: the origin of --public-url].
    #[arg(long, env = "SWITCHBOARD_ALLOWED_ORIGINS", value_name = "LIST")]
    pub allowed_origins: Option<String>,
    /// PEM certificate chain: serve HTTPS and WSS on --listen and TLS on --tcp-listen
    /// (with --tls-key); SIGHUP reloads both files.
    #[arg(long, env = "SWITCHBOARD_TLS_CERT", value_name = "FILE")]
    pub tls_cert: Option<PathBuf>,
    /// PEM private key of --tls-cert.
    #[arg(long, env = "SWITCHBOARD_TLS_KEY", value_name = "FILE")]
    pub tls_key: Option<PathBuf>,
    /// PEM CA certificates to trust besides the public ones (a dispatcher probing gateways
    /// whose certificates a private CA signed).
    #[arg(long, env = "SWITCHBOARD_CA", value_name = "FILE")]
    pub ca: Option<PathBuf>,
}
