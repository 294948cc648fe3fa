//! The shared backend conformance suite on the shared Redis Cluster.

use async_trait::async_trait;
use std::sync::Arc;
use switchboard_conformance::BackendFactory;
use switchboard_core::backend::{Backend, BusSink};

struct Factory;

impl Factory {
    async fn open(&self, sink: Arc<dyn BusSink>, history_max_messages: u64) -> Backend {
        let mut config = crate::config(crate::shared());
        config.history_max_messages = history_max_messages;
        crate::common::connect(config, sink).await.backend()
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

switchboard_conformance::conformance_tests!(Factory);
