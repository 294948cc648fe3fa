//! Connection-state recovery records of the one node, in memory: a session that outlives its
//! process is not recoverable on a single node anyway (its clients come back to the same,
//! restarted, node with no live state). So the registry says its records do not outlive the
//! process (`Registry::recoveries_outlive_process`), and the gateway stores a session's record
//! only once the session ended. Each record expires on its own; expired records are swept as new
//! ones come in, so the map never holds more than those of the last recovery window. Writes and
//! deletes check their guard and act under one lock, so one of two concurrent recoveries of a
//! record takes it.

use parking_lot::Mutex;
use std::collections::HashMap;
use std::time::{Duration, Instant};
use switchboard_core::backend::{RecoveryGuard, RecoveryRecord};

/// Records by key, each with its expiry.
#[derive(Default)]
pub(crate) struct Recoveries {
    state: Mutex<State>,
}

#[derive(Default)]
struct State {
    records: HashMap<String, Stored>,
    /// When to sweep expired records next.
    next_sweep: Option<Instant>,
}

/// One record and when it expires.
struct Stored {
    record: RecoveryRecord,
    until: Instant,
}

/// How often expired records are swept (at most).
const SWEEP_EVERY: Duration = Duration::from_secs(5);

impl State {
    /// The owner of the live record under `key`.
    fn owner(&self, key: &str, now: Instant) -> Option<&str> {
        self.records
            .get(key)
            .filter(|s| s.until > now)
            .map(|s| s.record.owner.as_str())
    }
}

impl Recoveries {
    /// Stores `value` held by `owner` under `key` until `ttl` from now, if `guard` allows it
    /// over what is there; answers whether it stored.
    pub(crate) fn put(
        &self,
        key: &str,
        owner: &str,
        value: &str,
        ttl: Duration,
        guard: RecoveryGuard<'_>,
    ) -> bool {
        let now = Instant::now();
        let mut s = self.state.lock();
        if s.next_sweep.is_none_or(|at| at <= now) {
            s.records.retain(|_, stored| stored.until > now);
            s.next_sweep = Some(now + SWEEP_EVERY);
        }
        if !guard.allows(s.owner(key, now)) {
            return false;
        }
        let record = RecoveryRecord {
            owner: owner.to_owned(),
            value: value.to_owned(),
        };
        s.records.insert(
            key.to_owned(),
            Stored {
                record,
                until: now + ttl,
            },
        );
        true
    }

    /// The live record under `key`.
    pub(crate) fn get(&self, key: &str) -> Option<RecoveryRecord> {
        let now = Instant::now();
        let s = self.state.lock();
        s.records
            .get(key)
            .filter(|stored| stored.until > now)
            .map(|stored| stored.record.clone())
    }

    /// Moves the expiry of the live records among `keys` to `ttl` from now.
    pub(crate) fn touch(&self, keys: &[String], ttl: Duration) {
        let now = Instant::now();
        let mut s = self.state.lock();
        for k in keys {
            if let Some(stored) = s.records.get_mut(k)
                && stored.until > now
            {
                stored.until = now + ttl;
            }
        }
    }

    /// Forgets `key` if `owner` holds it; answers whether it did.
    pub(crate) fn delete(&self, key: &str, owner: &str) -> bool {
        let now = Instant::now();
        let mut s = self.state.lock();
        if s.owner(key, now) != Some(owner) {
            return false;
        }
        s.records.remove(key);
        true
    }
}
