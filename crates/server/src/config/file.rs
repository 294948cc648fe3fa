//! The TOML layer: reading the `--config` file and laying flags (and env) over it.

use super::{ConfigError, ServeArgs};
use std::path::Path;

/// Reads and parses the TOML file at `path` into the same shape as the flags.
pub(super) fn load(path: &Path) -> Result<ServeArgs, ConfigError> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| ConfigError(format!("cannot read config file {}: {e}", path.display())))?;
    toml::from_str::<ServeArgs>(&text)
        .map_err(|e| ConfigError(format!("bad config file {}: {e}", path.display())))
}

impl ServeArgs {
    /// Each field from `self` if set, else from `file`.
    pub(super) fn over(self, file: ServeArgs) -> ServeArgs {
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
            index_cycle_ms,
            durability,
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
