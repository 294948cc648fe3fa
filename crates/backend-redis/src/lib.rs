//! Switchboard's cluster backend on Redis: any number of nodes share one Redis server.
//!
//! - **Messages** ([`broker`]): one Lua script per append checks the idempotency key, assigns the
//!   next seq, adds the message to the conversation's stream (trimmed to the history limit) and
//!   publishes it on the conversation's channel, atomically; publication order is seq order.
//!   History and positions are read from the stream, whose entry ids are `<seq>-1`.
//! - **Bus** ([`pubsub`]): a node subscribes to a conversation's channel only while it has an
//!   interested connection. One task owns the pub/sub connection; when it drops, the task
//!   reconnects, subscribes again and fills the gap from the streams, so nothing is lost.
//! - **Store** ([`store`]): users, auth sessions, rooms and members in hashes and sorted sets.
//! - **Registry** ([`registry`]): live connections and room subscribers, tied to a per-node lease
//!   renewed every `lease / 3`; when a node dies its entries stop counting at once and are
//!   swept by the other nodes.
//! - **Retention** ([`retention`]): count limits are applied by the append itself; age limits by
//!   a task that trims old entries every minute.
//!
//! Key names are listed in the [`keys`] module. Everything of one conversation shares one hash
//! tag, so the message path carries over to Redis Cluster; the few places that touch several
//! slots at once say so.

mod accounts;
mod batch;
mod broker;
mod conn;
mod error;
mod keys;
mod pubsub;
mod pubsub_cluster;
mod recovery;
mod registry;
mod replicated;
mod retention;
mod scripts;
mod store;
mod users;

use async_trait::async_trait;
use conn::Redis;
use keys::Keys;
use parking_lot::Mutex;
use scripts::Scripts;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;
use switchboard_core::backend::{
    AppendRequest, Appended, AuthSession, Backend, BackendError, Broker, BusSink, ConnEntry,
    ControlEvent, HistoryQuery, Lifecycle, NodeAnnouncement, Position, RecoveryGuard,
    RecoveryRecord, Registry, Room, Store, TokenHash, User, UserCredentials, Visibility,
};
use switchboard_proto::frame::PresenceEntry;
use switchboard_proto::{Conv, Message};
use tokio::sync::{mpsc, oneshot};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

/// Settings of the Redis backend.
#[derive(Debug, Clone)]
pub struct RedisConfig {
    /// `redis://[user:password@]host:port[/db]`.
    pub url: String,
    /// This node's id: names its lease and its registry entries. Unique per running process.
    pub node_id: String,
    /// Prefix of every key and channel (default `sb:`), so that several deployments or test
    /// runs can share one Redis.
    pub key_prefix: String,
    /// Messages kept per conversation; older ones are trimmed as new ones arrive. 0 = unlimited.
    pub history_max_messages: u64,
    /// Messages older than this (ms) are trimmed by a background pass every minute. 0 = forever.
    pub history_max_age_ms: u64,
    /// How long this node's registry entries outlive it if it stops renewing (default 10 s);
    /// renewed every `lease / 3`.
    pub lease: Duration,
    /// The longest any Redis command may take, including waiting for a reconnect (default 2 s);
    /// a slower one fails with [`BackendError::Unavailable`].
    pub response_timeout: Duration,
    /// Stored with this node's lease (its URL, endpoints, weight...), for dispatchers: see
    /// [`RedisBackend::live_nodes`].
    pub announce: NodeAnnouncement,
    /// Seed nodes of a Redis Cluster (`redis://host:port`, any of its nodes). When not empty the
    /// backend runs on that cluster, with the cluster key layout and sharded pub/sub, and `url`
    /// is unused.
    pub cluster: Vec<String>,
    /// Replicas that must hold a message before `append` answers and it is published (`WAIT`).
    /// 0 = do not wait (publish from the append script itself).
    pub wait_replicas: u32,
    /// How long `append` waits for those replicas before answering `Unavailable`.
    pub wait_timeout: Duration,
    /// On a cluster, called with the shard master's address (`host:port`) for every
    /// conversation message this node receives (per-shard metrics).
    pub on_shard_message: Option<ShardHook>,
}

/// A callback for each message received from a shard (see [`RedisConfig::on_shard_message`]).
#[derive(Clone)]
pub struct ShardHook(pub Arc<dyn Fn(&str) + Send + Sync>);

impl std::fmt::Debug for ShardHook {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("ShardHook")
    }
}

impl RedisConfig {
    /// Defaults for `url` and `node_id`: prefix `sb:`, unlimited history, 10 s lease, 2 s
    /// response timeout, an announcement naming the node only.
    pub fn new(url: impl Into<String>, node_id: impl Into<String>) -> RedisConfig {
        let node_id = node_id.into();
        RedisConfig {
            url: url.into(),
            announce: NodeAnnouncement::new(node_id.clone()),
            node_id,
            key_prefix: "sb:".into(),
            history_max_messages: 0,
            history_max_age_ms: 0,
            lease: Duration::from_secs(10),
            response_timeout: Duration::from_secs(2),
            cluster: Vec::new(),
            wait_replicas: 0,
            wait_timeout: Duration::from_millis(500),
            on_shard_message: None,
        }
    }
}

/// Health flags read by [`Lifecycle::ready`] without a round trip.
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
    /// Appends wait for replicas and publish afterwards (see [`replicated`]).
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

/// The Redis backend: implements [`Store`], [`Broker`], [`Registry`] and [`Lifecycle`].
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

impl Drop for RedisBackend {
    fn drop(&mut self) {
        // Dropped without `close`: stop the tasks; the lease expires on its own.
        self.shared.cancel.cancel();
    }
}

#[async_trait]
impl Store for RedisBackend {
    async fn create_user(&self, username: &str, password_hash: &str) -> Result<User, BackendError> {
        self.shared.check_open()?;
        store::create_user(&self.shared, username, password_hash).await
    }

    async fn user_by_username(
        &self,
        username: &str,
    ) -> Result<Option<UserCredentials>, BackendError> {
        self.shared.check_open()?;
        store::user_by_username(&self.shared, username).await
    }

    async fn user(&self, user_id: &str) -> Result<Option<User>, BackendError> {
        self.shared.check_open()?;
        store::user(&self.shared, user_id).await
    }

    async fn ensure_user(&self, user_id: &str) -> Result<User, BackendError> {
        self.shared.check_open()?;
        store::ensure_user(&self.shared, user_id).await
    }

    async fn create_session(
        &self,
        token_hash: TokenHash,
        session: &AuthSession,
    ) -> Result<(), BackendError> {
        self.shared.check_open()?;
        store::create_session(&self.shared, &token_hash, session).await
    }

    async fn session(&self, token_hash: TokenHash) -> Result<Option<AuthSession>, BackendError> {
        self.shared.check_open()?;
        store::session(&self.shared, &token_hash).await
    }

    async fn delete_session(
        &self,
        token_hash: TokenHash,
    ) -> Result<Option<AuthSession>, BackendError> {
        self.shared.check_open()?;
        store::delete_session(&self.shared, &token_hash).await
    }

    async fn delete_user_sessions(
        &self,
        user_id: &str,
        except: Option<&str>,
    ) -> Result<Vec<String>, BackendError> {
        self.shared.check_open()?;
        accounts::delete_user_sessions(&self.shared, user_id, except).await
    }

    async fn set_password(&self, user_id: &str, password_hash: &str) -> Result<(), BackendError> {
        self.shared.check_open()?;
        accounts::set_password(&self.shared, user_id, password_hash).await
    }

    async fn create_room(
        &self,
        name: &str,
        visibility: Visibility,
        owner: &str,
    ) -> Result<Room, BackendError> {
        self.shared.check_open()?;
        store::create_room(&self.shared, name, visibility, owner).await
    }

    async fn room(&self, room_id: &str) -> Result<Option<Room>, BackendError> {
        self.shared.check_open()?;
        store::room(&self.shared, room_id).await
    }

    async fn rooms_visible_to(&self, user_id: &str) -> Result<Vec<Room>, BackendError> {
        self.shared.check_open()?;
        store::rooms_visible_to(&self.shared, user_id).await
    }

    async fn add_member(&self, room_id: &str, user_id: &str) -> Result<(), BackendError> {
        self.shared.check_open()?;
        store::add_member(&self.shared, room_id, user_id).await
    }

    async fn remove_member(&self, room_id: &str, user_id: &str) -> Result<(), BackendError> {
        self.shared.check_open()?;
        store::remove_member(&self.shared, room_id, user_id).await
    }

    async fn is_member(&self, room_id: &str, user_id: &str) -> Result<bool, BackendError> {
        self.shared.check_open()?;
        store::is_member(&self.shared, room_id, user_id).await
    }

    async fn members(&self, room_id: &str) -> Result<Vec<String>, BackendError> {
        self.shared.check_open()?;
        store::members(&self.shared, room_id).await
    }
}

#[async_trait]
impl Broker for RedisBackend {
    async fn append(&self, request: AppendRequest) -> Result<Appended, BackendError> {
        self.shared.check_open()?;
        broker::append(&self.shared, request).await
    }

    async fn append_many(
        &self,
        requests: Vec<AppendRequest>,
    ) -> Vec<Result<Appended, BackendError>> {
        if let Err(e) = self.shared.check_open() {
            return requests.iter().map(|_| Err(e.clone())).collect();
        }
        broker::append_many(&self.shared, requests).await
    }

    async fn history(
        &self,
        conv: &Conv,
        query: HistoryQuery,
    ) -> Result<Vec<Arc<Message>>, BackendError> {
        self.shared.check_open()?;
        broker::history(&self.shared, conv, query).await
    }

    async fn position(&self, conv: &Conv) -> Result<Position, BackendError> {
        self.shared.check_open()?;
        broker::position(&self.shared, conv).await
    }

    async fn subscribe(&self, conv: &Conv) -> Result<(), BackendError> {
        self.shared.check_open()?;
        pubsub::request(&self.shared, conv, true).await
    }

    async fn unsubscribe(&self, conv: &Conv) -> Result<(), BackendError> {
        self.shared.check_open()?;
        pubsub::request(&self.shared, conv, false).await
    }

    async fn broadcast(&self, event: ControlEvent) -> Result<(), BackendError> {
        self.shared.check_open()?;
        broker::broadcast(&self.shared, &event).await
    }
}

#[async_trait]
impl Registry for RedisBackend {
    async fn add_connection(&self, conn: &ConnEntry) -> Result<(), BackendError> {
        self.shared.check_open()?;
        registry::add_connection(&self.shared, conn).await
    }

    async fn remove_connection(&self, conn: &ConnEntry) -> Result<(), BackendError> {
        self.shared.check_open()?;
        registry::remove_connection(&self.shared, conn).await
    }

    async fn add_room_subscriber(
        &self,
        room_id: &str,
        conn: &ConnEntry,
    ) -> Result<(), BackendError> {
        self.shared.check_open()?;
        registry::add_room_subscriber(&self.shared, room_id, conn).await
    }

    async fn remove_room_subscriber(
        &self,
        room_id: &str,
        conn: &ConnEntry,
    ) -> Result<(), BackendError> {
        self.shared.check_open()?;
        registry::remove_room_subscriber(&self.shared, room_id, conn).await
    }

    async fn user_connections(&self, user_ids: &[String]) -> Result<Vec<u32>, BackendError> {
        self.shared.check_open()?;
        registry::user_connections(&self.shared, user_ids).await
    }

    async fn room_presence(&self, room_id: &str) -> Result<Vec<PresenceEntry>, BackendError> {
        self.shared.check_open()?;
        registry::room_presence(&self.shared, room_id).await
    }

    async fn live_nodes(&self) -> Result<Vec<NodeAnnouncement>, BackendError> {
        RedisBackend::live_nodes(self).await
    }

    async fn put_recovery(
        &self,
        key: &str,
        owner: &str,
        value: &str,
        ttl: Duration,
        guard: RecoveryGuard<'_>,
    ) -> Result<bool, BackendError> {
        self.shared.check_open()?;
        recovery::put(&self.shared, key, owner, value, ttl, guard).await
    }

    async fn recovery(&self, key: &str) -> Result<Option<RecoveryRecord>, BackendError> {
        self.shared.check_open()?;
        recovery::get(&self.shared, key).await
    }

    async fn touch_recoveries(&self, keys: &[String], ttl: Duration) -> Result<(), BackendError> {
        self.shared.check_open()?;
        recovery::touch(&self.shared, keys, ttl).await
    }

    async fn delete_recovery(&self, key: &str, owner: &str) -> Result<bool, BackendError> {
        self.shared.check_open()?;
        recovery::delete(&self.shared, key, owner).await
    }
}

#[async_trait]
impl Lifecycle for RedisBackend {
    async fn ready(&self) -> bool {
        let s = &self.shared;
        !s.closed.load(Ordering::SeqCst)
            && s.health.lease_ok.load(Ordering::SeqCst)
            && s.health.pubsub_up.load(Ordering::SeqCst)
    }

    async fn close(&self) {
        let s = &self.shared;
        if s.closed.swap(true, Ordering::SeqCst) {
            return;
        }
        s.cancel.cancel();
        let tasks: Vec<JoinHandle<()>> = std::mem::take(&mut *self.tasks.lock());
        for t in tasks {
            // The tasks stop at their next await; a stuck one is not worth waiting for.
            if tokio::time::timeout(Duration::from_secs(2), t)
                .await
                .is_err()
            {
                tracing::warn!("a Redis backend task did not stop within 2 s");
            }
        }
        s.health.pubsub_up.store(false, Ordering::SeqCst);
        s.health.lease_ok.store(false, Ordering::SeqCst);
        registry::release_lease(s).await;
        s.redis.close();
    }
}
