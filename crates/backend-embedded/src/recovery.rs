//! Connection-state recovery records of the one node, in memory: a session that outlives its
//! process is not recoverable on a single node anyway (its clients come back to the same,
//! restarted, node with no live state). So the registry says its records do not outlive the
//! process (`Registry::recoveries_outlive_process`), and the gateway stores a session's record
//! only once the session ended. Each record expires on its own; expired records are swept as new
//! ones come in, so the map never holds more than those of the last recovery window.

use parking_lot::Mutex;
use std::collections::HashMap;
use std::time::{Duration, Instant};

/// Records by key, each with its expiry.
#[derive(Default)]
pub(crate) struct Recoveries {
    state: Mutex<State>,
}

#[derive(Default)]
struct State {
    records: HashMap<String, (String, Instant)>,
    /// When to sweep expired records next.
    next_sweep: Option<Instant>,
}

/// How often expired records are swept (at most).
const SWEEP_EVERY: Duration = Duration::from_secs(5);

impl Recoveries {
    /// Stores `value` under `key` until `ttl` from now.
    pub(crate) fn put(&self, key: &str, value: &str, ttl: Duration) {
        let now = Instant::now();
        let mut s = self.state.lock();
        if s.next_sweep.is_none_or(|at| at <= now) {
            s.records.retain(|_, (_, until)| *until > now);
            s.next_sweep = Some(now + SWEEP_EVERY);
        }
        s.records
            .insert(key.to_owned(), (value.to_owned(), now + ttl));
    }

    /// The live record under `key`.
    pub(crate) fn get(&self, key: &str) -> Option<String> {
        let now = Instant::now();
        let s = self.state.lock();
        s.records
            .get(key)
            .filter(|(_, until)| *until > now)
            .map(|(v, _)| v.clone())
    }

    /// Moves the expiry of the live records among `keys` to `ttl` from now.
    pub(crate) fn touch(&self, keys: &[String], ttl: Duration) {
        let now = Instant::now();
        let mut s = self.state.lock();
        for k in keys {
            if let Some((_, until)) = s.records.get_mut(k)
                && *until > now
            {
                *until = now + ttl;
            }
        }
    }

    /// Forgets `key`.
    pub(crate) fn delete(&self, key: &str) {
        self.state.lock().records.remove(key);
    }
}
