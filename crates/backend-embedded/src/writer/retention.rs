//! Deleting what expired: history older than the age limit, idempotency keys past their
//! retention, and expired sessions, a chunk at a time.

use super::WriterState;
use crate::error::{DbResultExt, now_ms};
use crate::messages::MAINTENANCE_CHUNK;
use rusqlite::{Connection, Transaction, TransactionBehavior, params};
use std::time::{Duration, Instant};
use switchboard_core::backend::BackendError;

/// How often the writer deletes expired history, sessions and idempotency keys.
const MAINTENANCE_INTERVAL: Duration = Duration::from_secs(60);

/// Idempotency keys are kept at least this long (7 days), or as long as history when the age
/// limit is longer. A retry is answered with the original receipt within this window.
pub(crate) const IDEMPOTENCY_MIN_RETENTION_MS: u64 = 7 * 24 * 3600 * 1000;

impl WriterState {
    /// Deletes expired history, sessions and idempotency keys, a chunk at a time; returns when to
    /// run next (soon if a chunk was full).
    pub(super) fn maintenance(&mut self, conn: &Connection) -> Instant {
        let indexed = self.indexed_everywhere();
        let done = maintenance(conn, self.limits.history_max_age_ms, now_ms(), indexed);
        // The pass may have moved keys there, or expired the last of them. On an error, keep
        // looking there.
        self.seq.spilled_keys = crate::messages::has_spilled_keys(conn).unwrap_or(true);
        match done {
            Ok(true) => Instant::now() + Duration::from_millis(100),
            Ok(false) => Instant::now() + MAINTENANCE_INTERVAL,
            Err(e) => {
                tracing::warn!(error = %e, "embedded backend maintenance failed");
                Instant::now() + MAINTENANCE_INTERVAL
            }
        }
    }
}

/// One maintenance pass in its own transaction. Returns `true` if a chunk was full (more to do).
/// The age limit deletes only rows up to `indexed`, whose stream entries are all written (see
/// the writer's indexing).
pub(crate) fn maintenance(
    conn: &Connection,
    history_max_age_ms: u64,
    now: u64,
    indexed: i64,
) -> Result<bool, BackendError> {
    // Unchecked: the writer's connection is shared with the statements it holds (no other
    // transaction is open on it between batches).
    let tx = Transaction::new_unchecked(conn, TransactionBehavior::Immediate)
        .ctx("beginning maintenance")?;
    let mut more = false;
    let keys_cutoff = now.saturating_sub(IDEMPOTENCY_MIN_RETENTION_MS.max(history_max_age_ms));
    if history_max_age_ms > 0 {
        let cutoff = now.saturating_sub(history_max_age_ms);
        more |= crate::trimming::trim_age(&tx, cutoff, keys_cutoff, indexed)?;
    }
    more |= crate::trimming::expire_keys(&tx, keys_cutoff)?;
    let n = tx
        .execute(
            "DELETE FROM sessions WHERE token_hash IN
               (SELECT token_hash FROM sessions WHERE expires_at < ?1 LIMIT ?2)",
            params![now as i64, MAINTENANCE_CHUNK],
        )
        .ctx("deleting expired sessions")?;
    more |= n as i64 >= MAINTENANCE_CHUNK;
    tx.commit().ctx("committing maintenance")?;
    Ok(more)
}
