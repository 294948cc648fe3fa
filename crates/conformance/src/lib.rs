//! The backend conformance suite: written once, run against every backend, so that the embedded
//! and the Redis backends keep the same contract (the one documented in
//! `switchboard_core::backend`).
//!
//! A backend crate implements [`BackendFactory`] in its tests and invokes [`conformance_tests!`]
//! once, with an expression that makes a factory:
//!
//! ```ignore
//! switchboard_conformance::conformance_tests!(MyFactory::new());
//! ```
//!
//! That expands to one `#[tokio::test]` per case, named after it, each with a factory of its
//! own: a failure names its case, and does not hide the cases after it. The cases are listed
//! once, in [`for_each_case!`], which both the macro and [`run_all`] read.
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

/// Invokes the macro at path `$callback` with `$args` followed by the name of every case, in
/// the order [`run_all`] runs them: the one list of cases. A new case is added here (and in
/// [`cases`]).
#[macro_export]
macro_rules! for_each_case {
    ([$($callback:tt)*] $($args:tt)*) => {
        $($callback)*! {
            $($args)*
            users sessions revocation rooms append_sequencing append_many idempotency copy_to history
            position retention_by_count concurrency broadcast registry recovery_records recovery_takeover
            lifecycle
        }
    };
}

/// Expands to one `#[tokio::test]` per conformance case, named after the case, each running it
/// (through [`run_case`], with its timeout) against a factory of its own, made by evaluating
/// `$factory`. The invoking crate needs `tokio` (with its test macro) as a dev-dependency.
#[macro_export]
macro_rules! conformance_tests {
    ($factory:expr) => {
        $crate::for_each_case!([$crate::conformance_tests] @cases ($factory));
    };
    (@cases ($factory:expr) $($case:ident)*) => {
        $(
            #[::tokio::test(flavor = "multi_thread", worker_threads = 4)]
            async fn $case() {
                let factory = $factory;
                $crate::run_case(stringify!($case), $crate::cases::$case(&factory)).await;
            }
        )*
    };
}

/// Runs every case, in order, panicking with a message naming the case on the first failure.
/// Tests should prefer [`conformance_tests!`], which reports every failing case.
pub async fn run_all(factory: &dyn BackendFactory) {
    macro_rules! run_each {
        ($($case:ident)*) => {
            $(run_case(stringify!($case), cases::$case(factory)).await;)*
        };
    }
    for_each_case!([run_each]);
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
