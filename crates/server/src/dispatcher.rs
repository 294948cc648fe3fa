//! The dispatcher a node with the dispatcher role runs: where its gateways come from (this
//! node, `--gateways`, the cluster registry) and whether it rebalances.

use crate::ServerConfig;
use std::sync::Arc;
use std::time::Duration;
use switchboard_api::ApiConfig;
use switchboard_core::Node;
use switchboard_dispatcher::prober::LocalSource;
use switchboard_dispatcher::{
    Dispatcher, DispatcherConfig, GatewaySource, LocalGateway, Rebalance,
};

/// The dispatcher of this process: the local node (when it is a gateway) read from memory, the
/// static `--gateways`, and the gateways the cluster registry knows, probed every second.
pub(crate) fn start_dispatcher(
    config: &ServerConfig,
    node: &Arc<Node>,
    api: &ApiConfig,
) -> Arc<Dispatcher> {
    let local: Option<LocalSource> = config.roles.gateway.then(|| {
        let (node, endpoints) = (
            node.clone(),
            switchboard_api::ops::endpoints_for(&api.public_url, api.tcp_url.as_deref()),
        );
        let weight = config.weight;
        Arc::new(move || LocalGateway {
            node_id: node.id.to_string(),
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
                    .filter(|n| Some(n.node_id.as_str()) != own_id.as_deref())
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
