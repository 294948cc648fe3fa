//! The backend conformance suite: written once, run against every backend, so that the embedded
//! and the Redis backends keep the same contract (the one documented in
//! `switchboard_core::backend`).
//!
//! A backend crate implements [`BackendFactory`] in its tests and calls [`run_all`]:
//!
//! ```ignore
//! #[tokio::test(flavor = "multi_thread")]
//! async fn conformance() {
//!     switchboard_conformance::run_all(&MyFactory::new()).await;
//! }
//! ```
//!
//! Each case is also public (e.g. [`cases::idempotency`]) so that a backend can run one alone.
//! Every case asks the factory for a fresh, empty backend wired to a [`RecordingSink`], and
//! closes it at the end. Cases subscribe to every conversation they expect deliveries from, so
//! they hold for backends whose bus delivers only subscribed conversations. Persistence across
//! restarts is backend-specific and tested by each backend, not here.

pub mod cases;
mod sink;
mod util;

pub use sink::RecordingSink;

use async_trait::async_trait;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;
use switchboard_core::backend::{Backend, BusSink};

/// Makes the backends the suite tests.
#[async_trait]
pub trait BackendFactory: Send + Sync {
    /// Makes a fresh, empty backend wired to the given sink. Called once per test case.
    ///
    /// Its history must hold at least 10,000 messages per conversation (or be unlimited): the
    /// cases read back everything they append.
    async fn make(&self, sink: Arc<dyn BusSink>) -> Backend;

    /// Like [`make`](Self::make), but the backend keeps only the latest `max_messages` messages of
    /// each conversation (`max_messages` is small, e.g. 5). Used by the retention cases.
    async fn make_with_history_limit(&self, sink: Arc<dyn BusSink>, max_messages: u64) -> Backend;
}

/// The longest one case may take.
const CASE_TIMEOUT: Duration = Duration::from_secs(120);

/// Runs every case, in order, panicking with a message naming the case on the first failure.
pub async fn run_all(factory: &dyn BackendFactory) {
    run_case("users", cases::users(factory)).await;
    run_case("sessions", cases::sessions(factory)).await;
    run_case("rooms", cases::rooms(factory)).await;
    run_case("append_sequencing", cases::append_sequencing(factory)).await;
    run_case("append_many", cases::append_many(factory)).await;
    run_case("idempotency", cases::idempotency(factory)).await;
    run_case("copy_to", cases::copy_to(factory)).await;
    run_case("history", cases::history(factory)).await;
    run_case("position", cases::position(factory)).await;
    run_case("retention_by_count", cases::retention_by_count(factory)).await;
    run_case("concurrency", cases::concurrency(factory)).await;
    run_case("broadcast", cases::broadcast(factory)).await;
    run_case("registry", cases::registry(factory)).await;
    run_case("lifecycle", cases::lifecycle(factory)).await;
}

/// Runs one case with a timeout, naming it in the output if it fails or hangs.
pub async fn run_case(name: &str, case: impl Future<Output = ()>) {
    eprintln!("conformance: {name} ...");
    let guard = FailureNote(name);
    if tokio::time::timeout(CASE_TIMEOUT, case).await.is_err() {
        panic!("conformance case `{name}` timed out after {CASE_TIMEOUT:?}");
    }
    drop(guard);
    eprintln!("conformance: {name} ok");
}

/// Prints which case failed when a panic unwinds through it.
struct FailureNote<'a>(&'a str);

impl Drop for FailureNote<'_> {
    fn drop(&mut self) {
        if std::thread::panicking() {
            eprintln!("conformance: case `{}` FAILED", self.0);
        }
    }
}
