//! The dispatcher's view of the gateways, kept fresh by a prober, and `dispatch()` over it.

use crate::health::Health;
use crate::placement::{Candidate, place};
use crate::rebalance::{Load, Rebalance};
use parking_lot::RwLock;
use serde::Deserialize;
use serde_json::{Value, json};
use std::collections::HashMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Weak};
use std::time::{Duration, Instant};

/// Dispatcher settings.
#[derive(Debug, Clone)]
pub struct DispatcherConfig {
    /// Gateways given on the command line (`--gateways`), as base URLs.
    pub static_gateways: Vec<String>,
    /// How often every gateway is probed.
    pub probe_interval: Duration,
    /// How long a probe may take before it counts as failed.
    pub probe_timeout: Duration,
    /// Share of `max_connections` past which a gateway gets no new clients.
    pub high_water: f64,
    /// `ttl_ms` of answers: how long a client may reuse one.
    pub ttl_ms: u64,
    /// Reconnect backoff hints given to clients.
    pub backoff_base_ms: u64,
    /// Reconnect backoff ceiling given to clients.
    pub backoff_max_ms: u64,
    /// Moving clients off gateways above their share (see [`crate::rebalance`]); `None`: off.
    pub rebalance: Option<Rebalance>,
    /// PEM CA certificates trusted when probing `https://` gateways, besides the public ones.
    pub ca: Option<std::path::PathBuf>,
}

impl Default for DispatcherConfig {
    fn default() -> Self {
        DispatcherConfig {
            static_gateways: Vec::new(),
            probe_interval: Duration::from_secs(1),
            probe_timeout: Duration::from_millis(800),
            high_water: 0.9,
            ttl_ms: 30_000,
            ca: None,
            backoff_base_ms: 500,
            backoff_max_ms: 30_000,
            rebalance: None,
        }
    }
}

/// The local node, when this process is also a gateway: read from memory, never probed.
#[derive(Debug, Clone)]
pub struct LocalGateway {
    /// Its node id.
    pub node_id: String,
    /// Its client endpoints.
    pub endpoints: Value,
    /// Open connections now.
    pub connections: u64,
    /// Its capacity.
    pub max_connections: u64,
    /// Its weight.
    pub weight: u32,
    /// Whether it is draining.
    pub draining: bool,
}

/// Supplies the local node's state on demand.
pub type LocalSource = Arc<dyn Fn() -> LocalGateway + Send + Sync>;
/// Lists gateway base URLs discovered elsewhere (the cluster registry), asked every round.
pub type GatewaySource =
    Arc<dyn Fn() -> Pin<Box<dyn Future<Output = Vec<String>> + Send>> + Send + Sync>;

/// What `GET /v1/node` answers (the fields placement needs).
#[derive(Debug, Deserialize)]
struct NodeInfo {
    node_id: String,
    connections: u64,
    max_connections: u64,
    #[serde(default = "one")]
    weight: u32,
    #[serde(default)]
    draining: bool,
    #[serde(default)]
    endpoints: Value,
}

fn one() -> u32 {
    1
}

/// A probed gateway.
#[derive(Debug, Clone, Default)]
struct Known {
    health: Health,
    node_id: Option<String>,
    endpoints: Value,
    connections: u64,
    /// Clients placed there since the last probe, so a burst does not all land on one node.
    placed_since_probe: u64,
    max_connections: u64,
    weight: u32,
    /// When it was last asked to move clients (rebalancing).
    last_shed: Option<Instant>,
}

/// A gateway in the dispatcher's view, for tests and operators.
#[derive(Debug, Clone, PartialEq)]
pub struct GatewayState {
    /// Base URL probed (empty for the local node).
    pub url: String,
    /// Node id, once a probe answered.
    pub node_id: Option<String>,
    /// Whether clients are placed there.
    pub in_rotation: bool,
}

/// Places clients on gateways.
pub struct Dispatcher {
    config: DispatcherConfig,
    local: Option<LocalSource>,
    known: RwLock<HashMap<String, Known>>,
}

impl Dispatcher {
    /// Starts the dispatcher and its prober (which stops when the dispatcher is dropped).
    pub fn start(
        config: DispatcherConfig,
        local: Option<LocalSource>,
        discover: Option<GatewaySource>,
    ) -> Arc<Dispatcher> {
        let d = Arc::new(Dispatcher {
            config,
            local,
            known: RwLock::new(HashMap::new()),
        });
        tokio::spawn(probe_loop(Arc::downgrade(&d), discover));
        d
    }

    /// The answer to `GET /v1/dispatch`, or `None` when no gateway can take a client.
    pub fn dispatch(&self, affinity: Option<&str>) -> Option<Value> {
        let local = self.local.as_ref().map(|f| f());
        let mut known = self.known.write();
        let mut candidates = Vec::new();
        let mut endpoints = Vec::new();
        let mut urls: Vec<Option<String>> = Vec::new();
        if let Some(l) = local.as_ref().filter(|l| !l.draining) {
            candidates.push(Candidate {
                node_id: l.node_id.clone(),
                connections: l.connections,
                max_connections: l.max_connections,
                weight: l.weight,
            });
            endpoints.push(l.endpoints.clone());
            urls.push(None);
        }
        let local_id = local.as_ref().map(|l| l.node_id.as_str());
        for (url, k) in known.iter() {
            let Some(id) = &k.node_id else { continue };
            if !k.health.in_rotation() || Some(id.as_str()) == local_id {
                continue;
            }
            candidates.push(Candidate {
                node_id: id.clone(),
                connections: k.connections + k.placed_since_probe,
                max_connections: k.max_connections,
                weight: k.weight,
            });
            endpoints.push(k.endpoints.clone());
            urls.push(Some(url.clone()));
        }
        let mut p = place(&candidates, affinity, self.config.high_water)?;
        // While loads are uneven, a client whose affinity names a gateway above its share is
        // placed by load instead (else the clients moved off it would come straight back).
        if let (Some(r), Some(_)) = (&self.config.rebalance, affinity) {
            let loads: Vec<Load> = candidates.iter().map(load_of).collect();
            let c = &candidates[p.chosen];
            if r.overloaded(&loads, c.connections, load_of(c).capacity) {
                p = place(&candidates, None, self.config.high_water)?;
            }
        }
        if let Some(url) = &urls[p.chosen]
            && let Some(k) = known.get_mut(url)
        {
            k.placed_since_probe += 1;
        }
        let alternates: Vec<Value> = p
            .alternates
            .iter()
            .map(|&i| json!({"node_id": candidates[i].node_id, "endpoints": endpoints[i]}))
            .collect();
        Some(json!({
            "node_id": candidates[p.chosen].node_id,
            "endpoints": endpoints[p.chosen],
            "alternates": alternates,
            "ttl_ms": self.config.ttl_ms,
            "backoff": {"base_ms": self.config.backoff_base_ms, "max_ms": self.config.backoff_max_ms},
        }))
    }

    /// The probed gateways and whether each is in rotation.
    pub fn gateways(&self) -> Vec<GatewayState> {
        let mut v: Vec<GatewayState> = self
            .known
            .read()
            .iter()
            .map(|(url, k)| GatewayState {
                url: url.clone(),
                node_id: k.node_id.clone(),
                in_rotation: k.health.in_rotation(),
            })
            .collect();
        v.sort_by(|a, b| a.url.cmp(&b.url));
        v
    }

    async fn probe_round(&self, client: &reqwest::Client, discover: &Option<GatewaySource>) {
        let mut urls: Vec<String> = self
            .config
            .static_gateways
            .iter()
            .map(|u| u.trim_end_matches('/').to_owned())
            .collect();
        if let Some(d) = discover {
            urls.extend(
                d().await
                    .into_iter()
                    .map(|u| u.trim_end_matches('/').to_owned()),
            );
        }
        urls.sort();
        urls.dedup();
        let mut probes = tokio::task::JoinSet::new();
        for url in &urls {
            let (client, url, timeout) = (client.clone(), url.clone(), self.config.probe_timeout);
            probes.spawn(async move {
                let answer = tokio::time::timeout(timeout, async {
                    let resp = client.get(format!("{url}/v1/node")).send().await.ok()?;
                    if !resp.status().is_success() {
                        return None;
                    }
                    resp.json::<NodeInfo>().await.ok()
                })
                .await
                .ok()
                .flatten();
                (url, answer)
            });
        }
        let mut results = Vec::with_capacity(urls.len());
        while let Some(r) = probes.join_next().await {
            if let Ok(r) = r {
                results.push(r);
            }
        }
        let mut known = self.known.write();
        // Gateways no longer listed anywhere (e.g. their lease expired) leave the view.
        known.retain(|url, _| urls.contains(url));
        for (url, answer) in results {
            let k = known.entry(url).or_default();
            match answer {
                Some(info) => {
                    k.health.probe_ok(info.draining);
                    k.node_id = Some(info.node_id);
                    k.endpoints = info.endpoints;
                    k.connections = info.connections;
                    k.max_connections = info.max_connections;
                    k.weight = info.weight.max(1);
                    k.placed_since_probe = 0;
                }
                None => k.health.probe_failed(),
            }
        }
    }

    /// One rebalancing step after a probe round: the gateways to ask, with how many clients
    /// each should move (their `last_shed` is set now).
    fn rebalance_plan(&self, r: &Rebalance) -> Vec<(String, u64)> {
        let local = self.local.as_ref().map(|f| f());
        let mut known = self.known.write();
        let local_id = local.as_ref().map(|l| l.node_id.clone());
        let mut urls: Vec<Option<String>> = Vec::new();
        let mut loads = Vec::new();
        if let Some(l) = local.as_ref().filter(|l| !l.draining) {
            urls.push(None);
            loads.push(Load {
                connections: l.connections,
                capacity: l.max_connections.max(1) as f64 * f64::from(l.weight.max(1)),
            });
        }
        for (url, k) in known.iter() {
            if k.node_id.is_none() || !k.health.in_rotation() || k.node_id == local_id {
                continue;
            }
            urls.push(Some(url.clone()));
            loads.push(Load {
                connections: k.connections,
                capacity: k.max_connections.max(1) as f64 * f64::from(k.weight.max(1)),
            });
        }
        let now = Instant::now();
        let mut asks = Vec::new();
        for (url, n) in urls.into_iter().zip(r.plan(&loads)) {
            // The local gateway is not asked over HTTP: a dispatcher that is also a gateway
            // only draws clients to it.
            let (Some(url), true) = (url, n > 0) else {
                continue;
            };
            if let Some(k) = known.get_mut(&url)
                && k.last_shed
                    .is_none_or(|t| now.duration_since(t) >= r.cooldown)
            {
                k.last_shed = Some(now);
                asks.push((url, n));
            }
        }
        asks
    }
}

fn load_of(c: &Candidate) -> Load {
    Load {
        connections: c.connections,
        capacity: c.max_connections.max(1) as f64 * f64::from(c.weight.max(1)),
    }
}

/// Asks each gateway to move `count` of its clients (answers are not waited for past the probe
/// timeout; a gateway that did not get it is asked again after the cooldown).
async fn shed(client: &reqwest::Client, r: &Rebalance, asks: Vec<(String, u64)>, t: Duration) {
    let mut sent = tokio::task::JoinSet::new();
    for (url, count) in asks {
        let req = client
            .post(format!("{url}/v1/server/nodes/self/shed"))
            .header("x-api-key", &r.api_key)
            .json(&json!({"count": count}))
            .timeout(t);
        sent.spawn(async move {
            match req.send().await {
                Ok(resp) if resp.status().is_success() => {
                    tracing::info!(gateway = %url, count, "asked a gateway to move clients (rebalancing)");
                }
                Ok(resp) => {
                    tracing::warn!(gateway = %url, status = %resp.status(), "a gateway refused to move clients")
                }
                Err(e) => tracing::debug!(gateway = %url, error = %e, "asking a gateway to move clients failed"),
            }
        });
    }
    while sent.join_next().await.is_some() {}
}

/// The prober's HTTP client, trusting the CA file of `ca` too; an error names the file.
pub fn http_client(ca: Option<&std::path::Path>) -> Result<reqwest::Client, String> {
    let mut builder = reqwest::Client::builder().pool_idle_timeout(Duration::from_secs(30));
    if let Some(ca) = ca {
        let pem = std::fs::read(ca).map_err(|e| format!("--ca {}: {e}", ca.display()))?;
        let certs = reqwest::Certificate::from_pem_bundle(&pem)
            .map_err(|e| format!("--ca {}: {e}", ca.display()))?;
        for c in certs {
            builder = builder.add_root_certificate(c);
        }
    }
    builder.build().map_err(|e| e.to_string())
}

async fn probe_loop(dispatcher: Weak<Dispatcher>, discover: Option<GatewaySource>) {
    let ca = dispatcher.upgrade().and_then(|d| d.config.ca.clone());
    let client = match http_client(ca.as_deref()) {
        Ok(c) => c,
        Err(e) => {
            tracing::error!(error = %e, "cannot build the prober's HTTP client; only the local gateway is placed");
            return;
        }
    };
    loop {
        let interval = {
            let Some(d) = dispatcher.upgrade() else {
                return;
            };
            d.probe_round(&client, &discover).await;
            if let Some(r) = &d.config.rebalance {
                let asks = d.rebalance_plan(r);
                if !asks.is_empty() {
                    shed(&client, r, asks, d.config.probe_timeout).await;
                }
            }
            d.config.probe_interval
        };
        tokio::time::sleep(interval).await;
    }
}
