//! Runs the shared backend conformance suite against the embedded backend: one test per case,
//! each with a factory (and temporary directories) of its own.

use crate::common;

use async_trait::async_trait;
use parking_lot::Mutex;
use std::sync::Arc;
use switchboard_conformance::BackendFactory;
use switchboard_core::backend::{Backend, BusSink};
use tempfile::TempDir;

/// Opens each backend in a fresh temporary directory, removed when the factory is dropped.
#[derive(Default)]
struct Factory {
    dirs: Mutex<Vec<TempDir>>,
}

impl Factory {
    fn open(&self, sink: Arc<dyn BusSink>, history_max_messages: u64) -> Backend {
        let dir = tempfile::tempdir().expect("tempdir");
        let backend = common::open(dir.path(), history_max_messages, sink);
        self.dirs.lock().push(dir);
        backend.backend()
    }
}

#[async_trait]
impl BackendFactory for Factory {
    async fn make(&self, sink: Arc<dyn BusSink>) -> Backend {
        self.open(sink, 0)
    }

    async fn make_with_history_limit(&self, sink: Arc<dyn BusSink>, max_messages: u64) -> Backend {
        self.open(sink, max_messages)
    }
}

switchboard_conformance::conformance_tests!(Factory::default());
