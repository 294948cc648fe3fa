//! The `switchboard` server: builds a node from a [`ServerConfig`] (backend, hub, services,
//! webhook, routes for the configured roles), serves it, and shuts it down in order.
//! `main.rs` and the integration tests both use [`start`]; in-process tests use [`build`].
//!
//! This file listens and serves; assembling the node is in `app`, choosing the backend in
//! `backend`, the dispatcher role's sources in `dispatcher`, and the drain in `drain`.

mod app;
mod backend;
pub mod chat;
pub mod config;
mod dispatcher;
mod drain;
pub mod listen;

use drain::Lifecycle;
use std::net::SocketAddr;
use std::sync::Arc;
use switchboard_core::Node;
use switchboard_gateway::tls::TlsFiles;
use tokio_util::sync::CancellationToken;

pub use app::{App, build};
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
