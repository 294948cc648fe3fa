//! The node's services, shared by the HTTP API and every transport: accounts and tokens,
//! access rules, publishing, history, presence and rooms.
//!
//! Access rules (from the contract): public rooms are open to every signed-in user; private
//! rooms to members only (`not_member`), and only the owner adds or removes others;
//! `user:<id>` is readable by that user alone and writable by anyone signed in (a direct
//! message), whose copy also lands in the sender's own stream.

use crate::admission::Admission;
use crate::auth::{PasswordHasherPool, Principal, now_ms, token_hash};
use crate::backend::{
    AppendRequest, AuthSession, Backend, ControlEvent, HistoryQuery, Receipt, Room,
    SERVER_IDEMPOTENCY_OWNER, User, Visibility,
};
use crate::config::Limits;
use crate::error::{Error, Result};
use crate::hub::Hub;
use crate::interest::BusInterest;
use crate::metrics::Metrics;
use crate::offline::OfflineTrigger;
use parking_lot::Mutex;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};
use switchboard_proto::conv::ConvKind;
use switchboard_proto::frame::PresenceEntry;
use switchboard_proto::{Conv, DisconnectReason, ErrorCode, Message, MessageBody};

mod accounts;
mod guards;
mod history;
mod messages;
mod rooms;

pub use guards::Guards;
pub use history::HistoryPage;
pub use messages::{PendingPublish, Published};

/// Largest history page.
pub const MAX_HISTORY_LIMIT: u32 = 500;
/// History page when none is asked for.
pub const DEFAULT_HISTORY_LIMIT: u32 = 50;
/// Most user ids in one presence query.
pub const MAX_PRESENCE_IDS: usize = 500;

/// Told when a message lands in the personal stream of a user with no live connection anywhere.
pub trait OfflineNotifier: Send + Sync + 'static {
    /// Queues the notification; must not block.
    fn offline_message(&self, user_id: &str, message: Arc<Message>);
}

/// Who publishes: a signed-in user, or the application's back end (server API).
#[derive(Debug, Clone, Copy)]
pub enum Publisher<'a> {
    /// A user; `from` is set and private-room rules apply.
    User(&'a str),
    /// The server API; `from` is null and no membership is needed.
    Server,
}

/// A token just issued.
#[derive(Debug, Clone, serde::Serialize)]
pub struct IssuedToken {
    /// The bearer token (shown once; only its hash is stored).
    pub token: String,
    /// Its user.
    pub user_id: String,
    /// Expiry, ms since the Unix epoch.
    pub expires_at: u64,
}

/// One node's services and state.
pub struct Node {
    /// This node's id (shared: every connection's registry entry names it).
    pub id: Arc<str>,
    /// Limits and timings.
    pub limits: Limits,
    /// Where data lives.
    pub backend: Backend,
    /// Local subscriptions and fan-out.
    pub hub: Arc<Hub>,
    /// Prometheus metrics.
    pub metrics: Arc<Metrics>,
    /// Password hashing off the runtime.
    pub passwords: PasswordHasherPool,
    /// Limits per user and per client IP (HTTP publishes, DMs, rooms, registration, login).
    pub guards: Guards,
    /// Session slots (`max_connections`) and the tracker of session tasks the drain waits on.
    pub admission: Admission,
    /// Which conversations this node is subscribed to on the bus.
    pub interest: BusInterest,
    /// The bounded queue to the offline webhook's presence check, once a notifier is set.
    offline: Mutex<Option<OfflineTrigger>>,
    draining: AtomicBool,
    /// Set when a drain is asked for (SIGTERM or the server API). A watch, not a Notify: several
    /// tasks wait for it (the drain sequence and the binary's main loop), and all must wake.
    drain_requested: tokio::sync::watch::Sender<bool>,
    /// A hash that never matches, verified for unknown users so a login takes the same time
    /// whether or not the name exists.
    dummy_hash: tokio::sync::OnceCell<String>,
}

impl Node {
    /// A node over `backend`, delivering into `hub`.
    pub fn new(
        id: String,
        limits: Limits,
        backend: Backend,
        hub: Arc<Hub>,
        metrics: Arc<Metrics>,
    ) -> Node {
        let cores = std::thread::available_parallelism().map_or(2, |n| n.get());
        let admission = Admission::new(limits.max_connections);
        let passwords = PasswordHasherPool::new(cores, limits.abuse.hash_queue);
        let guards = Guards::new(&limits);
        Node {
            id: id.into(),
            limits,
            backend,
            hub,
            metrics,
            passwords,
            guards,
            admission,
            offline: Mutex::new(None),
            interest: BusInterest::default(),
            draining: AtomicBool::new(false),
            drain_requested: tokio::sync::watch::Sender::new(false),
            dummy_hash: tokio::sync::OnceCell::new(),
        }
    }

    /// Sets who is told about messages for offline users (the webhook), and starts the worker
    /// that checks their presence (so it needs a tokio runtime).
    pub fn set_offline_notifier(&self, notifier: Arc<dyn OfflineNotifier>) {
        let registry = self.backend.registry.clone();
        let trigger = OfflineTrigger::start(notifier, registry, self.metrics.clone());
        *self.offline.lock() = Some(trigger);
    }

    /// Whether the node is draining (no new clients; existing ones are told to reconnect).
    pub fn is_draining(&self) -> bool {
        self.draining.load(Ordering::Acquire)
    }

    /// Marks the node draining.
    pub fn set_draining(&self) {
        self.draining.store(true, Ordering::Release);
    }

    /// Asks the process to drain and exit (what `POST /v1/server/nodes/self/drain` does).
    pub fn request_drain(&self) {
        self.set_draining();
        self.drain_requested.send_replace(true);
    }

    /// Completes once a drain was asked for.
    pub async fn drain_requested(&self) {
        let mut rx = self.drain_requested.subscribe();
        let _ = rx.wait_for(|asked| *asked).await;
    }
}

/// Validates a requested page size: default 50, clamped to 500, at least 1.
pub fn clamp_limit(limit: Option<u32>) -> Result<u32> {
    match limit {
        None => Ok(DEFAULT_HISTORY_LIMIT),
        Some(0) => Err(Error::bad_request("limit must be at least 1")),
        Some(n) => Ok(n.min(MAX_HISTORY_LIMIT)),
    }
}
