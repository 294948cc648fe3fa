//! Configuration of `switchboard serve`: command-line flags, `SWITCHBOARD_<NAME>` environment
//! variables and an optional TOML file, resolved in that order of precedence over defaults.

use clap::Args;
use serde::Deserialize;
use std::path::PathBuf;
use std::time::Duration;
use switchboard_core::config::Limits;
use switchboard_gateway::limits::{HttpLimits, MIN_HEAD_BYTES};
use switchboard_gateway::origin::OriginPolicy;

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
    /// Base URL this node advertises to clients and dispatchers [default: http://<listen>].
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
    /// long it waits for more first, in microseconds; 0 commits at once [default: 0].
    #[arg(long, env = "SWITCHBOARD_COMMIT_DELAY_US", value_name = "US")]
    pub commit_delay_us: Option<u64>,
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

impl ServeArgs {
    /// Merges flags (and env) over the TOML file named by `--config`, then defaults.
    pub fn resolve(self) -> Result<ServerConfig, ConfigError> {
        let file = match &self.config {
            Some(path) => {
                let text = std::fs::read_to_string(path).map_err(|e| {
                    ConfigError(format!("cannot read config file {}: {e}", path.display()))
                })?;
                toml::from_str::<ServeArgs>(&text)
                    .map_err(|e| ConfigError(format!("bad config file {}: {e}", path.display())))?
            }
            None => ServeArgs::default(),
        };
        let a = self.over(file);
        let mut limits = Limits::default();
        if let Some(v) = a.max_connections {
            limits.max_connections = v;
        }
        if let Some(v) = a.publish_rate {
            limits.publish_rate = v;
        }
        if let Some(v) = a.publish_burst {
            limits.publish_burst = v;
        }
        if let Some(v) = a.frame_rate {
            limits.frame_rate = v;
        }
        if let Some(v) = a.outbound_queue {
            limits.outbound_queue = v.max(1);
        }
        if let Some(v) = a.outbound_queue_bytes {
            limits.outbound_queue_bytes = v.max(64 * 1024);
        }
        if let Some(v) = a.history_page_bytes {
            limits.history_page_bytes = v.max(1);
        }
        if let Some(v) = a.max_frame_bytes {
            limits.max_frame_bytes = v.max(256);
        }
        if let Some(v) = a.heartbeat_ms {
            limits.heartbeat = Duration::from_millis(v.max(100));
        }
        if let Some(v) = a.auth_timeout_ms {
            limits.auth_timeout = Duration::from_millis(v.max(100));
        }
        if let Some(v) = a.session_ttl_s {
            limits.session_ttl = Duration::from_secs(v.max(1));
        }
        if let Some(v) = a.reconnect_jitter_ms {
            limits.reconnect_jitter = Duration::from_millis(v);
        }
        let mut http = HttpLimits {
            max_body_bytes: limits.max_frame_bytes,
            ..HttpLimits::default()
        };
        let ms = |v: u64| Duration::from_millis(v.max(100));
        if let Some(v) = a.http_header_timeout_ms {
            http.header_timeout = ms(v);
        }
        if let Some(v) = a.http_body_timeout_ms {
            http.body_timeout = ms(v);
        }
        if let Some(v) = a.http_write_timeout_ms {
            http.write_timeout = ms(v);
        }
        if let Some(v) = a.http_max_head_bytes {
            http.max_head_bytes = v.max(MIN_HEAD_BYTES);
        }
        if let Some(v) = a.http_max_connections {
            http.max_connections = v;
        }
        if let Some(v) = a.max_connections_per_ip {
            http.max_connections_per_ip = v;
        }
        if let Some(v) = a.max_body_depth {
            limits.max_body_depth = v.max(1);
        }
        let abuse = &mut limits.abuse;
        macro_rules! set {
            ($($f:ident),*) => { $(if let Some(v) = a.$f { abuse.$f = v; })* };
        }
        abuse.http_publish_rate = a.http_publish_rate.or(abuse.http_publish_rate);
        abuse.http_publish_burst = a.http_publish_burst.or(abuse.http_publish_burst);
        set!(
            dm_per_min,
            rooms_per_min,
            register_per_ip_per_min,
            login_per_ip_per_min,
            login_free_failures,
            hash_queue,
            messages_per_day
        );
        if let Some(v) = a.login_backoff_max_ms {
            abuse.login_backoff_max = Duration::from_millis(v.max(1_000));
        }
        if let Some(v) = a.poll_sessions_per_user {
            abuse.poll_sessions_per_user = v.max(1);
        }
        let roles = parse_roles(a.roles.as_deref().unwrap_or("gateway,api,dispatcher"))?;
        let tcp_listen = match a.tcp_listen.as_deref().unwrap_or("127.0.0.1:7701") {
            "off" | "" => None,
            addr => Some(addr.to_owned()),
        };
        let json_logs = match a.log_format.as_deref().unwrap_or("text") {
            "text" => false,
            "json" => true,
            other => {
                return Err(ConfigError(format!(
                    "--log-format must be text or json, not {other}"
                )));
            }
        };
        if a.webhook_url.is_some() && a.webhook_secret.is_none() {
            return Err(ConfigError(
                "--webhook-url needs --webhook-secret to sign its requests".into(),
            ));
        }
        if let Some(secret) = &a.webhook_secret
            && secret.len() < switchboard_webhook::MIN_SECRET_BYTES
        {
            return Err(ConfigError(format!(
                "--webhook-secret must be at least {} bytes (it is {}): a short key lets anyone \
                 forge webhook deliveries; make one with `openssl rand -hex 32`",
                switchboard_webhook::MIN_SECRET_BYTES,
                secret.len()
            )));
        }
        let redis_cluster: Vec<String> = a
            .redis_cluster
            .as_deref()
            .unwrap_or("")
            .split(',')
            .map(str::trim)
            .filter(|s| !s.is_empty())
            .map(str::to_owned)
            .collect();
        if !redis_cluster.is_empty() && a.redis.as_deref().is_some_and(|u| !u.is_empty()) {
            return Err(ConfigError(
                "--redis and --redis-cluster both given: use --redis for one Redis server, \
                 --redis-cluster for a Redis Cluster"
                    .into(),
            ));
        }
        let redis_wait_replicas = a
            .redis_wait_replicas
            .unwrap_or(if redis_cluster.is_empty() { 0 } else { 1 });
        Ok(ServerConfig {
            rebalance_band: a.rebalance_band.unwrap_or(0.0).clamp(0.0, 10.0),
            rebalance_step: a.rebalance_step.unwrap_or(0.05).clamp(0.001, 1.0),
            redis_wait_timeout: Duration::from_millis(
                a.redis_wait_timeout_ms.unwrap_or(500).clamp(1, 60_000),
            ),
            redis_wait_replicas,
            redis_cluster,
            listen: a.listen.unwrap_or_else(|| "127.0.0.1:7700".into()),
            tcp_listen,
            data_dir: a.data_dir.unwrap_or_else(|| PathBuf::from("./data")),
            redis: a.redis.filter(|u| !u.is_empty()),
            redis_prefix: a.redis_prefix.unwrap_or_else(|| "sb:".into()),
            lease: Duration::from_millis(a.lease_ms.unwrap_or(10_000).max(300)),
            node_id: a
                .node_id
                .unwrap_or_else(|| switchboard_proto::ids::new_id("n")),
            roles,
            api_key: a.api_key.filter(|k| !k.is_empty()),
            webhook_url: a.webhook_url,
            webhook_secret: a.webhook_secret,
            weight: a.weight.unwrap_or(1).max(1),
            public_url: a.public_url,
            gateways: a
                .gateways
                .map(|g| {
                    g.split(',')
                        .map(str::trim)
                        .filter(|s| !s.is_empty())
                        .map(str::to_owned)
                        .collect()
                })
                .unwrap_or_default(),
            limits,
            history_max_messages: a.history_max_messages.unwrap_or(10_000),
            history_max_age: Duration::from_secs(a.history_max_age_s.unwrap_or(0)),
            commit_delay: Duration::from_micros(a.commit_delay_us.unwrap_or(0).min(100_000)),
            shutdown_timeout: Duration::from_millis(a.shutdown_timeout_ms.unwrap_or(30_000)),
            poll_idle: Duration::from_millis(a.poll_idle_ms.unwrap_or(60_000).max(1_000)),
            poll_first_get: Duration::from_millis(a.poll_first_get_ms.unwrap_or(10_000).max(100)),
            poll_buffer_bytes: a.poll_buffer_bytes.unwrap_or(4 << 20).max(64 << 10),
            probe_interval: Duration::from_millis(a.probe_interval_ms.unwrap_or(1_000).max(50)),
            drain_window: Duration::from_millis(a.drain_window_ms.unwrap_or(30_000)),
            fanout_threads: a
                .fanout_threads
                .unwrap_or_else(|| std::thread::available_parallelism().map_or(2, |n| n.get())),
            json_logs,
            tcp_max_connections_per_ip: http.max_connections_per_ip,
            http,
            metrics_listen: a.metrics_listen.filter(|m| !m.is_empty()),
            socketio_ping_interval: Duration::from_millis(
                a.socketio_ping_interval_ms.unwrap_or(25_000).max(50),
            ),
            socketio_ping_timeout: Duration::from_millis(
                a.socketio_ping_timeout_ms.unwrap_or(20_000).max(50),
            ),
            socketio_recovery: Duration::from_millis(a.socketio_recovery_ms.unwrap_or(120_000)),
            allowed_origins: a
                .allowed_origins
                .map(|o| OriginPolicy::parse(&o).map_err(ConfigError))
                .transpose()?,
            tls: match (a.tls_cert, a.tls_key) {
                (Some(cert), Some(key)) => Some((cert, key)),
                (None, None) => None,
                _ => return Err(ConfigError("--tls-cert and --tls-key go together".into())),
            },
            ca: a.ca,
        })
    }

    /// Each field from `self` if set, else from `file`.
    fn over(self, file: ServeArgs) -> ServeArgs {
        macro_rules! pick {
            ($($f:ident),*) => { ServeArgs { config: self.config, $($f: self.$f.or(file.$f)),* } };
        }
        pick!(
            listen,
            tcp_listen,
            data_dir,
            redis,
            redis_cluster,
            redis_wait_replicas,
            redis_wait_timeout_ms,
            rebalance_band,
            rebalance_step,
            redis_prefix,
            lease_ms,
            node_id,
            roles,
            api_key,
            webhook_url,
            webhook_secret,
            max_connections,
            weight,
            public_url,
            gateways,
            publish_rate,
            publish_burst,
            frame_rate,
            outbound_queue,
            outbound_queue_bytes,
            history_page_bytes,
            max_frame_bytes,
            heartbeat_ms,
            auth_timeout_ms,
            history_max_messages,
            history_max_age_s,
            commit_delay_us,
            session_ttl_s,
            shutdown_timeout_ms,
            reconnect_jitter_ms,
            poll_idle_ms,
            probe_interval_ms,
            fanout_threads,
            drain_window_ms,
            http_header_timeout_ms,
            http_body_timeout_ms,
            http_write_timeout_ms,
            http_max_head_bytes,
            http_max_connections,
            max_connections_per_ip,
            metrics_listen,
            max_body_depth,
            http_publish_rate,
            http_publish_burst,
            dm_per_min,
            rooms_per_min,
            register_per_ip_per_min,
            login_per_ip_per_min,
            login_free_failures,
            login_backoff_max_ms,
            hash_queue,
            poll_sessions_per_user,
            poll_first_get_ms,
            poll_buffer_bytes,
            messages_per_day,
            log_format,
            socketio_ping_interval_ms,
            socketio_ping_timeout_ms,
            socketio_recovery_ms,
            allowed_origins,
            tls_cert,
            tls_key,
            ca
        )
    }
}

fn parse_roles(s: &str) -> Result<Roles, ConfigError> {
    let mut r = Roles {
        gateway: false,
        api: false,
        dispatcher: false,
    };
    for part in s.split(',').map(str::trim).filter(|p| !p.is_empty()) {
        match part {
            "gateway" => r.gateway = true,
            "api" => r.api = true,
            "dispatcher" => r.dispatcher = true,
            other => {
                return Err(ConfigError(format!(
                    "unknown role `{other}` (gateway, api, dispatcher)"
                )));
            }
        }
    }
    if !(r.gateway || r.api || r.dispatcher) {
        return Err(ConfigError("--roles needs at least one role".into()));
    }
    Ok(r)
}

#[cfg(test)]
#[path = "config_tests.rs"]
mod tests;
