//! A node running inside the test process on port 0, with the test configuration.

use super::{API_KEY, Client, Http, JsonApi, WsClient};
use serde_json::json;
use std::net::SocketAddr;
use std::path::Path;
use switchboard_server::config::ServeArgs;
use switchboard_server::{RunningServer, ServerConfig};

/// A node running inside the test process.
pub struct TestNode {
    pub server: Option<RunningServer>,
    pub addr: SocketAddr,
    pub dir: tempfile::TempDir,
    pub http: Http,
}

/// A default configuration for tests: port 0, a fresh data dir, the test API key.
pub fn test_config(dir: &Path) -> ServerConfig {
    let mut c = ServeArgs {
        listen: Some("127.0.0.1:0".into()),
        tcp_listen: Some("127.0.0.1:0".into()),
        data_dir: Some(dir.to_path_buf()),
        api_key: Some(API_KEY.into()),
        shutdown_timeout_ms: Some(5_000),
        reconnect_jitter_ms: Some(200),
        // Every test registers and logs in its users from 127.0.0.1, many a second: the
        // per-address limits are off here (the abuse tests turn them on).
        register_per_ip_per_min: Some(0),
        login_per_ip_per_min: Some(0),
        ..Default::default()
    }
    .resolve()
    .expect("test config");
    c.node_id = "n_test".into();
    c
}

impl TestNode {
    pub async fn start() -> TestNode {
        TestNode::start_with(|_| {}).await
    }

    /// Starts a node after `tweak` adjusts the configuration.
    pub async fn start_with(tweak: impl FnOnce(&mut ServerConfig)) -> TestNode {
        let dir = tempfile::tempdir().expect("tempdir");
        TestNode::start_in(dir, tweak).await
    }

    /// Starts a node on an existing data dir (restart tests).
    pub async fn start_in(
        dir: tempfile::TempDir,
        tweak: impl FnOnce(&mut ServerConfig),
    ) -> TestNode {
        let mut c = test_config(dir.path());
        tweak(&mut c);
        let server = switchboard_server::start(c).await.expect("node starts");
        let addr = server.addr;
        TestNode {
            server: Some(server),
            addr,
            dir,
            http: Http::new(addr),
        }
    }

    /// Graceful shutdown; returns the data dir for a restart.
    pub async fn stop(mut self) -> tempfile::TempDir {
        if let Some(s) = self.server.take() {
            s.shutdown().await;
        }
        self.dir
    }

    pub fn ws_url(&self) -> String {
        format!("ws://{}/v1/ws", self.addr)
    }

    /// Registers and logs in a user; returns (user_id, token).
    pub async fn user(&self, name: &str) -> (String, String) {
        self.http.user(name).await
    }

    /// The TCP transport's address.
    pub fn tcp_addr(&self) -> SocketAddr {
        self.server
            .as_ref()
            .and_then(|s| s.tcp_addr)
            .expect("the TCP transport is on")
    }

    /// Connects and authenticates with an `auth` frame; returns the client after `welcome`.
    pub async fn connect(&self, token: &str) -> WsClient {
        let mut c = WsClient::connect(&self.ws_url()).await;
        c.send(json!({"type": "auth", "id": "auth", "token": token}))
            .await;
        let w = c.expect("welcome").await;
        assert_eq!(w["id"], "auth");
        c
    }

    pub fn metric(&self, text: &str, name: &str) -> f64 {
        metric(text, name)
    }
}

/// Reads one sample's value from Prometheus text.
pub fn metric(text: &str, name: &str) -> f64 {
    text.lines()
        .find_map(|l| {
            l.strip_prefix(name)
                .and_then(|rest| rest.strip_prefix(' '))
                .map(|v| v.trim().parse().unwrap_or(f64::NAN))
        })
        .unwrap_or_else(|| panic!("metric {name} not found"))
}
