//! Switchboard's cluster backend on Redis: any number of nodes share one Redis server.
//!
//! - **Messages** (`broker`): one Lua script per append checks the idempotency key, assigns the
//!   next seq, adds the message to the conversation's stream (trimmed to the history limit) and
//!   publishes it on the conversation's channel, atomically; publication order is seq order.
//!   History and positions are read from the stream, whose entry ids are `<seq>-1`.
//! - **Bus** (`pubsub`): a node subscribes to a conversation's channel only while it has an
//!   interested connection. One task owns the pub/sub connection; when it drops, the task
//!   reconnects, subscribes again and fills the gap from the streams, so nothing is lost.
//! - **Store** (`store`, `rooms`): users, auth sessions, rooms and members in hashes and sorted
//!   sets.
//! - **Registry** (`registry`): live connections and room subscribers, tied to a per-node lease
//!   renewed every `lease / 3`; when a node dies its entries stop counting at once and are
//!   swept by the other nodes.
//! - **Retention** (`retention`): count limits are applied by the append itself; age limits by
//!   a task that trims old entries every minute.
//!
//! Key names are listed in the `keys` module. Everything of one conversation shares one hash
//! tag, so the message path carries over to Redis Cluster; the few places that touch several
//! slots at once say so. (The modules named here are private: read them in the source, or in
//! `cargo doc --document-private-items`.)

mod accounts;
mod batch;
mod broker;
mod config;
mod conn;
mod error;
mod keys;
mod pubsub;
mod pubsub_cluster;
mod recovery;
mod registry;
mod replicated;
mod retention;
mod rooms;
mod scripts;
mod shared;
mod store;
mod trait_impls;
mod users;

use conn::Redis;
use keys::Keys;
use parking_lot::Mutex;
use scripts::Scripts;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;
use switchboard_core::backend::{Backend, BackendError, BusSink, Lifecycle, NodeAnnouncement};
use tokio::sync::{mpsc, oneshot};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

pub use config::{RedisConfig, ShardHook};
pub(crate) use shared::{Health, Shared};

/// The Redis backend: implements [`Store`], [`Broker`], [`Registry`] and [`Lifecycle`]
/// (the `trait_impls` module).
///
/// [`Store`]: switchboard_core::backend::Store
/// [`Broker`]: switchboard_core::backend::Broker
/// [`Registry`]: switchboard_core::backend::Registry
pub struct RedisBackend {
    shared: Arc<Shared>,
    tasks: Mutex<Vec<JoinHandle<()>>>,
}

impl RedisBackend {
    /// Connects, checks the server answers (PING), loads the scripts, takes the node lease, and
    /// starts the pub/sub, lease, sweeper and retention tasks. A bad URL or an unreachable server
    /// fails with [`BackendError::Unavailable`] naming the URL within a few seconds.
    ///
    /// `sink` receives the messages of the conversations this node subscribes to, and every
    /// control event.
    pub async fn connect(
        config: RedisConfig,
        sink: Arc<dyn BusSink>,
    ) -> Result<Arc<RedisBackend>, BackendError> {
        let cluster = !config.cluster.is_empty();
        let redis = if cluster {
            Redis::connect_cluster(&config.cluster, config.response_timeout).await?
        } else {
            Redis::connect(&config.url, config.response_timeout).await?
        };
        let scripts = Scripts::new();
        for (name, script) in scripts.all() {
            redis
                .load(&format!("loading script {name}"), script)
                .await?;
        }
        let (pubsub_tx, pubsub_rx) = mpsc::unbounded_channel();
        let shared = Arc::new(Shared {
            keys: if cluster {
                Keys::cluster(&config.key_prefix)
            } else {
                Keys::new(&config.key_prefix)
            },
            replicated: cluster || config.wait_replicas > 0,
            retention: retention::Noted::new(config.history_max_age_ms),
            users: users::Known::default(),
            config,
            redis,
            scripts,
            sink,
            health: Health::default(),
            closed: AtomicBool::new(false),
            cancel: CancellationToken::new(),
            pubsub: pubsub_tx,
            mirror: Mutex::new(registry::Mirror::default()),
            renewing_stopped: AtomicBool::new(false),
        });
        if !cluster {
            // Upgrades of data older versions wrote on one server (no cluster deployment has any).
            accounts::index_username_keys(&shared).await?;
            accounts::index_user_sessions(&shared).await?;
        }
        registry::take_lease(&shared).await?;
        let backend = Arc::new(RedisBackend {
            shared: shared.clone(),
            tasks: Mutex::new(Vec::new()),
        });

        let (up_tx, up_rx) = oneshot::channel();
        if cluster {
            backend.spawn(pubsub_cluster::run(shared.clone(), pubsub_rx, up_tx));
        } else {
            backend.spawn(pubsub::run(shared.clone(), pubsub_rx, up_tx));
        }
        let first = tokio::time::timeout(Duration::from_secs(5), up_rx).await;
        match first {
            Ok(Ok(Ok(()))) => {}
            Ok(Ok(Err(e))) => {
                backend.close().await;
                return Err(e);
            }
            Ok(Err(_)) | Err(_) => {
                backend.close().await;
                return Err(BackendError::Unavailable(format!(
                    "Redis at {}: the pub/sub connection did not come up",
                    shared.redis.url()
                )));
            }
        }
        backend.spawn(registry::lease_task(shared.clone()));
        backend.spawn(registry::sweeper_task(shared.clone()));
        if shared.config.history_max_age_ms > 0 {
            backend.spawn(retention::task(shared.clone()));
        }
        Ok(backend)
    }

    fn spawn(&self, task: impl std::future::Future<Output = ()> + Send + 'static) {
        self.tasks.lock().push(tokio::spawn(task));
    }

    /// The four interfaces, all served by this object.
    pub fn backend(self: &Arc<Self>) -> Backend {
        Backend {
            store: self.clone(),
            broker: self.clone(),
            registry: self.clone(),
            lifecycle: self.clone(),
        }
    }

    /// Live nodes (lease not expired) with what they announced, for dispatchers.
    pub async fn live_nodes(&self) -> Result<Vec<NodeAnnouncement>, BackendError> {
        self.shared.check_open()?;
        registry::live_nodes(&self.shared).await
    }

    /// Test hook: stop renewing this node's lease, as if the process had crashed (its
    /// connections then vanish for the other nodes within one lease).
    #[doc(hidden)]
    pub fn stop_renewing_for_test(&self) {
        self.shared.renewing_stopped.store(true, Ordering::SeqCst);
    }

    /// Test hook: run one age-trimming pass now instead of waiting for the minute tick.
    #[doc(hidden)]
    pub async fn trim_by_age_for_test(&self) -> Result<(), BackendError> {
        self.shared.check_open()?;
        retention::pass(&self.shared).await
    }
}

/// The Redis Cluster hash slot of `key` (CRC16 of its hash tag, modulo 16384), as the cluster
/// computes it: tests use it to pick ids in a chosen slot.
pub fn key_slot(key: &str) -> u16 {
    batch::slot(key.as_bytes())
}

/// Current time in milliseconds since the Unix epoch (0 if the clock is before 1970).
pub(crate) fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}
