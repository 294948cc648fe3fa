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
//!   next commit; control events take the same queue. A commit of a few messages that finds the
//!   bus idle is delivered by the writer itself (no thread wake-up). The hub filters by
//!   subscription, so `subscribe` and `unsubscribe` have nothing to do.
//! - **Registry**: in memory; a crash forgets it together with the connections it describes.

mod append;
mod cache;
mod checkpointer;
mod config;
mod durability;
mod error;
mod files;
mod index;
mod messages;
mod migrate;
mod reads;
mod recovery;
mod registry;
mod relay;
mod schema;
mod tail;
#[cfg(test)]
mod tests;
#[cfg(test)]
mod tests_durability;
#[cfg(test)]
mod tests_v4;
mod trait_impls;
mod trimming;
mod writer;
mod writes;

use cache::{RecordCache, SessionCache, StoredConvs};
pub use config::{DEFAULT_INDEX_CYCLE, EmbeddedConfig};
pub use durability::Durability;
use error::closed;
use parking_lot::Mutex;
use reads::ReadPool;
use rusqlite::Connection;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, mpsc};
use std::thread::JoinHandle;
use switchboard_core::backend::{
    AppendRequest, Appended, Backend, BackendError, BusSink, Room, User,
};
use tokio::sync::oneshot;
use writer::{Job, TypedJob, Writer, WriterLimits};

/// The embedded backend: implements [`Store`], [`Broker`], [`Registry`] and [`Lifecycle`]
/// (the `trait_impls` module).
///
/// [`Store`]: switchboard_core::backend::Store
/// [`Broker`]: switchboard_core::backend::Broker
/// [`Registry`]: switchboard_core::backend::Registry
/// [`Lifecycle`]: switchboard_core::backend::Lifecycle
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
    /// Stream entries of committed messages not yet in `entries`: history reads look here too.
    tail: Arc<tail::Tail>,
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
        let retention = index::Retention {
            max_messages: config.history_max_messages,
            key_retention_ms: writer::IDEMPOTENCY_MIN_RETENTION_MS.max(config.history_max_age_ms),
        };
        let (mut conn, epoch) = schema::open_writer_retaining(&config.data_dir, Some(retention))?;
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
            index_cycle: config.index_cycle,
        };
        let bus = relay::Relay::start(sink);
        let stored = Arc::new(StoredConvs::load(&conn)?);
        let tail = Arc::new(tail::Tail::new(config.history_max_messages));
        let writer = Writer::new(conn, rx, bus.clone(), limits)?
            .with_tail(tail.clone())
            .with_stored(stored.clone())
            .with_checkpointer(checkpointer)
            .with_commit_metrics(config.commit_metrics.clone());
        let writer_alive = Arc::new(AtomicBool::new(true));
        let alive = writer_alive.clone();
        // The writer delivers small commits itself and hands the others to the bus thread (relay
        // module), or delivers them all if that thread could not start, so give it the caller's
        // runtime context for a sink that uses tokio.
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
            tail,
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
        self.send(Job::Append {
            request,
            reply: reply.into(),
        })?;
        Ok(rx)
    }
}
