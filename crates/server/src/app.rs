//! Assembling a node before anything listens: the backend, hub, webhook and dispatcher, and
//! the router of its roles ([`App`], from [`build`]).

use crate::backend::open_backend;
use crate::dispatcher::start_dispatcher;
use crate::{ServerConfig, StartError};
use axum::Router;
use std::sync::Arc;
use switchboard_api::{ApiConfig, AppState};
use switchboard_core::Node;
use switchboard_core::backend::BusSink;
use switchboard_core::hub::Hub;
use switchboard_core::metrics::Metrics;
use switchboard_gateway::poll::{PollConfig, PollSessions};
use switchboard_gateway::socketio::serve::{SioConfig, SioEndpoint, socketio_endpoint};

/// A node's services and its HTTP app, before anything listens.
pub struct App {
    /// The node's services.
    pub node: Arc<Node>,
    /// Every route of the configured roles, with the shared layers (errors, body limit).
    pub router: Router,
    /// `/metrics` alone, when `--metrics-listen` serves it (it is then not in `router`).
    pub metrics_router: Option<Router>,
    /// The long-polling sessions, when this node is a gateway (the drain waits on them).
    pub(crate) polls: Option<Arc<PollSessions>>,
    /// The Socket.IO endpoint, when this node is a gateway (the drain waits on it too).
    pub(crate) sio: Option<Arc<SioEndpoint>>,
}

/// Builds the node (backend, hub, webhook, dispatcher) and the router for its roles, as
/// [`start`](crate::start) serves them; in-process tests call the router directly.
/// `public_url` and `tcp_url` are what the node advertises.
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
