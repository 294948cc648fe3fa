//! Runs the shared backend conformance suite against the Redis backend: one test per case, each
//! with a real Redis of its own (so cases running in parallel share nothing), and a fresh key
//! prefix and node id per backend a case makes.

use crate::common;

use async_trait::async_trait;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use switchboard_conformance::BackendFactory;
use switchboard_core::backend::{Backend, BusSink};
use switchboard_testkit::RedisServer;

struct Factory {
    redis: RedisServer,
    cases: AtomicU64,
}

impl Factory {
    /// A backend under a key prefix and node id of its own.
    async fn open(&self, sink: Arc<dyn BusSink>, history_max_messages: u64) -> Backend {
        let n = self.cases.fetch_add(1, Ordering::SeqCst);
        let mut config = common::config(&self.redis, &format!("sb:t{n}:"), &format!("node-{n}"));
        config.history_max_messages = history_max_messages;
        common::connect(config, sink).await.backend()
    }
}

#[async_trait]
impl BackendFactory for Factory {
    async fn make(&self, sink: Arc<dyn BusSink>) -> Backend {
        self.open(sink, 0).await
    }

    async fn make_with_history_limit(&self, sink: Arc<dyn BusSink>, max_messages: u64) -> Backend {
        self.open(sink, max_messages).await
    }
}

impl Factory {
    /// A factory on a Redis of its own, stopped when the factory is dropped.
    fn start() -> Factory {
        Factory {
            redis: RedisServer::start(),
            cases: AtomicU64::new(0),
        }
    }
}

switchboard_conformance::conformance_tests!(Factory::start());
