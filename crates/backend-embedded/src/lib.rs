//! Switchboard's single-node default backend: needs nothing installed.
//!
//! - **Store and history**: one SQLite file, `<data_dir>/switchboard.db`, in WAL mode with
//!   `synchronous=FULL` (or `NORMAL` with `--durability process`: see [`Durability`]). Every write goes through one writer thread that commits whole batches at
//!   once (group commit: one fsync for many messages), then publishes, then answers (see
//!   the writer module). Reads run on four reader threads, each with its own read-only connection;
//!   auth sessions, users and rooms are answered from memory once known, and the position of a
//!   conversation that never had a message needs no read (the cache module).
//! - **Bus**: in-process. Every stored message goes to the one [`BusSink`], in seq order, through
//!   a bounded queue to one bus thread (the relay module), so a large fan-out does not hold up the
//!   next commit; control events take the same queue. The hub filters by subscription, so
//!   `subscribe` and `unsubscribe` have nothing to do.
//! - **Registry**: in memory; a crash forgets it together with the connections it describes.

mod append;
mod cache;
mod checkpointer;
mod durability;
mod error;
mod files;
mod messages;
mod migrate;
mod reads;
mod recovery;
mod registry;
mod relay;
mod schema;
#[cfg(test)]
mod tests;
#[cfg(test)]
mod tests_durability;
#[cfg(test)]
mod tests_v4;
mod writer;
mod writes;

use async_trait::async_trait;
use cache::{RecordCache, SessionCache, StoredConvs};
pub use durability::Durability;
use error::closed;
use parking_lot::Mutex;
use reads::ReadPool;
use rusqlite::Connection;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, mpsc};
use std::thread::JoinHandle;
use switchboard_core::backend::{
    AppendRequest, Appended, AuthSession, Backend, BackendError, Broker, BusSink, ConnEntry,
    ControlEvent, HistoryQuery, Lifecycle, Position, RecoveryGuard, RecoveryRecord, Registry, Room,
    Store, TokenHash, User, UserCredentials, Visibility,
};
use switchboard_core::metrics::CommitMetrics;
use switchboard_proto::frame::PresenceEntry;
use switchboard_proto::{Conv, Message};
use tokio::sync::oneshot;
use writer::{Job, TypedJob, Writer, WriterLimits};

/// Settings of the embedded backend.
#[derive(Debug, Clone)]
pub struct EmbeddedConfig {
    /// Directory of the database file (created if missing).
    pub data_dir: PathBuf,
    /// Messages kept per conversation; older ones are trimmed. 0 = unlimited.
    pub history_max_messages: u64,
    /// Messages older than this (ms) are deleted by a background pass every minute. 0 = unlimited.
    pub history_max_age_ms: u64,
    /// Most jobs (appends and other writes) committed in one transaction, e.g. 512.
    pub max_batch: usize,
    /// When a commit would carry two or more jobs (the writer is busy), how long it waits for
    /// more before committing (`--commit-delay-us`); zero commits at once.
    pub commit_delay: std::time::Duration,
    /// What an answered append promises: on disk (the default) or in the operating system's
    /// file cache (`--durability process`; see [`Durability`]).
    pub durability: Durability,
    /// Where the writer records each group commit's time and messages (the node's
    /// `switchboard_commit_seconds` and `switchboard_commit_messages`); `None` records nothing.
    pub commit_metrics: Option<CommitMetrics>,
}

impl EmbeddedConfig {
    /// Defaults for `data_dir`: unlimited history, batches of up to 512 jobs.
    pub fn new(data_dir: impl Into<PathBuf>) -> EmbeddedConfig {
        EmbeddedConfig {
            data_dir: data_dir.into(),
            history_max_messages: 0,
            history_max_age_ms: 0,
            max_batch: 512,
            commit_delay: std::time::Duration::ZERO,
            durability: Durability::Disk,
            commit_metrics: None,
        }
    }
}

/// The embedded backend: implements [`Store`], [`Broker`], [`Registry`] and [`Lifecycle`].
pub struct EmbeddedBackend {
    epoch: String,
    bus: Arc<relay::Relay>,
    jobs: mpsc::Sender<Job>,
    writer: Mutex<Option<JoinHandle<()>>>,
    writer_alive: Arc<AtomicBool>,
    closed: AtomicBool,
    reads: Arc<ReadPool>,
    sessions: Arc<SessionCache>,
    users: RecordCache<User>,
    rooms: RecordCache<Room>,
    stored: Arc<StoredConvs>,
    connections: registry::Connections,
    recoveries: recovery::Recoveries,
}

impl EmbeddedBackend {
    /// Opens (creating if needed) `<data_dir>/switchboard.db` and starts the writer thread.
    /// `sink` receives every published message and control event (the in-process bus).
    pub fn open(
        config: EmbeddedConfig,
        sink: Arc<dyn BusSink>,
    ) -> Result<Arc<EmbeddedBackend>, BackendError> {
        let (mut conn, epoch) = schema::open_writer(&config.data_dir)?;
        config.durability.apply(&conn)?;
        let checkpointer = checkpointer::Checkpointer::start(
            &config.data_dir,
            &mut conn,
            checkpointer::WAL_CHECKPOINT_PAGES,
            config.durability.log_sync_interval(),
            config.commit_metrics.clone(),
        )?;
        let (jobs, rx) = mpsc::channel();
        let limits = WriterLimits {
            history_max_messages: config.history_max_messages,
            history_max_age_ms: config.history_max_age_ms,
            max_batch: config.max_batch,
            commit_delay: config.commit_delay,
        };
        let bus = relay::Relay::start(sink);
        let stored = Arc::new(StoredConvs::load(&conn)?);
        let writer = Writer::new(conn, rx, bus.clone(), limits)?
            .with_stored(stored.clone())
            .with_checkpointer(checkpointer)
            .with_commit_metrics(config.commit_metrics.clone());
        let writer_alive = Arc::new(AtomicBool::new(true));
        let alive = writer_alive.clone();
        // The writer hands committed messages to the bus thread (relay module); if that thread
        // could not start it delivers them itself, so give it the caller's runtime context for
        // a sink that uses tokio.
        let runtime = tokio::runtime::Handle::try_current().ok();
        let handle = std::thread::Builder::new()
            .name("sb-sqlite-writer".into())
            .spawn(move || {
                let _context = runtime.as_ref().map(|r| r.enter());
                writer.run(alive)
            })
            .map_err(|e| BackendError::Internal(format!("starting the writer thread: {e}")))?;
        Ok(Arc::new(EmbeddedBackend {
            epoch,
            bus,
            jobs,
            writer: Mutex::new(Some(handle)),
            writer_alive,
            closed: AtomicBool::new(false),
            reads: ReadPool::new(config.data_dir)?,
            sessions: Arc::new(SessionCache::default()),
            users: RecordCache::default(),
            rooms: RecordCache::default(),
            stored,
            connections: registry::Connections::default(),
            recoveries: recovery::Recoveries::default(),
        }))
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

    /// This database's epoch: made when the file was created, the same for every conversation.
    pub fn epoch(&self) -> &str {
        &self.epoch
    }

    fn check_open(&self) -> Result<(), BackendError> {
        if self.closed.load(Ordering::SeqCst) {
            return Err(closed());
        }
        if !self.writer_alive.load(Ordering::SeqCst) {
            return Err(BackendError::Unavailable(
                "the embedded backend's writer stopped".into(),
            ));
        }
        Ok(())
    }

    /// Sends a job to the writer.
    fn send(&self, job: Job) -> Result<(), BackendError> {
        self.check_open()?;
        self.jobs.send(job).map_err(|_| closed())
    }

    /// Runs `f` on the writer thread, in the next group commit; answers after the commit.
    async fn write<T, F>(&self, f: F) -> Result<T, BackendError>
    where
        T: Send + 'static,
        F: FnOnce(&Connection) -> Result<T, BackendError> + Send + 'static,
    {
        let (tx, rx) = oneshot::channel();
        self.send(Job::Write(TypedJob::boxed(f, tx)))?;
        rx.await.map_err(|_| closed())?
    }

    /// An immutable record by id: from `cache`, else read with `query` and cached if found.
    async fn read_through<V: Clone + Send + 'static>(
        &self,
        cache: &RecordCache<V>,
        id: &str,
        query: fn(&Connection, &str) -> Result<Option<V>, BackendError>,
    ) -> Result<Option<V>, BackendError> {
        if let Some(v) = cache.get(id) {
            self.check_open()?;
            return Ok(Some(v));
        }
        let owned = id.to_owned();
        let found = self.read(move |c| query(c, &owned)).await?;
        if let Some(v) = &found {
            cache.put(id, v.clone());
        }
        Ok(found)
    }

    /// Runs `f` on a read connection.
    async fn read<T, F>(&self, f: F) -> Result<T, BackendError>
    where
        T: Send + 'static,
        F: FnOnce(&Connection) -> Result<T, BackendError> + Send + 'static,
    {
        self.check_open()?;
        self.reads.run(f).await
    }

    fn send_append(
        &self,
        request: AppendRequest,
    ) -> Result<oneshot::Receiver<Result<Appended, BackendError>>, BackendError> {
        let (reply, rx) = oneshot::channel();
        self.send(Job::Append { request, reply })?;
        Ok(rx)
    }
}

#[async_trait]
impl Store for EmbeddedBackend {
    async fn create_user(&self, username: &str, password_hash: &str) -> Result<User, BackendError> {
        let (username, hash) = (username.to_owned(), password_hash.to_owned());
        let user = self
            .write(move |c| writes::create_user(c, &username, &hash))
            .await?;
        self.users.put(&user.user_id, user.clone());
        Ok(user)
    }

    async fn user_by_username(
        &self,
        username: &str,
    ) -> Result<Option<UserCredentials>, BackendError> {
        let username = username.to_owned();
        self.read(move |c| reads::user_by_username(c, &username))
            .await
    }

    async fn user(&self, user_id: &str) -> Result<Option<User>, BackendError> {
        self.read_through(&self.users, user_id, reads::user).await
    }

    async fn ensure_user(&self, user_id: &str) -> Result<User, BackendError> {
        // Usually the user exists: answer from a read without waiting for a commit.
        if let Some(user) = self.user(user_id).await? {
            return Ok(user);
        }
        let id = user_id.to_owned();
        let user = self.write(move |c| writes::ensure_user(c, &id)).await?;
        self.users.put(user_id, user.clone());
        Ok(user)
    }

    async fn create_session(
        &self,
        token_hash: TokenHash,
        session: &AuthSession,
    ) -> Result<(), BackendError> {
        let stored = session.clone();
        self.write(move |c| writes::create_session(c, &token_hash, &stored))
            .await?;
        self.sessions.created(token_hash, session.clone());
        Ok(())
    }

    async fn session(&self, token_hash: TokenHash) -> Result<Option<AuthSession>, BackendError> {
        if let Some(s) = self.sessions.get(&token_hash) {
            self.check_open()?;
            return Ok(Some(s));
        }
        let generation = self.sessions.generation();
        let found = self.read(move |c| reads::session(c, &token_hash)).await?;
        if let Some(s) = &found {
            self.sessions.fill(token_hash, s.clone(), generation);
        }
        Ok(found)
    }

    async fn delete_session(
        &self,
        token_hash: TokenHash,
    ) -> Result<Option<AuthSession>, BackendError> {
        // The job is queued now, and the cache entry is dropped after its commit by a task of its
        // own: a caller that goes away mid-logout (a client closing its HTTP connection) must not
        // leave the token authenticating from the cache after its row is gone.
        let (tx, rx) = oneshot::channel();
        self.send(Job::Write(TypedJob::boxed(
            move |c| writes::delete_session(c, &token_hash),
            tx,
        )))?;
        let sessions = self.sessions.clone();
        let forget = tokio::spawn(async move {
            let deleted = rx.await.map_err(|_| closed());
            // Also on failure: a cached session must never outlive its row.
            sessions.deleted(&token_hash);
            deleted
        });
        forget
            .await
            .map_err(|e| BackendError::Internal(format!("logout task failed: {e}")))??
    }

    async fn delete_user_sessions(
        &self,
        user_id: &str,
        except: Option<&str>,
    ) -> Result<Vec<String>, BackendError> {
        // As for `delete_session`: the cache is cleared by a task of its own after the commit.
        let (tx, rx) = oneshot::channel();
        let (user, keep) = (user_id.to_owned(), except.map(str::to_owned));
        self.send(Job::Write(TypedJob::boxed(
            move |c| writes::delete_user_sessions(c, &user, keep.as_deref()),
            tx,
        )))?;
        let sessions = self.sessions.clone();
        let (user, keep) = (user_id.to_owned(), except.map(str::to_owned));
        let forget = tokio::spawn(async move {
            let deleted = rx.await.map_err(|_| closed());
            sessions.deleted_user(&user, keep.as_deref());
            deleted
        });
        forget
            .await
            .map_err(|e| BackendError::Internal(format!("revocation task failed: {e}")))??
    }

    async fn set_password(&self, user_id: &str, password_hash: &str) -> Result<(), BackendError> {
        let (user_id, hash) = (user_id.to_owned(), password_hash.to_owned());
        self.write(move |c| writes::set_password(c, &user_id, &hash))
            .await
    }

    async fn create_room(
        &self,
        name: &str,
        visibility: Visibility,
        owner: &str,
    ) -> Result<Room, BackendError> {
        let (name, owner) = (name.to_owned(), owner.to_owned());
        let room = self
            .write(move |c| writes::create_room(c, &name, visibility, &owner))
            .await?;
        self.rooms.put(&room.room_id, room.clone());
        Ok(room)
    }

    async fn room(&self, room_id: &str) -> Result<Option<Room>, BackendError> {
        self.read_through(&self.rooms, room_id, reads::room).await
    }

    async fn rooms_visible_to(&self, user_id: &str) -> Result<Vec<Room>, BackendError> {
        let user_id = user_id.to_owned();
        self.read(move |c| reads::rooms_visible_to(c, &user_id))
            .await
    }

    async fn add_member(&self, room_id: &str, user_id: &str) -> Result<(), BackendError> {
        let (room_id, user_id) = (room_id.to_owned(), user_id.to_owned());
        self.write(move |c| writes::add_member(c, &room_id, &user_id))
            .await
    }

    async fn remove_member(&self, room_id: &str, user_id: &str) -> Result<(), BackendError> {
        let (room_id, user_id) = (room_id.to_owned(), user_id.to_owned());
        self.write(move |c| writes::remove_member(c, &room_id, &user_id))
            .await
    }

    async fn is_member(&self, room_id: &str, user_id: &str) -> Result<bool, BackendError> {
        let (room_id, user_id) = (room_id.to_owned(), user_id.to_owned());
        self.read(move |c| reads::is_member(c, &room_id, &user_id))
            .await
    }

    async fn members(&self, room_id: &str) -> Result<Vec<String>, BackendError> {
        let room_id = room_id.to_owned();
        self.read(move |c| reads::members(c, &room_id)).await
    }
}

#[async_trait]
impl Broker for EmbeddedBackend {
    async fn append(&self, request: AppendRequest) -> Result<Appended, BackendError> {
        self.send_append(request)?.await.map_err(|_| closed())?
    }

    fn append_queued(
        self: Arc<Self>,
        request: AppendRequest,
    ) -> std::pin::Pin<Box<dyn std::future::Future<Output = Result<Appended, BackendError>> + Send>>
    {
        // The job is in the writer's queue when this returns: the writer takes jobs in order.
        let queued = self.send_append(request);
        Box::pin(async move { queued?.await.map_err(|_| closed())? })
    }

    fn queues_in_order(&self) -> bool {
        true
    }

    async fn append_many(
        &self,
        requests: Vec<AppendRequest>,
    ) -> Vec<Result<Appended, BackendError>> {
        // Queue them all before waiting, so that they share commits.
        let pending: Vec<_> = requests.into_iter().map(|r| self.send_append(r)).collect();
        let mut out = Vec::with_capacity(pending.len());
        for p in pending {
            out.push(match p {
                Ok(rx) => rx.await.unwrap_or_else(|_| Err(closed())),
                Err(e) => Err(e),
            });
        }
        out
    }

    async fn history(
        &self,
        conv: &Conv,
        query: HistoryQuery,
    ) -> Result<Vec<Arc<Message>>, BackendError> {
        let conv = conv.clone();
        self.read(move |c| reads::history(c, &conv, query)).await
    }

    async fn position(&self, conv: &Conv) -> Result<Position, BackendError> {
        let (head_seq, oldest) = if self.stored.may_have_messages(conv) {
            let conv_owned = conv.clone();
            self.read(move |c| reads::position(c, &conv_owned)).await?
        } else {
            // Never had a message (most users' own streams): nothing to read.
            self.check_open()?;
            (0, None)
        };
        Ok(Position {
            epoch: self.epoch.clone(),
            head_seq,
            oldest_seq: oldest.unwrap_or(head_seq + 1),
        })
    }

    async fn subscribe(&self, _conv: &Conv) -> Result<(), BackendError> {
        self.check_open()
    }

    async fn unsubscribe(&self, _conv: &Conv) -> Result<(), BackendError> {
        self.check_open()
    }

    /// The in-process bus hands every message to the hub, which knows its subscribers.
    fn needs_subscriptions(&self) -> bool {
        false
    }

    async fn broadcast(&self, event: ControlEvent) -> Result<(), BackendError> {
        self.check_open()?;
        self.bus.control(event).await;
        Ok(())
    }
}

#[async_trait]
impl Registry for EmbeddedBackend {
    async fn add_connection(&self, conn: &ConnEntry) -> Result<(), BackendError> {
        self.check_open()?;
        self.connections.add_connection(conn);
        Ok(())
    }

    async fn remove_connection(&self, conn: &ConnEntry) -> Result<(), BackendError> {
        self.check_open()?;
        self.connections.remove_connection(conn);
        Ok(())
    }

    async fn add_room_subscriber(
        &self,
        room_id: &str,
        conn: &ConnEntry,
    ) -> Result<(), BackendError> {
        self.check_open()?;
        self.connections.add_room_subscriber(room_id, conn);
        Ok(())
    }

    async fn remove_room_subscriber(
        &self,
        room_id: &str,
        conn: &ConnEntry,
    ) -> Result<(), BackendError> {
        self.check_open()?;
        self.connections.remove_room_subscriber(room_id, conn);
        Ok(())
    }

    async fn user_connections(&self, user_ids: &[String]) -> Result<Vec<u32>, BackendError> {
        self.check_open()?;
        Ok(self.connections.user_connections(user_ids))
    }

    async fn room_presence(&self, room_id: &str) -> Result<Vec<PresenceEntry>, BackendError> {
        self.check_open()?;
        Ok(self.connections.room_presence(room_id))
    }

    async fn put_recovery(
        &self,
        key: &str,
        owner: &str,
        value: &str,
        ttl: std::time::Duration,
        guard: RecoveryGuard<'_>,
    ) -> Result<bool, BackendError> {
        self.check_open()?;
        Ok(self.recoveries.put(key, owner, value, ttl, guard))
    }

    async fn recovery(&self, key: &str) -> Result<Option<RecoveryRecord>, BackendError> {
        self.check_open()?;
        Ok(self.recoveries.get(key))
    }

    async fn touch_recoveries(
        &self,
        keys: &[String],
        ttl: std::time::Duration,
    ) -> Result<(), BackendError> {
        self.check_open()?;
        self.recoveries.touch(keys, ttl);
        Ok(())
    }

    async fn delete_recovery(&self, key: &str, owner: &str) -> Result<bool, BackendError> {
        self.check_open()?;
        Ok(self.recoveries.delete(key, owner))
    }

    /// The records are in this process's memory (`recovery.rs`): they die with it.
    fn recoveries_outlive_process(&self) -> bool {
        false
    }
}

impl Drop for EmbeddedBackend {
    /// Lets the reader threads exit even when the backend was never closed (tests, errors at
    /// start). The writer thread ends by itself once its job channel is dropped.
    fn drop(&mut self) {
        self.reads.close();
    }
}

#[async_trait]
impl Lifecycle for EmbeddedBackend {
    async fn ready(&self) -> bool {
        self.check_open().is_ok()
    }

    async fn close(&self) {
        if self.closed.swap(true, Ordering::SeqCst) {
            return;
        }
        self.reads.close();
        let (reply, done) = oneshot::channel();
        if self.jobs.send(Job::Close { reply }).is_ok() {
            let _ = done.await;
        }
        let handle = self.writer.lock().take();
        if let Some(handle) = handle {
            // The writer has answered `Close`; joining waits for its connection to close.
            let joined = tokio::task::spawn_blocking(move || handle.join()).await;
            if !matches!(joined, Ok(Ok(()))) {
                tracing::error!("the embedded backend's writer thread panicked");
            }
        }
    }
}
