//! The `switchboard` server: builds a node from a [`ServerConfig`] (backend, hub, services,
//! webhook, routes for the configured roles), serves it, and shuts it down in order.
//! `main.rs` and the integration tests both use [`start`]; in-process tests use [`build`].

pub mod chat;
pub mod config;
pub mod listen;

use axum::Router;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};
use switchboard_api::{ApiConfig, AppState};
use switchboard_backend_embedded::{EmbeddedBackend, EmbeddedConfig};
use switchboard_backend_redis::{RedisBackend, RedisConfig, ShardHook};
use switchboard_core::Node;
use switchboard_core::backend::{Backend, BusSink, NodeAnnouncement};
use switchboard_core::hub::Hub;
use switchboard_core::metrics::Metrics;
use switchboard_dispatcher::prober::LocalSource;
use switchboard_dispatcher::{
    Dispatcher, DispatcherConfig, GatewaySource, LocalGateway, Rebalance,
};
use switchboard_gateway::poll::{PollConfig, PollSessions};
use switchboard_gateway::socketio::serve::{SioConfig, SioEndpoint, socketio_endpoint};
use switchboard_gateway::tls::TlsFiles;
use switchboard_proto::DisconnectReason;
use tokio_util::sync::CancellationToken;

pub use config::{ServeArgs, ServerConfig};
pub use listen::{LISTEN_BACKLOG, bind_listener, raise_open_files_limit};

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
    /// The bound `/metrics` address, when it has a listener of its own.
    pub metrics_addr: Option<SocketAddr>,
    /// The node's services (tests look inside).
    pub node: Arc<Node>,
    /// Set when the node has drained and stopped.
    finished: tokio::sync::watch::Receiver<bool>,
}

/// What the drain sequence needs, owned by the task that runs it.
struct Lifecycle {
    node: Arc<Node>,
    stop_accepting: CancellationToken,
    server: tokio::task::JoinHandle<()>,
    polls: Option<Arc<PollSessions>>,
    sio: Option<Arc<SioEndpoint>>,
    drain_window: Duration,
    shutdown_timeout: Duration,
}

/// A listener on `addr` ([`bind_listener`]) and the address it got.
async fn bind(addr: &str) -> Result<(tokio::net::TcpListener, SocketAddr), StartError> {
    let bound = match bind_listener(addr).await {
        Ok(l) => l.local_addr().map(|a| (l, a)),
        Err(e) => Err(e),
    };
    bound.map_err(|source| StartError::Bind {
        addr: addr.to_owned(),
        source,
    })
}

/// Builds and starts a node. Returns once it listens.
pub async fn start(config: ServerConfig) -> Result<RunningServer, StartError> {
    let (listener, addr) = bind(&config.listen).await?;
    let tcp = match (&config.tcp_listen, config.roles.gateway) {
        (Some(tcp), true) => Some(bind(tcp).await?),
        _ => None,
    };
    let tcp_addr = tcp.as_ref().map(|(_, a)| *a);
    let metrics = match &config.metrics_listen {
        Some(m) => Some(bind(m).await?),
        None => None,
    };
    let metrics_addr = metrics.as_ref().map(|(_, a)| *a);
    let tls = match &config.tls {
        Some((cert, key)) => {
            let files = TlsFiles::load(cert, key).map_err(StartError::Config)?;
            listen::reload_on_sighup(files.clone());
            Some(files.acceptor())
        }
        None => None,
    };
    if let Some(ca) = &config.ca {
        // Checked here, so a bad file stops the start rather than the prober later.
        switchboard_dispatcher::prober::http_client(Some(ca)).map_err(StartError::Config)?;
    }
    let (http, tcp_scheme) = if tls.is_some() {
        ("https", "tls")
    } else {
        ("http", "tcp")
    };
    let tcp_url = tcp_addr.map(|a| format!("{tcp_scheme}://{a}"));
    let public_url = config
        .public_url
        .clone()
        .unwrap_or_else(|| format!("{http}://{addr}"));
    let App {
        node,
        router,
        metrics_router,
        polls,
        sio,
    } = build(&config, public_url, tcp_url).await?;

    let stop_accepting = CancellationToken::new();
    if let Some((listener, _)) = tcp {
        tokio::spawn(switchboard_gateway::tcp::serve_tcp(
            listener,
            node.clone(),
            config.tcp_max_connections_per_ip,
            tls.clone(),
            stop_accepting.clone(),
        ));
    }
    if let (Some((listener, _)), Some(metrics)) = (metrics, metrics_router) {
        tracing::info!(addr = ?metrics_addr, "metrics on their own listener");
        tokio::spawn(switchboard_gateway::serve::serve_http(
            listener,
            metrics.with_state(()),
            config.http.clone(),
            node.metrics.clone(),
            None,
            stop_accepting.clone(),
        ));
    }
    // Handlers are turned into routes once, here. Serving the `Router` with state still to
    // provide would redo that for every accepted connection (a boxed clone of every route).
    let server = tokio::spawn(switchboard_gateway::serve::serve_http(
        listener,
        router.with_state(()),
        config.http.clone(),
        node.metrics.clone(),
        tls,
        stop_accepting.clone(),
    ));
    tracing::info!(node_id = %node.id, %addr, "listening on {addr}");
    let (done, finished) = tokio::sync::watch::channel(false);
    let lifecycle = Lifecycle {
        node: node.clone(),
        stop_accepting,
        server,
        polls,
        sio,
        drain_window: config.drain_window,
        shutdown_timeout: config.shutdown_timeout,
    };
    // One drain sequence, whoever asks for it (SIGTERM through `shutdown`, or the server API).
    let waiting = node.clone();
    tokio::spawn(async move {
        waiting.drain_requested().await;
        lifecycle.drain().await;
        let _ = done.send(true);
    });
    Ok(RunningServer {
        addr,
        tcp_addr,
        metrics_addr,
        node,
        finished,
    })
}

/// A node's services and its HTTP app, before anything listens.
pub struct App {
    /// The node's services.
    pub node: Arc<Node>,
    /// Every route of the configured roles, with the shared layers (errors, body limit).
    pub router: Router,
    /// `/metrics` alone, when `--metrics-listen` serves it (it is then not in `router`).
    pub metrics_router: Option<Router>,
    /// The long-polling sessions, when this node is a gateway (the drain waits on them).
    polls: Option<Arc<PollSessions>>,
    /// The Socket.IO endpoint, when this node is a gateway (the drain waits on it too).
    sio: Option<Arc<SioEndpoint>>,
}

/// Builds the node (backend, hub, webhook, dispatcher) and the router for its roles, as
/// [`start`] serves them; in-process tests call the router directly. `public_url` and
/// `tcp_url` are what the node advertises.
pub async fn build(
    config: &ServerConfig,
    public_url: String,
    tcp_url: Option<String>,
) -> Result<App, StartError> {
    let metrics = Arc::new(Metrics::new());
    let hub = Arc::new(Hub::new(metrics.clone(), config.fanout_threads));
    let sink: Arc<dyn BusSink> = hub.clone();
    let backend = open_backend(config, &public_url, tcp_url.as_deref(), sink, &metrics).await?;
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
        tcp_url,
        weight: config.weight,
        api_key: config.api_key.clone(),
        gateway: config.roles.gateway,
        roles: [
            (config.roles.gateway, "gateway"),
            (config.roles.api, "api"),
            (config.roles.dispatcher, "dispatcher"),
        ]
        .into_iter()
        .filter(|(on, _)| *on)
        .map(|(_, name)| name.to_owned())
        .collect(),
    };
    let dispatcher = config
        .roles
        .dispatcher
        .then(|| start_dispatcher(config, &node, &api_config));
    let state = AppState {
        node: node.clone(),
        config: Arc::new(api_config),
        dispatcher,
    };
    let mut polls = None;
    let mut sio = None;
    let mut router = Router::new().merge(switchboard_api::ops_routes(state.clone()));
    let metrics = switchboard_api::metrics_routes(state.clone());
    let metrics_router = match config.metrics_listen {
        Some(_) => Some(switchboard_api::finish(
            metrics,
            node.clone(),
            config.limits.max_frame_bytes,
        )),
        None => {
            router = router.merge(metrics);
            None
        }
    };
    if config.roles.api {
        router = router.merge(switchboard_api::api_routes(state.clone()));
        router = router.merge(switchboard_api::web::routes());
    }
    if config.roles.dispatcher {
        router = router.merge(switchboard_api::dispatch_routes(state.clone()));
    }
    if config.roles.gateway {
        let mut poll_config = PollConfig::new(state.config.public_url.clone());
        poll_config.max_buffered = config.limits.outbound_queue.max(64);
        poll_config.idle = config.poll_idle;
        poll_config.first_get = config.poll_first_get;
        poll_config.max_buffered_bytes = config.poll_buffer_bytes;
        // wrong_node answers name the owner's URL, from what live nodes announced (cluster).
        let registry = node.backend.registry.clone();
        poll_config.locate = Some(Arc::new(move |owner: String| {
            let registry = registry.clone();
            Box::pin(async move {
                let nodes = registry.live_nodes().await.ok()?;
                let n = nodes.into_iter().find(|n| n.node_id == owner)?;
                n.public_url
            })
        }));
        let locate = poll_config.locate.clone();
        let sessions = PollSessions::new(node.clone(), poll_config);
        polls = Some(sessions.clone());
        let endpoint = Arc::new(socketio_endpoint(
            node.clone(),
            SioConfig {
                ping_interval: config.socketio_ping_interval,
                ping_timeout: config.socketio_ping_timeout,
                max_payload: config.limits.max_frame_bytes,
                recovery: config.socketio_recovery,
                lease: config.lease,
                locate,
                inbound_queue: 256,
            },
        ));
        // Browsers may use the transports from the allowed origins only (others: 403); the
        // Socket.IO endpoint follows the same list (SOCKETIO.md), below.
        let origins = Arc::new(config.allowed_origins.clone().unwrap_or_else(|| {
            switchboard_gateway::origin::OriginPolicy::for_public_url(&state.config.public_url)
        }));
        sio = Some((endpoint.clone(), origins.clone()));
        let browser = Router::new()
            .merge(switchboard_gateway::ws_route(node.clone()))
            .merge(switchboard_gateway::poll::poll_routes(sessions));
        router = router.merge(origins.apply(browser));
    }
    let mut router = switchboard_api::finish(router, node.clone(), config.limits.max_frame_bytes);
    if let Some((sio, origins)) = &sio {
        // Outside the API's layers: Engine.IO answers its own errors (`{"code":1,...}`) and
        // bounds its own bodies (`maxPayload`).
        router = router.merge(origins.clone().apply(sio.router()));
    }
    let sio = sio.map(|(endpoint, _)| endpoint);
    Ok(App {
        node,
        router,
        metrics_router,
        polls,
        sio,
    })
}

impl RunningServer {
    /// Graceful shutdown (SIGTERM): drains the node and returns once it has stopped.
    pub async fn shutdown(self) {
        self.node.request_drain();
        self.wait().await;
    }

    /// Returns once the node has drained and stopped (after SIGTERM or a drain asked through
    /// the server API).
    pub async fn wait(mut self) {
        let _ = self.finished.wait_for(|done| *done).await;
    }
}

impl Lifecycle {
    /// The drain: refuse new clients (draining), tell every client to reconnect elsewhere in
    /// paced batches spread over the drain window, wait for them to leave and for long-poll
    /// clients to collect their last frames, then stop the listeners and close the backend.
    async fn drain(self) {
        let started = Instant::now();
        // Draining: new WebSocket upgrades, TCP clients, poll sessions and dispatches get 503,
        // and `/v1/node` says so, so dispatchers stop placing clients here.
        self.node.set_draining();
        let total = self.node.hub.open_connections();
        const TICK: Duration = Duration::from_millis(100);
        let batches = (self.drain_window.as_millis() / TICK.as_millis()).max(1) as usize;
        let per_batch = total.div_ceil(batches).max(1);
        tracing::info!(
            clients = total,
            per_batch,
            window_ms = self.drain_window.as_millis() as u64,
            "draining"
        );
        let deadline = started + self.drain_window + self.shutdown_timeout;
        // No session is admitted from now on (the transports check `draining` first); the
        // tracker's wait ends when the last session task has ended, sessions admitted just
        // before the drain began included.
        let sessions = &self.node.admission;
        sessions.close();
        let all_ended = sessions.wait();
        tokio::pin!(all_ended);
        let mut ended = false;
        while !ended && Instant::now() < deadline {
            // Paced: a batch per tick; connections opened meanwhile are told too.
            self.node
                .hub
                .kill_some(per_batch, DisconnectReason::Shutdown);
            let tick = tokio::time::sleep_until((Instant::now() + TICK).min(deadline).into());
            ended = tokio::select! {
                _ = &mut all_ended => true,
                _ = tick => false,
            };
        }
        let left = self.node.hub.open_connections();
        if left > 0 {
            tracing::warn!(left, "drain deadline: closing with clients still connected");
        }
        // Long-poll clients fetch their final frames with one more GET; give them a moment.
        if let Some(polls) = &self.polls {
            let collect_by =
                (Instant::now() + Duration::from_secs(2)).min(deadline.max(Instant::now()));
            while polls.uncollected() > 0 && Instant::now() < collect_by {
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        }
        // Socket.IO clients got `switchboard:reconnect`; their transports close after its
        // `delay_ms` (below the reconnect jitter), polling ones once they collected it.
        if let Some(sio) = &self.sio {
            let close_by =
                (Instant::now() + Duration::from_secs(6)).min(deadline.max(Instant::now()));
            while sio.session_count() > 0 && Instant::now() < close_by {
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            sio.close_all();
            sio.records.flush().await;
        }
        self.stop_accepting.cancel();
        let _ = tokio::time::timeout(Duration::from_secs(5), self.server).await;
        self.node.backend.lifecycle.close().await;
        tracing::info!(
            elapsed_ms = started.elapsed().as_millis() as u64,
            "drained and stopped"
        );
    }
}

/// The dispatcher of this process: the local node (when it is a gateway) read from memory, the
/// static `--gateways`, and the gateways the cluster registry knows, probed every second.
fn start_dispatcher(config: &ServerConfig, node: &Arc<Node>, api: &ApiConfig) -> Arc<Dispatcher> {
    let local: Option<LocalSource> = config.roles.gateway.then(|| {
        let (node, endpoints) = (
            node.clone(),
            switchboard_api::ops::endpoints_for(&api.public_url, api.tcp_url.as_deref()),
        );
        let weight = config.weight;
        Arc::new(move || LocalGateway {
            node_id: node.id.clone(),
            endpoints: endpoints.clone(),
            connections: node.hub.open_connections() as u64,
            max_connections: node.limits.max_connections as u64,
            weight,
            draining: node.is_draining(),
        }) as LocalSource
    });
    let registry = node.backend.registry.clone();
    // This node is read from memory (above) when it is a gateway: probing it over HTTP every
    // round would only cost CPU on an idle node.
    let own_id = config.roles.gateway.then(|| node.id.clone());
    let discover: GatewaySource = Arc::new(move || {
        let (registry, own_id) = (registry.clone(), own_id.clone());
        Box::pin(async move {
            match registry.live_nodes().await {
                Ok(nodes) => nodes
                    .into_iter()
                    // Only gateways take clients; api or dispatcher-only nodes announce too.
                    .filter(|n| n.gateway)
                    .filter(|n| Some(&n.node_id) != own_id.as_ref())
                    .filter_map(|n| n.public_url)
                    .collect(),
                Err(e) => {
                    tracing::warn!(error = %e, "cannot list gateways from the registry");
                    Vec::new()
                }
            }
        })
    });
    let rebalance = match (&config.api_key, config.rebalance_band > 0.0) {
        (Some(key), true) => Some(Rebalance {
            band: config.rebalance_band,
            step: config.rebalance_step,
            // Time for the moved clients' reconnect delays and a probe round or two.
            cooldown: (config.probe_interval * 2).max(Duration::from_secs(1)),
            api_key: key.clone(),
        }),
        _ => None,
    };
    let dconfig = DispatcherConfig {
        static_gateways: config.gateways.clone(),
        ca: config.ca.clone(),
        probe_interval: config.probe_interval,
        rebalance,
        ..DispatcherConfig::default()
    };
    Dispatcher::start(dconfig, local, Some(discover))
}

/// The embedded backend, or the Redis one when `--redis` is given. A Redis that cannot be
/// reached stops the start with a message naming the URL.
async fn open_backend(
    config: &ServerConfig,
    public_url: &str,
    tcp_url: Option<&str>,
    sink: Arc<dyn BusSink>,
    metrics: &Arc<Metrics>,
) -> Result<Backend, StartError> {
    let redis_url = match (&config.redis, config.redis_cluster.is_empty()) {
        (Some(url), _) => Some(url.clone()),
        (None, false) => Some(config.redis_cluster.join(",")),
        (None, true) => None,
    };
    match &redis_url {
        Some(url) => {
            let mut rc = RedisConfig::new(url.clone(), config.node_id.clone());
            rc.cluster = config.redis_cluster.clone();
            rc.wait_replicas = config.redis_wait_replicas;
            rc.wait_timeout = config.redis_wait_timeout;
            let counts = metrics.clone();
            rc.on_shard_message = Some(ShardHook(Arc::new(move |shard: &str| {
                counts.bus_shard_message(shard)
            })));
            rc.key_prefix = config.redis_prefix.clone();
            rc.history_max_messages = config.history_max_messages;
            rc.history_max_age_ms = config.history_max_age.as_millis() as u64;
            rc.lease = config.lease;
            let endpoints = switchboard_api::ops::endpoints_for(public_url, tcp_url);
            rc.announce = NodeAnnouncement {
                node_id: config.node_id.clone(),
                public_url: Some(public_url.to_owned()),
                // Same shape (ws, poll, tcp): the conversion cannot fail.
                endpoints: serde_json::from_value(endpoints).unwrap_or_default(),
                weight: config.weight,
                max_connections: config.limits.max_connections as u64,
                gateway: config.roles.gateway,
            };
            let redis = RedisBackend::connect(rc, sink)
                .await
                .map_err(|e| StartError::Backend(format!("cannot use Redis at {url}: {e}")))?;
            Ok(redis.backend())
        }
        None => {
            let embedded = EmbeddedBackend::open(
                EmbeddedConfig {
                    data_dir: config.data_dir.clone(),
                    history_max_messages: config.history_max_messages,
                    history_max_age_ms: config.history_max_age.as_millis() as u64,
                    max_batch: 512,
                    commit_delay: config.commit_delay,
                    durability: config.durability,
                    commit_metrics: Some(metrics.commits.clone()),
                },
                sink,
            )
            .map_err(|e| StartError::Backend(e.to_string()))?;
            Ok(embedded.backend())
        }
    }
}
