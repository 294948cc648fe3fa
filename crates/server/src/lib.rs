//! The `switchboard` server: builds a node from a [`ServerConfig`] (backend, hub, services,
//! webhook, routes for the configured roles), serves it, and shuts it down in order.
//! `main.rs` and the integration tests both use [`start`].

pub mod chat;
pub mod config;

use axum::Router;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};
use switchboard_api::{ApiConfig, AppState};
use switchboard_backend_embedded::{EmbeddedBackend, EmbeddedConfig};
use switchboard_core::Node;
use switchboard_core::backend::{Backend, BusSink};
use switchboard_core::hub::Hub;
use switchboard_core::metrics::Metrics;
use switchboard_gateway::poll::{PollConfig, PollSessions};
use switchboard_proto::DisconnectReason;
use tokio_util::sync::CancellationToken;

pub use config::{ServeArgs, ServerConfig};

/// Why a node could not start.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    /// Bad or unsupported settings.
    #[error("configuration: {0}")]
    Config(String),
    /// The backend could not be opened.
    #[error("backend: {0}")]
    Backend(String),
    /// The listen address could not be bound.
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        /// The address.
        addr: String,
        /// The OS error.
        source: std::io::Error,
    },
}

/// A started node.
pub struct RunningServer {
    /// The bound HTTP address.
    pub addr: SocketAddr,
    /// The bound TCP transport address, if it is on.
    pub tcp_addr: Option<SocketAddr>,
    /// The node's services (tests look inside).
    pub node: Arc<Node>,
    stop_accepting: CancellationToken,
    server: tokio::task::JoinHandle<()>,
    polls: Option<Arc<PollSessions>>,
    shutdown_timeout: Duration,
}

/// Builds and starts a node. Returns once it listens.
pub async fn start(config: ServerConfig) -> Result<RunningServer, StartError> {
    if !config.gateways.is_empty() {
        tracing::warn!("--gateways is not used yet: this dispatcher only places clients on itself");
    }
    let listener = tokio::net::TcpListener::bind(&config.listen)
        .await
        .map_err(|source| StartError::Bind {
            addr: config.listen.clone(),
            source,
        })?;
    let addr = listener.local_addr().map_err(|source| StartError::Bind {
        addr: config.listen.clone(),
        source,
    })?;
    let tcp_listener =
        match (&config.tcp_listen, config.roles.gateway) {
            (Some(tcp), true) => {
                Some(tokio::net::TcpListener::bind(tcp).await.map_err(|source| {
                    StartError::Bind {
                        addr: tcp.clone(),
                        source,
                    }
                })?)
            }
            _ => None,
        };
    let tcp_addr = match &tcp_listener {
        Some(l) => Some(l.local_addr().map_err(|source| StartError::Bind {
            addr: config.tcp_listen.clone().unwrap_or_default(),
            source,
        })?),
        None => None,
    };
    let tcp_url = tcp_addr.map(|a| format!("tcp://{a}"));
    let public_url = config
        .public_url
        .clone()
        .unwrap_or_else(|| format!("http://{addr}"));
    let metrics = Arc::new(Metrics::new());
    let hub = Arc::new(Hub::new(metrics.clone()));
    let sink: Arc<dyn BusSink> = hub.clone();
    let backend = open_backend(&config, &public_url, sink).await?;
    let node = Arc::new(Node::new(
        config.node_id.clone(),
        config.limits.clone(),
        backend,
        hub,
        metrics.clone(),
    ));
    if let (Some(url), Some(secret)) = (&config.webhook_url, &config.webhook_secret) {
        let hook = switchboard_webhook::Webhook::start(
            switchboard_webhook::WebhookConfig::new(url.clone(), secret.clone()),
            metrics.clone(),
        );
        node.set_offline_notifier(hook);
    }

    let api_config = ApiConfig {
        public_url,
        tcp_url: tcp_url.clone(),
        weight: config.weight,
        api_key: config.api_key.clone(),
        gateway: config.roles.gateway,
    };
    let state = AppState {
        node: node.clone(),
        config: Arc::new(api_config),
    };
    let mut polls = None;
    let mut router = Router::new().merge(switchboard_api::ops_routes(state.clone()));
    if config.roles.api {
        router = router.merge(switchboard_api::api_routes(state.clone()));
    }
    if config.roles.dispatcher {
        router = router.merge(switchboard_api::dispatch_routes(state.clone()));
    }
    if config.roles.gateway {
        let mut poll_config = PollConfig::new(state.config.public_url.clone());
        poll_config.max_buffered = config.limits.outbound_queue.max(64);
        poll_config.idle = config.poll_idle;
        let sessions = PollSessions::new(node.clone(), poll_config);
        polls = Some(sessions.clone());
        router = router
            .merge(switchboard_gateway::ws_route(node.clone()))
            .merge(switchboard_gateway::poll::poll_routes(sessions));
    }
    let router = switchboard_api::finish(router, node.clone(), config.limits.max_frame_bytes);

    let stop_accepting = CancellationToken::new();
    if let Some(listener) = tcp_listener {
        tokio::spawn(switchboard_gateway::tcp::serve_tcp(
            listener,
            node.clone(),
            stop_accepting.clone(),
        ));
    }
    let stop = stop_accepting.clone();
    let server = tokio::spawn(async move {
        let serve = axum::serve(listener, router)
            .with_graceful_shutdown(async move { stop.cancelled().await });
        if let Err(e) = serve.await {
            tracing::error!(error = %e, "HTTP server failed");
        }
    });
    tracing::info!(node_id = %node.id, %addr, "listening on {addr}");
    Ok(RunningServer {
        addr,
        tcp_addr,
        node,
        stop_accepting,
        server,
        polls,
        shutdown_timeout: config.shutdown_timeout,
    })
}

impl RunningServer {
    /// Graceful shutdown: refuse new clients (draining), tell every client to reconnect
    /// elsewhere, wait for them to leave and for long-poll clients to collect their last frames
    /// (up to the shutdown timeout), then stop the listeners and flush and close the backend.
    pub async fn shutdown(self) {
        let started = Instant::now();
        // Draining: new WebSocket upgrades, TCP clients, poll sessions and dispatches get 503.
        self.node.set_draining();
        let told = self.node.hub.kill_all(DisconnectReason::Shutdown);
        tracing::info!(clients = told, "shutting down: clients told to reconnect");
        let deadline = started + self.shutdown_timeout;
        while self.node.hub.open_connections() > 0 && Instant::now() < deadline {
            // Connections opened meanwhile (already past the draining check) are told too.
            self.node.hub.kill_all(DisconnectReason::Shutdown);
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        let left = self.node.hub.open_connections();
        if left > 0 {
            tracing::warn!(
                left,
                "shutdown timeout: closing with clients still connected"
            );
        }
        // Long-poll clients fetch their final frames with one more GET; give them a moment.
        if let Some(polls) = &self.polls {
            let collect_by =
                (Instant::now() + Duration::from_secs(2)).min(deadline.max(Instant::now()));
            while polls.uncollected() > 0 && Instant::now() < collect_by {
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        }
        self.stop_accepting.cancel();
        let _ = tokio::time::timeout(Duration::from_secs(5), self.server).await;
        self.node.backend.lifecycle.close().await;
        tracing::info!(
            elapsed_ms = started.elapsed().as_millis() as u64,
            "shutdown complete"
        );
    }
}

/// The embedded backend, or the Redis one when `--redis` is given. A Redis that cannot be
/// reached stops the start with a message naming the URL.
async fn open_backend(
    config: &ServerConfig,
    public_url: &str,
    sink: Arc<dyn BusSink>,
) -> Result<Backend, StartError> {
    match &config.redis {
        Some(url) => Err(StartError::Config(format!(
            "cluster mode (--redis {url}) is not available in this version; {public_url} can run on the embedded backend"
        ))),
        None => {
            let embedded = EmbeddedBackend::open(
                EmbeddedConfig {
                    data_dir: config.data_dir.clone(),
                    history_max_messages: config.history_max_messages,
                    history_max_age_ms: config.history_max_age.as_millis() as u64,
                    max_batch: 512,
                },
                sink,
            )
            .map_err(|e| StartError::Backend(e.to_string()))?;
            Ok(embedded.backend())
        }
    }
}
