//! Turning [`ServeArgs`] (flags over file) into a [`ServerConfig`]: defaults, clamps and the
//! checks that refuse a bad configuration before anything starts.

use super::{ConfigError, Roles, ServeArgs, ServerConfig, file};
use std::path::PathBuf;
use std::time::Duration;
use switchboard_core::config::Limits;
use switchboard_gateway::limits::{HttpLimits, MIN_HEAD_BYTES};
use switchboard_gateway::origin::OriginPolicy;

/// `--commit-delay-us` when not given: off. A delay saved DMs from many connections 9-21% of
/// their CPU in one hour and nothing measurable in another, did nothing for small rooms, and
/// adds latency to every batch it holds (docs/PERFORMANCE.md, issue 12's fourteenth and
/// fifteenth rounds; a connection with a few publishes in flight is no longer held).
const DEFAULT_COMMIT_DELAY_US: u64 = 0;

impl ServeArgs {
    /// Merges flags (and env) over the TOML file named by `--config`, then defaults.
    pub fn resolve(self) -> Result<ServerConfig, ConfigError> {
        let file = match &self.config {
            Some(path) => file::load(path)?,
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
        let durability: switchboard_backend_embedded::Durability = match a.durability.as_deref() {
            None => Default::default(),
            Some(d) => d
                .parse()
                .map_err(|e| ConfigError(format!("--durability: {e}")))?,
        };
        let uses_redis =
            !redis_cluster.is_empty() || a.redis.as_deref().is_some_and(|u| !u.is_empty());
        if uses_redis && durability != switchboard_backend_embedded::Durability::Disk {
            return Err(ConfigError(
                "--durability applies to the embedded backend; with Redis, Redis's own \
                 appendonly/appendfsync settings decide what survives"
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
            commit_delay: Duration::from_micros(
                a.commit_delay_us
                    .unwrap_or(DEFAULT_COMMIT_DELAY_US)
                    .min(100_000),
            ),
            index_cycle: a
                .index_cycle_ms
                .map(Duration::from_millis)
                .unwrap_or(switchboard_backend_embedded::DEFAULT_INDEX_CYCLE)
                .min(Duration::from_secs(60)),
            durability,
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
