//! Connection-state recovery records: what a Socket.IO `pid` stands for, kept in the backend
//! (`Registry::put_recovery`) so that any node of the cluster can restore the session.
//!
//! A record holds the user and the socket's slots (see [`super::offset`]): each conversation
//! with the seq it started after and its epoch. The offset a client sends back says how far it
//! got in each, so the record changes only when the socket subscribes or unsubscribes, never
//! per message.
//!
//! Lifetime where records outlive the node's process (a cluster registry: another node must
//! recover the clients of a node that was SIGKILLed): while its session runs, a record lives
//! `window + lease` and this node renews all its live records together every `lease / 2` (one
//! backend round trip); when the session ends it lives `window` more. So the window counts from
//! the end of the session, and for a node that crashed, from at most one lease after its last
//! renewal.
//!
//! Where they do not (the embedded backend keeps them in the process's memory,
//! `Registry::recoveries_outlive_process`), a running session's record would serve nobody: only
//! this process could read it, and it still has the session. So nothing is stored while a
//! session runs (no record, no renewal, no entry in the live set); a session that ends
//! recoverable stores its latest record for `window`, as Socket.IO's own in-memory recovery
//! does. A client that presents the `pid` of a session still running here (it reconnected before
//! its old connection was noticed gone) is therefore not recovered.
//!
//! Every record has an owner, the session that wrote it (a random token per session), and every
//! write or delete names the owner it may replace (`Registry::put_recovery`'s guard): a session
//! that ends late (its node noticed its client gone only after the client had recovered the
//! `pid` on another node) cannot overwrite or delete the newer session's record, and of two
//! CONNECTs presenting one `pid` at once only one takes the record over ([`Records::begin`]);
//! the other gets a new `pid`. A node also knows which of its sessions under one `pid` took the
//! record over last: only that one's changes and end are written (the others' would be refused,
//! and would replace its change waiting to be written), whichever ends first.
//!
//! Writes after the first (every write, in the second case) go through one task per node that
//! keeps only the latest change of each `pid` (a socket that subscribes ten times in a burst
//! costs at most a few writes), so they cost the socket nothing and cannot pile up.
//! [`Records::load`] looks at those pending writes first, so a client reconnecting right after
//! its session ended finds the record before the task wrote it.

use super::offset::Slot;
use parking_lot::Mutex;
use serde::{Deserialize, Serialize};
use std::collections::HashMap;
use std::sync::{Arc, Weak};
use std::time::Duration;
use switchboard_core::backend::{BackendError, RecoveryGuard, Registry};
use tokio::sync::Notify;

/// What a `pid` stands for.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct Record {
    /// The user the session belonged to (a recovery must authenticate as the same user).
    pub user_id: String,
    /// The socket's slots, in order.
    pub slots: Vec<Slot>,
    /// The socket outgrew its slots: not recoverable.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub full: bool,
}

/// A record as [`Records::load`] found it: what it holds and the session that wrote it (the
/// owner a recovery takes it over from).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Loaded {
    /// The record.
    pub record: Record,
    /// Its owner.
    pub owner: String,
}

/// A session's owner token as records carry it.
pub fn owner_token(owner: u64) -> String {
    format!("{owner:016x}")
}

/// A pending change of one `pid`'s record.
#[derive(Clone, PartialEq)]
enum Pending {
    /// Store `text`, held by `owner`, over a record `owner` holds (or none, unless `strict`):
    /// with the long time to live while the session runs (`live`), else for the window.
    Store {
        owner: String,
        text: String,
        live: bool,
        strict: bool,
    },
    /// Delete the record if `owner` holds it (recovery is not wanted, or it was recovered).
    Delete { owner: String },
}

/// The sessions running on this node under one `pid`.
#[derive(Default)]
struct Live {
    /// How many.
    sessions: u32,
    /// The one that took the record over last here, while it runs: only its changes and its
    /// end are written, and the record is renewed only while it runs. The others were taken
    /// over (their writes would be refused, and a write of theirs waiting in `pending` would
    /// replace the current session's); they only count down.
    current: Option<u64>,
}

/// The node's recovery records: writes, renewals, reads.
pub struct Records {
    registry: Arc<dyn Registry>,
    window: Duration,
    lease: Duration,
    /// Whether the registry's records outlive this process
    /// (`Registry::recoveries_outlive_process`): if not, running sessions keep no record.
    outlive: bool,
    /// `pid`s of the sessions running on this node (a client can recover a `pid` whose old
    /// session is not yet noticed gone, so several may run under one). Empty when records do
    /// not outlive the process.
    live: Mutex<HashMap<String, Live>>,
    /// Latest unwritten change per `pid`.
    pending: Mutex<HashMap<String, Pending>>,
    /// Held by the writer while it writes a change and forgets it, and by a recovery taking a
    /// record over where records die with the process: the recovery then finds the ended
    /// session's record either still pending (and drops it) or written (and deletes it).
    writing: tokio::sync::Mutex<()>,
    wake: Arc<Notify>,
}

impl Records {
    /// Starts the node's records, and the task that writes and renews them (it ends with the
    /// returned value). `window` zero turns recovery off.
    pub fn start(registry: Arc<dyn Registry>, window: Duration, lease: Duration) -> Arc<Records> {
        let records = Arc::new(Records {
            outlive: registry.recoveries_outlive_process(),
            registry,
            window,
            lease,
            live: Mutex::new(HashMap::new()),
            pending: Mutex::new(HashMap::new()),
            writing: tokio::sync::Mutex::new(()),
            wake: Arc::new(Notify::new()),
        });
        if records.enabled() {
            tokio::spawn(run(Arc::downgrade(&records), records.wake.clone()));
        }
        records
    }

    /// Whether recovery is on.
    pub fn enabled(&self) -> bool {
        !self.window.is_zero()
    }

    fn live_ttl(&self) -> Duration {
        self.window + self.lease
    }

    /// The record of `pid`, if it is still within its window: the latest one not written yet
    /// (a session that just ended), else the stored one.
    pub async fn load(&self, pid: &str) -> Result<Option<Loaded>, BackendError> {
        if !self.enabled() || pid.is_empty() || pid.len() > 64 {
            return Ok(None);
        }
        let pending = match self.pending.lock().get(pid) {
            Some(Pending::Store { owner, text, .. }) => Some((owner.clone(), text.clone())),
            Some(Pending::Delete { .. }) => return Ok(None),
            None => None,
        };
        let (owner, text) = match pending {
            Some(found) => found,
            None => match self.registry.recovery(pid).await? {
                Some(r) => (r.owner, r.value),
                None => return Ok(None),
            },
        };
        Ok(serde_json::from_str(&text)
            .ok()
            .map(|record| Loaded { record, owner }))
    }

    /// A session held by `owner` starts with `record` (stored before the CONNECT is answered,
    /// where records outlive the process). `recovers` is the owner of the record it recovers
    /// (as [`load`](Self::load) found it): the session takes that record over, unless another
    /// session took it first (or it changed meanwhile), and then it answers `false` and the
    /// caller starts a session of its own instead.
    pub async fn begin(
        &self,
        pid: &str,
        owner: u64,
        record: &Record,
        recovers: Option<&str>,
    ) -> Result<bool, BackendError> {
        if !self.enabled() {
            return Ok(true);
        }
        if !self.outlive {
            // Nothing is stored while a session runs; a recovered record is deleted, so that no
            // second client recovers the same `pid` while this session runs and the record does
            // not outlive a later end that is not recoverable.
            let Some(from) = recovers else {
                return Ok(true);
            };
            let _writing = self.writing.lock().await;
            let decided = {
                let mut pending = self.pending.lock();
                match pending.get(pid) {
                    // The ended session's record, not written yet: it never will be.
                    Some(Pending::Store { owner, .. }) if owner == from => {
                        pending.remove(pid);
                        Some(true)
                    }
                    // Not the record this recovery found: the client recovers nothing.
                    Some(_) => Some(false),
                    None => None,
                }
            };
            return match decided {
                Some(taken) => Ok(taken),
                // Written: take it from the registry (one of two concurrent recoveries can).
                None => self.registry.delete_recovery(pid, from).await,
            };
        }
        let token = owner_token(owner);
        let text = serde_json::to_string(record).unwrap_or_default();
        let guard = match recovers {
            Some(from) => RecoveryGuard::OwnedBy(from),
            None => RecoveryGuard::Always,
        };
        let taken = self
            .registry
            .put_recovery(pid, &token, &text, self.live_ttl(), guard)
            .await?;
        if !taken {
            return Ok(false);
        }
        {
            // An unwritten change of the session this one recovered is moot now (its write would
            // be refused anyway: the record is no longer its own).
            let mut pending = self.pending.lock();
            if let Some(Pending::Store { owner, .. } | Pending::Delete { owner }) = pending.get(pid)
                && Some(owner.as_str()) == recovers
            {
                pending.remove(pid);
            }
        }
        let mut live = self.live.lock();
        let entry = live.entry(pid.to_owned()).or_default();
        entry.sessions += 1;
        entry.current = Some(owner);
        Ok(true)
    }

    /// The slots of `owner`'s session changed (nothing to do where records do not outlive the
    /// process: the record is written when the session ends, nor for a session whose record
    /// another one here took over).
    pub fn update(&self, pid: &str, owner: u64, record: &Record) {
        if !self.enabled() || !self.outlive {
            return;
        }
        if self
            .live
            .lock()
            .get(pid)
            .is_some_and(|l| l.current != Some(owner))
        {
            return;
        }
        let owner = owner_token(owner);
        let change = Pending::Store {
            owner,
            text: serde_json::to_string(record).unwrap_or_default(),
            live: true,
            // A running session's record exists (stored before its CONNECT was answered) unless
            // another session took it over, and maybe ended and deleted it since: not brought
            // back. (A record that expired because renewals failed for a whole window stays
            // gone too, as at the end.)
            strict: true,
        };
        self.pending.lock().insert(pid.to_owned(), change);
        self.wake.notify_one();
    }

    /// `owner`'s session ended: `recoverable` is its latest record when it may be recovered,
    /// `None` when it may not (its record is deleted). Where records do not outlive the process,
    /// the record is stored only now (and a session that may not be recovered has none to
    /// delete).
    pub fn end(&self, pid: &str, owner: u64, recoverable: Option<&Record>) {
        if !self.enabled() {
            return;
        }
        if !self.outlive {
            if let Some(record) = recoverable {
                let text = serde_json::to_string(record).unwrap_or_default();
                let change = Pending::Store {
                    owner: owner_token(owner),
                    text,
                    live: false,
                    strict: false,
                };
                let mut pending = self.pending.lock();
                pending.insert(pid.to_owned(), change);
                drop(pending);
                self.wake.notify_one();
            }
            return;
        }
        {
            let mut live = self.live.lock();
            if let Some(l) = live.get_mut(pid) {
                l.sessions = l.sessions.saturating_sub(1);
                let current = l.current == Some(owner);
                if current {
                    l.current = None;
                }
                if l.sessions == 0 {
                    live.remove(pid);
                }
                if !current {
                    // A newer session recovered this pid here (it may still run, or have ended
                    // and written its own end): the record is its own; this end leaves it be.
                    return;
                }
            }
        }
        let owner = owner_token(owner);
        let change = match recoverable {
            Some(record) => Pending::Store {
                owner,
                text: serde_json::to_string(record).unwrap_or_default(),
                live: false,
                // A record that is gone was deleted or taken over and deleted since: an ended
                // session does not bring it back.
                strict: true,
            },
            None => Pending::Delete { owner },
        };
        self.pending.lock().insert(pid.to_owned(), change);
        self.wake.notify_one();
    }

    /// Writes what is pending (also at the end of a drain, before the backend closes; where
    /// records do not outlive the process, that stores the drained sessions' records in a
    /// process about to end, which is harmless).
    pub async fn flush(&self) {
        // Each change stays in `pending` until it is written, so `load` finds a record the
        // writer is storing right now; it is then forgotten unless a newer change replaced it
        // meanwhile (that one is written next, after this one: one writer keeps them in order).
        // Each is read again under `writing`: a recovery may have dropped it meanwhile.
        let pids: Vec<String> = self.pending.lock().keys().cloned().collect();
        for pid in pids {
            let _writing = self.writing.lock().await;
            let Some(p) = self.pending.lock().get(&pid).cloned() else {
                continue;
            };
            let r = match &p {
                Pending::Store {
                    owner,
                    text,
                    live,
                    strict,
                } => {
                    let ttl = if *live { self.live_ttl() } else { self.window };
                    let guard = if *strict {
                        RecoveryGuard::OwnedBy(owner)
                    } else {
                        RecoveryGuard::OwnedByOrAbsent(owner)
                    };
                    self.registry
                        .put_recovery(&pid, owner, text, ttl, guard)
                        .await
                }
                Pending::Delete { owner } => self.registry.delete_recovery(&pid, owner).await,
            };
            match r {
                Ok(true) => {}
                Ok(false) => tracing::debug!(
                    pid,
                    "a Socket.IO recovery record was taken over or deleted by a newer session; \
                     this change of the older one is dropped"
                ),
                Err(e) => {
                    tracing::debug!(error = %e, "writing a Socket.IO recovery record failed")
                }
            }
            let mut pending = self.pending.lock();
            if pending.get(&pid) == Some(&p) {
                pending.remove(&pid);
            }
        }
    }

    /// Renews the records of every session running here.
    async fn renew(&self) {
        let live: Vec<String> = self
            .live
            .lock()
            .iter()
            .filter(|(_, l)| l.current.is_some())
            .map(|(pid, _)| pid.clone())
            .collect();
        if live.is_empty() {
            return;
        }
        if let Err(e) = self.registry.touch_recoveries(&live, self.live_ttl()).await {
            tracing::debug!(error = %e, "renewing Socket.IO recovery records failed");
        }
    }
}

/// The writer: pending changes as they come, renewals every half lease.
async fn run(records: Weak<Records>, wake: Arc<Notify>) {
    let period = {
        let Some(r) = records.upgrade() else { return };
        (r.lease / 2).max(Duration::from_millis(100))
    };
    let mut tick = tokio::time::interval(period);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        let woken = wake.notified();
        tokio::pin!(woken);
        woken.as_mut().enable();
        {
            let Some(r) = records.upgrade() else { return };
            r.flush().await;
        }
        tokio::select! {
            _ = &mut woken => {}
            _ = tick.tick() => {
                let Some(r) = records.upgrade() else { return };
                r.renew().await;
            }
        }
    }
}

#[cfg(test)]
#[path = "record_tests/mod.rs"]
pub(crate) mod tests;
