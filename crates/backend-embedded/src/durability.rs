//! When an append counts as stored: on disk (the default), or handed to the operating system.
//!
//! The writer answers an append after its group commit returns. What the commit waits for is
//! SQLite's `synchronous` setting on the writer's connection (the database is in WAL mode):
//! - `FULL` ([`Durability::Disk`]): the commit fsyncs the write-ahead log. An answered message
//!   survives the node process dying and the machine losing power.
//! - `NORMAL` ([`Durability::Process`]): the commit writes the log into the operating system's
//!   file cache and does not fsync it. The checkpoint thread fsyncs the log one second after a
//!   commit at the latest (every checkpoint syncs it too). An answered message survives the node
//!   process dying (a crash, SIGKILL, the OOM killer), because the kernel still holds its pages
//!   and writes them out; a crash of the machine itself (kernel panic, power loss) can lose about
//!   the last second of answered messages. The database stays consistent either way (SQLite's
//!   own guarantee for WAL with `NORMAL`).

use crate::error::DbResultExt;
use rusqlite::Connection;
use switchboard_core::backend::BackendError;

/// What a `published` answer from the embedded backend promises (`--durability`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Durability {
    /// On disk (fsync) before it is answered: survives power loss. The default.
    #[default]
    Disk,
    /// In the operating system's file cache before it is answered: survives the node process
    /// dying, not the machine. Saves the fsync of every group commit.
    Process,
}

impl Durability {
    /// The flag's spelling: `disk` or `process`.
    pub fn as_str(self) -> &'static str {
        match self {
            Durability::Disk => "disk",
            Durability::Process => "process",
        }
    }

    /// SQLite's `synchronous` level for this promise (2 = FULL, 1 = NORMAL).
    pub(crate) fn synchronous(self) -> i64 {
        match self {
            Durability::Disk => 2,
            Durability::Process => 1,
        }
    }

    /// How long after a commit the checkpoint thread fsyncs the log, when commits do not: one
    /// second for [`Durability::Process`], so a crash of the machine loses at most about the
    /// last second of answered messages; none for [`Durability::Disk`] (every commit syncs).
    pub(crate) fn log_sync_interval(self) -> Option<std::time::Duration> {
        match self {
            Durability::Disk => None,
            Durability::Process => Some(std::time::Duration::from_secs(1)),
        }
    }

    /// Sets the writer connection's `synchronous` level for this promise.
    pub(crate) fn apply(self, conn: &Connection) -> Result<(), BackendError> {
        conn.pragma_update(None, "synchronous", self.synchronous())
            .ctx("setting the durability")
    }
}

impl std::str::FromStr for Durability {
    type Err = String;

    fn from_str(s: &str) -> Result<Durability, String> {
        match s {
            "disk" => Ok(Durability::Disk),
            "process" => Ok(Durability::Process),
            other => Err(format!(
                "unknown durability {other:?} (expected disk or process)"
            )),
        }
    }
}
