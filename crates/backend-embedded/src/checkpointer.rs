//! Checkpoints on a thread of their own, so that no commit waits for one.
//!
//! In WAL mode every commit appends pages to the log, and a checkpoint copies them back into the
//! database file and fsyncs it. SQLite's automatic checkpoint runs inside the commit that crosses
//! the threshold, so that one commit (and every publish waiting on it) also waited for the copy of
//! up to [`WAL_CHECKPOINT_PAGES`] pages and an fsync of the database file: tens of milliseconds
//! with `--durability process`, whose commits otherwise never touch the disk.
//!
//! Here the writer's connection has no automatic checkpoint. A WAL hook on it (called after each
//! commit with the log's length) wakes this thread once the log holds [`WAL_CHECKPOINT_PAGES`]
//! pages, and the thread runs a `PASSIVE` checkpoint on its own connection: it copies what no
//! reader still needs and never blocks the writer, which goes on appending meanwhile.
//!
//! SQLite starts the log over from its beginning only at a commit that finds every page of it
//! copied back, which a checkpoint running beside a busy writer never achieves: the writer has
//! always appended a little more. So the checkpoint finishes in two steps. When this thread's
//! pass is done, it asks the writer ([`Checkpointer::tend`]); between two batches the
//! writer runs one more `PASSIVE` checkpoint itself, which copies only what was committed during
//! the pass, and its next commit starts the log over. The log stays near the threshold's size
//! (unless a reader holds an old snapshot: the log cannot start over under it).
//!
//! With `--durability process` the writer's commits do not fsync the log; this thread then also
//! fsyncs it, at most [`Checkpointer::start`]'s `sync_every` after a commit, so that a crash of
//! the machine loses at most about that much of what was answered (Redis's `appendfsync
//! everysec`). Commits with nothing to sync cost no fsync.

use crate::error::DbResultExt;
use parking_lot::{Condvar, Mutex};
use rusqlite::Connection;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::thread::JoinHandle;
use std::time::Duration;
use switchboard_core::backend::BackendError;
use switchboard_core::metrics::CommitMetrics;

/// Log pages after which a checkpoint runs (SQLite's own default is 1,000). A busy node's commits
/// keep rewriting the same pages (the tail of the message table, the newest leaf of each active
/// stream), so the longer the log runs between checkpoints, the more of those rewrites one copy
/// covers. 8,192 pages keep the log under about 33 MB.
pub(crate) const WAL_CHECKPOINT_PAGES: i32 = 8192;

/// How many times the thread's pass tries its checkpoint while SQLite answers busy (every
/// [`BUSY_PAUSE`]). A `PASSIVE` checkpoint first reads the wal-index header, which each
/// commit rewrites (two copies, one after the other); a read that lands between the two finds
/// them different, and SQLite then wants the WAL write lock to read it again: the writer holds it
/// until its commit ends, so the checkpoint gives up at once with `SQLITE_BUSY` (`PRAGMA
/// wal_checkpoint` answers `1|-1|-1`), having copied nothing. The window is nanoseconds wide but
/// stays open as long as the writer is preempted inside it; a pass that gave up left the whole
/// copy and its fsync to the writer's finishing step. Another checkpoint under way (another
/// process's) answers busy the same way. After the last try the writer finishes as before.
const BUSY_TRIES: u32 = 100;
/// The wait between two of [`BUSY_TRIES`].
const BUSY_PAUSE: Duration = Duration::from_millis(2);

/// What the writer's hook and the thread share.
#[derive(Default)]
struct Shared {
    state: Mutex<State>,
    wake: Condvar,
    /// The log's fsyncs done for `sync_every` (not those of checkpoints).
    syncs: AtomicU64,
}

#[derive(Default)]
struct State {
    /// Where the checkpoint is.
    phase: Phase,
    /// The thread is to end.
    stop: bool,
    /// Commits since the log was last synced (only tracked with `sync_every`).
    dirty: bool,
}

/// The steps of one checkpoint.
#[derive(Default, Clone, Copy, PartialEq, Eq, Debug)]
enum Phase {
    /// None under way: the hook starts one when the log is long enough.
    #[default]
    Idle,
    /// The thread is to copy the log (or is copying it).
    Copying,
    /// The thread's pass is done; the writer is to finish it.
    Finishing,
}

/// The checkpoint thread; [`Checkpointer::stop`] ends it (so does dropping it).
pub(crate) struct Checkpointer {
    shared: Arc<Shared>,
    thread: Option<JoinHandle<()>>,
    /// Where each step's time goes (`switchboard_checkpoint_seconds`), if recorded.
    metrics: Option<CommitMetrics>,
}

impl Checkpointer {
    /// Opens a connection to the database in `dir`, starts the thread and installs the hook on
    /// the writer's connection `writer` (which turns SQLite's automatic checkpoint off). A
    /// checkpoint runs once the log holds `pages` pages ([`WAL_CHECKPOINT_PAGES`] but in tests).
    ///
    /// `sync_every`: the writer's commits do not sync the log (`--durability process`); the
    /// thread fsyncs it this long after the first commit since its last sync.
    pub(crate) fn start(
        dir: &Path,
        writer: &mut Connection,
        pages: i32,
        sync_every: Option<Duration>,
        metrics: Option<CommitMetrics>,
    ) -> Result<Checkpointer, BackendError> {
        let conn = crate::schema::open_checkpointer(dir)?;
        let shared = Arc::new(Shared::default());
        let hook = shared.clone();
        let track = sync_every.is_some();
        writer
            .wal_hook(Some(move |_: &mut rusqlite::hooks::Wal, in_log: i32| {
                if in_log >= pages || track {
                    let mut state = hook.state.lock();
                    let copy = in_log >= pages && state.phase == Phase::Idle;
                    if copy {
                        state.phase = Phase::Copying;
                    }
                    let first_dirty = track && !state.dirty;
                    state.dirty |= track;
                    if copy || first_dirty {
                        hook.wake.notify_one();
                    }
                }
                Ok(())
            }))
            .ctx("installing the WAL hook")?;
        let thread_shared = shared.clone();
        let thread_metrics = metrics.clone();
        let log = dir.join(format!("{}-wal", crate::schema::DB_FILE));
        let thread = std::thread::Builder::new()
            .name("sb-checkpoint".into())
            .spawn(move || {
                let syncing = sync_every.map(|every| (every, log));
                run(&conn, &thread_shared, syncing, thread_metrics.as_ref())
            })
            .map_err(|e| BackendError::Internal(format!("starting the checkpoint thread: {e}")))?;
        Ok(Checkpointer {
            shared,
            thread: Some(thread),
            metrics,
        })
    }

    /// The writer's look, after every commit and while idle: finishes the checkpoint if the
    /// thread's pass is done ([`Checkpointer::finish`]), and says whether one is still under way
    /// (the pass running): the writer then looks again soon, even with nothing to write.
    pub(crate) fn tend(&self, writer: &Connection) -> bool {
        let phase = self.shared.state.lock().phase;
        if phase == Phase::Finishing {
            self.finish(writer);
            return false;
        }
        phase != Phase::Idle
    }

    /// Whether the thread's pass is done and the writer is to finish the checkpoint.
    #[cfg(test)]
    pub(crate) fn finish_wanted(&self) -> bool {
        self.shared.state.lock().phase == Phase::Finishing
    }

    /// The writer's step: one more `PASSIVE` checkpoint on its own connection `writer`, which
    /// copies what was committed during the thread's pass (nothing else is appended meanwhile),
    /// so the next commit starts the log over. The next checkpoint may then begin.
    pub(crate) fn finish(&self, writer: &Connection) {
        if let Err(e) = timed(writer, self.metrics.as_ref(), 1) {
            tracing::warn!(error = %e, "finishing a WAL checkpoint failed");
        }
        self.shared.state.lock().phase = Phase::Idle;
    }

    /// How many times the thread has fsynced the log for `sync_every`.
    #[cfg(test)]
    pub(crate) fn log_syncs(&self) -> u64 {
        self.shared.syncs.load(Ordering::Relaxed)
    }

    /// Ends the thread, after the checkpoint it is running (if any).
    pub(crate) fn stop(&mut self) {
        self.shared.state.lock().stop = true;
        self.shared.wake.notify_one();
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

impl Drop for Checkpointer {
    fn drop(&mut self) {
        self.stop();
    }
}

/// What the thread does next.
enum Work {
    /// Copy the log back (a checkpoint pass).
    Copy,
    /// Fsync the log (`sync_every` after a commit).
    Sync,
}

/// The thread: waits for a checkpoint to be wanted, copies, hands the rest to the writer, and
/// again, until stopped; with `syncing` (how often, and the log's path), it also fsyncs the log
/// that long after a commit. Whatever becomes of its pass (an error, even a panic), the writer is
/// asked to finish: its own checkpoint then does the whole copy, as SQLite's automatic one did.
fn run(
    conn: &Connection,
    shared: &Shared,
    syncing: Option<(Duration, PathBuf)>,
    metrics: Option<&CommitMetrics>,
) {
    loop {
        let work = {
            let mut state = shared.state.lock();
            loop {
                if state.stop {
                    return;
                }
                if state.phase == Phase::Copying {
                    // The pass syncs the log first, everything committed so far with it.
                    state.dirty = false;
                    break Work::Copy;
                }
                match &syncing {
                    Some((every, _)) if state.dirty => {
                        let waited = shared.wake.wait_for(&mut state, *every);
                        if waited.timed_out() && !state.stop && state.phase != Phase::Copying {
                            state.dirty = false;
                            break Work::Sync;
                        }
                    }
                    _ => shared.wake.wait(&mut state),
                }
            }
        };
        if let (Work::Sync, Some((_, log))) = (&work, &syncing) {
            match std::fs::File::open(log).and_then(|f| f.sync_data()) {
                Ok(()) => {
                    shared.syncs.fetch_add(1, Ordering::Relaxed);
                }
                Err(e) => tracing::warn!(error = %e, "syncing the write-ahead log failed"),
            }
            continue;
        }
        let pass = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            timed(conn, metrics, BUSY_TRIES)
        }));
        match pass {
            Ok(Ok(Some(_))) => {}
            Ok(Ok(None)) => {
                tracing::debug!("the WAL checkpoint stayed busy; the writer will copy the log")
            }
            Ok(Err(e)) => tracing::warn!(error = %e, "WAL checkpoint failed"),
            Err(_) => tracing::error!("the WAL checkpoint panicked; the writer will finish it"),
        }
        shared.state.lock().phase = Phase::Finishing;
    }
}

/// [`checkpoint`], tried up to `tries` times while SQLite answers busy ([`BUSY_TRIES`]), its
/// time recorded in `metrics`. Returns what the last try returned.
fn timed(
    conn: &Connection,
    metrics: Option<&CommitMetrics>,
    tries: u32,
) -> Result<Option<(i64, i64)>, BackendError> {
    let began = std::time::Instant::now();
    let mut r = checkpoint(conn);
    for _ in 1..tries {
        if !matches!(r, Ok(None)) {
            break;
        }
        std::thread::sleep(BUSY_PAUSE);
        r = checkpoint(conn);
    }
    if let Some(m) = metrics {
        m.checkpoint_seconds.observe(began.elapsed().as_secs_f64());
    }
    r
}

/// One `PASSIVE` checkpoint: copies every log page no reader still needs, without waiting for
/// anyone. Returns (log pages, pages copied back so far), or `None` when SQLite answered busy
/// before it looked at the log, having copied nothing ([`BUSY_TRIES`] says when).
pub(crate) fn checkpoint(conn: &Connection) -> Result<Option<(i64, i64)>, BackendError> {
    conn.query_row("PRAGMA wal_checkpoint(PASSIVE)", [], |r| {
        Ok((
            r.get::<_, i64>(0)?,
            r.get::<_, i64>(1)?,
            r.get::<_, i64>(2)?,
        ))
    })
    .ctx("checkpointing")
    .map(|(busy, log, copied)| (busy == 0).then_some((log, copied)))
}
