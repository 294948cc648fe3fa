//! The cases, one async fn each. [`crate::run_all`] runs them all; each is public so that a
//! backend can run one alone. Each makes its own backend through the factory and closes it.

mod messages;
mod nodes;
mod recovery;
mod retention;
mod store;

pub use messages::{append_many, append_sequencing, concurrency, copy_to, history, idempotency};
pub use nodes::{broadcast, lifecycle, registry};
pub use recovery::{recovery_records, recovery_takeover};
pub use retention::{position, retention_by_count};
pub use store::{revocation, rooms, sessions, users};
