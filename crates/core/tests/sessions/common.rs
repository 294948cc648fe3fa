//! What the session tests share: a wire that records what the session wrote, nodes over the
//! embedded backend, and waiting for a condition.

use std::io;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;
use switchboard_backend_embedded::{EmbeddedBackend, EmbeddedConfig};
use switchboard_core::Node;
use switchboard_core::config::Limits;
use switchboard_core::hub::Hub;
use switchboard_core::metrics::Metrics;
use switchboard_core::transport::{Out, Progress, Wire};
use tokio::time::Instant;

/// A client that reads everything at once; keeps what it was sent.
#[derive(Default)]
pub struct Reads {
    /// Every frame written, in order.
    pub got: parking_lot::Mutex<Vec<Out>>,
}

impl Reads {
    /// What was written, as text: JSON frames as they are, the others by name.
    pub fn frames(&self) -> Vec<String> {
        let got = self.got.lock();
        got.iter()
            .map(|o| match o {
                Out::Text(b) => String::from_utf8_lossy(b).into_owned(),
                Out::Ping => "PING".to_owned(),
                Out::Pong(_) => "PONG".to_owned(),
                Out::Close(code) => format!("CLOSE {code}"),
            })
            .collect()
    }
}

impl Wire for Reads {
    fn try_write(
        &self,
        frames: &mut dyn Iterator<Item = &Out>,
        _offset: usize,
    ) -> io::Result<Progress> {
        let mut got = self.got.lock();
        let before = got.len();
        got.extend(frames.cloned());
        Ok(Progress {
            frames: got.len() - before,
            offset: 0,
            blocked: false,
        })
    }
    fn poll_writable(&self, _: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }
    fn shutdown(&self) {}
}

/// A node over a fresh embedded backend (its directory lives as long as the returned guard).
pub fn embedded_node(limits: Limits) -> (Arc<Node>, tempfile::TempDir) {
    let dir = tempfile::tempdir().unwrap();
    let metrics = Arc::new(Metrics::new());
    let hub = Arc::new(Hub::new(metrics.clone(), 0));
    let config = EmbeddedConfig {
        data_dir: dir.path().to_path_buf(),
        history_max_messages: 0,
        history_max_age_ms: 0,
        max_batch: 64,
        commit_delay: Duration::ZERO,
        index_cycle: switchboard_backend_embedded::DEFAULT_INDEX_CYCLE,
        durability: Default::default(),
        commit_metrics: Some(metrics.commits.clone()),
    };
    let backend = EmbeddedBackend::open(config, hub.clone())
        .unwrap()
        .backend();
    let node = Node::new("n1".into(), limits, backend, hub, metrics);
    (Arc::new(node), dir)
}

/// Waits until `check` holds, for at most 5 s.
pub async fn eventually(what: &str, mut check: impl AsyncFnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(5);
    while !check().await {
        assert!(Instant::now() < deadline, "still not so after 5 s: {what}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}
