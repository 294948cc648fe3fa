//! The reader threads: a fixed set, each with its own read-only connection (opened on its
//! first job and kept), taking reads from one queue.
//!
//! Why dedicated threads and not `spawn_blocking`: under a connection storm hundreds of token
//! lookups arrive at once; the blocking pool grew a thread per lookup, and each thread opened a
//! fresh SQLite connection (and so re-compiled its statements) because only a few idle ones were
//! kept. A handful of long-lived threads keep their connections and statement caches warm, and a
//! queue absorbs the burst.

use crate::error::closed;
use parking_lot::{Condvar, Mutex};
use rusqlite::Connection;
use std::collections::VecDeque;
use std::path::PathBuf;
use std::sync::Arc;
use switchboard_core::backend::BackendError;

/// Reader threads (and so read connections) per node.
const READERS: usize = 4;

/// One queued read: runs on a reader thread's connection (`None` when it could not be opened).
type Job = Box<dyn FnOnce(Result<&Connection, BackendError>) + Send>;

#[derive(Default)]
struct Queue {
    jobs: VecDeque<Job>,
    closed: bool,
}

/// The reader threads and their queue.
pub(crate) struct ReadPool {
    queue: Mutex<Queue>,
    ready: Condvar,
}

impl ReadPool {
    /// Starts the reader threads over the database in `dir` (which the writer has already
    /// created). Each opens its connection on its first job and keeps it.
    /// Fails if no thread could be started (reads would wait forever).
    pub(crate) fn new(dir: PathBuf) -> Result<Arc<ReadPool>, BackendError> {
        let pool = Arc::new(ReadPool {
            queue: Mutex::new(Queue::default()),
            ready: Condvar::new(),
        });
        let mut started = 0;
        for i in 0..READERS {
            let (worker, dir) = (pool.clone(), dir.clone());
            let spawned = std::thread::Builder::new()
                .name(format!("sb-sqlite-read-{i}"))
                .spawn(move || worker.serve(&dir));
            match spawned {
                Ok(_) => started += 1,
                Err(e) => tracing::error!(error = %e, "could not start a SQLite reader thread"),
            }
        }
        if started == 0 {
            pool.close();
            return Err(BackendError::Internal(
                "could not start any SQLite reader thread".into(),
            ));
        }
        Ok(pool)
    }

    /// A reader thread's loop: take a job, run it, until closed and empty.
    fn serve(&self, dir: &std::path::Path) {
        let mut conn: Option<Connection> = None;
        loop {
            let job = {
                let mut q = self.queue.lock();
                loop {
                    if let Some(job) = q.jobs.pop_front() {
                        break job;
                    }
                    if q.closed {
                        return;
                    }
                    self.ready.wait(&mut q);
                }
            };
            if conn.is_none() {
                match crate::schema::open_reader(dir) {
                    Ok(c) => conn = Some(c),
                    Err(e) => {
                        job(Err(e));
                        continue;
                    }
                }
            }
            if let Some(c) = &conn {
                // A panicking job must not take the thread with it: the pool has no spare. Its
                // caller sees the reply dropped (an error); the connection is reopened.
                let ran = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| job(Ok(c))));
                if ran.is_err() {
                    tracing::error!("a SQLite read panicked; reopening its connection");
                    conn = None;
                }
            }
        }
    }

    /// Runs `f` on a reader thread's connection.
    pub(crate) async fn run<T, F>(&self, f: F) -> Result<T, BackendError>
    where
        T: Send + 'static,
        F: FnOnce(&Connection) -> Result<T, BackendError> + Send + 'static,
    {
        let (tx, rx) = tokio::sync::oneshot::channel();
        let job: Job = Box::new(move |conn| {
            let _ = tx.send(conn.and_then(f));
        });
        {
            let mut q = self.queue.lock();
            if q.closed {
                return Err(closed());
            }
            q.jobs.push_back(job);
        }
        self.ready.notify_one();
        rx.await
            .map_err(|_| BackendError::Internal("a SQLite reader thread stopped".into()))?
    }

    /// Refuses further reads; the threads finish what is queued and exit, closing their
    /// connections.
    pub(crate) fn close(&self) {
        self.queue.lock().closed = true;
        self.ready.notify_all();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::error::DbResultExt;

    /// More panicking reads than there are threads: each fails alone, and reads go on.
    #[tokio::test]
    async fn a_panicking_read_fails_alone_and_the_pool_goes_on() {
        let dir = tempfile::tempdir().expect("temp dir");
        let _writer = crate::schema::open_writer(dir.path()).expect("database");
        let pool = ReadPool::new(dir.path().to_path_buf()).expect("reader threads");
        // Without the guard the threads die and later reads wait forever: bound every wait.
        let limit = std::time::Duration::from_secs(10);
        for _ in 0..READERS * 2 {
            let r: Result<(), BackendError> = tokio::time::timeout(
                limit,
                pool.run(|_| -> Result<(), BackendError> { panic!("a bug in a read") }),
            )
            .await
            .expect("the read was answered");
            assert!(r.is_err(), "the panicking read reports an error");
        }
        let one: i64 = tokio::time::timeout(
            limit,
            pool.run(|c| c.query_row("SELECT 1", [], |r| r.get(0)).ctx("select")),
        )
        .await
        .expect("the read was answered")
        .expect("a read after the panics");
        assert_eq!(one, 1);
        pool.close();
    }
}
