//! [`Shared`]: the state the backend object and its tasks (pub/sub, lease, sweeper,
//! retention) hold together, with the [`Health`] flags the tasks keep up to date.

use crate::config::RedisConfig;
use crate::conn::Redis;
use crate::keys::Keys;
use crate::scripts::Scripts;
use crate::{error, pubsub, registry, retention, users};
use parking_lot::Mutex;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use switchboard_core::backend::{BackendError, BusSink};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

/// Health flags read by [`Lifecycle::ready`] without a round trip.
///
/// [`Lifecycle::ready`]: switchboard_core::backend::Lifecycle::ready
#[derive(Default)]
pub(crate) struct Health {
    /// The last lease renewal succeeded.
    pub lease_ok: AtomicBool,
    /// The pub/sub connection is up and subscribed.
    pub pubsub_up: AtomicBool,
}

/// State shared by the backend object and its tasks.
pub(crate) struct Shared {
    pub config: RedisConfig,
    pub keys: Keys,
    pub redis: Redis,
    pub scripts: Scripts,
    pub sink: Arc<dyn BusSink>,
    pub health: Health,
    /// Set by `close`: every call then fails with `Unavailable`.
    pub closed: AtomicBool,
    /// Stops the tasks.
    pub cancel: CancellationToken,
    /// Commands to the pub/sub task.
    pub pubsub: mpsc::UnboundedSender<pubsub::Command>,
    /// What this node registered (see [`registry::Mirror`]).
    pub mirror: Mutex<registry::Mirror>,
    /// Test hook: the lease task stops renewing (a crashed node, as seen by the others).
    pub renewing_stopped: AtomicBool,
    /// Conversations recently noted for age trimming (see [`retention`]).
    pub retention: retention::Noted,
    /// Users found before (see [`users`]).
    pub users: users::Known,
    /// Appends wait for replicas and publish afterwards (see [`replicated`](crate::replicated)).
    pub replicated: bool,
}

impl Shared {
    /// `Err(Unavailable)` once closed.
    pub(crate) fn check_open(&self) -> Result<(), BackendError> {
        if self.closed.load(Ordering::SeqCst) {
            Err(error::closed())
        } else {
            Ok(())
        }
    }
}
