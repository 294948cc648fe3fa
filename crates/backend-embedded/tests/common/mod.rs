//! Helpers shared by the embedded backend's integration tests.

#![allow(dead_code)]

use std::path::Path;
use std::sync::Arc;
use switchboard_backend_embedded::{EmbeddedBackend, EmbeddedConfig};
use switchboard_core::backend::{AppendRequest, BusSink};
use switchboard_proto::{Conv, MessageBody};

/// Opens a backend in `dir` with the given count limit.
pub fn open(dir: &Path, history_max_messages: u64, sink: Arc<dyn BusSink>) -> Arc<EmbeddedBackend> {
    EmbeddedBackend::open(
        EmbeddedConfig {
            data_dir: dir.to_path_buf(),
            history_max_messages,
            history_max_age_ms: 0,
            max_batch: 512,
            commit_delay: std::time::Duration::ZERO,
            index_cycle: switchboard_backend_embedded::DEFAULT_INDEX_CYCLE,
            durability: Default::default(),
            commit_metrics: None,
        },
        sink,
    )
    .expect("open the embedded backend")
}

/// A request with body `{"n":n}` and idempotency key `k<n>` owned by `u_1`.
pub fn keyed(conv: &Conv, n: u64) -> AppendRequest {
    AppendRequest {
        conv: conv.clone(),
        from: Some("u_1".into()),
        to: None,
        body: MessageBody::from_json(format!(r#"{{"n":{n}}}"#)).expect("valid JSON"),
        client_msg_id: Some(format!("k{n}")),
        idempotency_owner: "u_1".into(),
        copy_to: None,
    }
}
