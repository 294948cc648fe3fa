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
//! Writes after the first (every write, in the second case) go through one task per node that
//! keeps only the latest record of each `pid` (a socket that subscribes ten times in a burst
//! costs at most a few writes), so they cost the socket nothing and cannot pile up.
//! [`Records::load`] looks at those pending writes first, so a client reconnecting right after
//! its session ended finds the record before the task wrote it.

use super::offset::Slot;
use parking_lot::Mutex;
use serde::{Deserialize, Serialize};
use std::collections::HashMap;
use std::sync::{Arc, Weak};
use std::time::Duration;
use switchboard_core::backend::{BackendError, Registry};
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

/// A pending write of one record.
#[derive(Clone, PartialEq)]
enum Pending {
    /// The session runs: store with the long time to live.
    Live(String),
    /// The session ended: store (or keep) with the window.
    Ended(Option<String>),
    /// Recovery is not wanted (the client disconnected on purpose): delete.
    Delete,
}

/// The node's recovery records: writes, renewals, reads.
pub struct Records {
    registry: Arc<dyn Registry>,
    window: Duration,
    lease: Duration,
    /// Whether the registry's records outlive this process
    /// (`Registry::recoveries_outlive_process`): if not, running sessions keep no record.
    outlive: bool,
    /// `pid`s of the sessions running on this node, each with how many run under it (a client
    /// can recover a `pid` whose old session is not yet noticed gone): the record is renewed
    /// while one runs, and ended only with the last. Empty when records do not outlive it.
    live: Mutex<HashMap<String, u32>>,
    /// Latest unwritten change per `pid`.
    pending: Mutex<HashMap<String, Pending>>,
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
    pub async fn load(&self, pid: &str) -> Result<Option<Record>, BackendError> {
        if !self.enabled() || pid.is_empty() || pid.len() > 64 {
            return Ok(None);
        }
        let pending = match self.pending.lock().get(pid) {
            Some(Pending::Live(text) | Pending::Ended(Some(text))) => Some(text.clone()),
            Some(Pending::Delete) => return Ok(None),
            Some(Pending::Ended(None)) | None => None,
        };
        let text = match pending {
            Some(text) => text,
            None => match self.registry.recovery(pid).await? {
                Some(text) => text,
                None => return Ok(None),
            },
        };
        Ok(serde_json::from_str(&text).ok())
    }

    /// A session starts with `record` (stored before the CONNECT is answered, where records
    /// outlive the process). A change still pending for `pid` is an earlier session's, the one
    /// this session recovers: the new session supersedes it.
    pub async fn begin(&self, pid: &str, record: &Record) -> Result<(), BackendError> {
        if !self.enabled() {
            return Ok(());
        }
        if !self.outlive {
            // The session now holds what the recovered record held; deleting it keeps a second
            // client from recovering the same `pid` while this session runs, and the record
            // from outliving a later end that is not recoverable. The delete goes through the
            // writer, behind (never before) a write of the ended session's record it may be
            // storing right now.
            self.pending.lock().insert(pid.to_owned(), Pending::Delete);
            self.wake.notify_one();
            return Ok(());
        }
        self.pending.lock().remove(pid);
        let text = serde_json::to_string(record).unwrap_or_default();
        self.registry
            .put_recovery(pid, &text, self.live_ttl())
            .await?;
        *self.live.lock().entry(pid.to_owned()).or_insert(0) += 1;
        Ok(())
    }

    /// The session's slots changed (nothing to do where records do not outlive the process:
    /// the record is written when the session ends).
    pub fn update(&self, pid: &str, record: &Record) {
        if !self.enabled() || !self.outlive {
            return;
        }
        let text = serde_json::to_string(record).unwrap_or_default();
        self.pending
            .lock()
            .insert(pid.to_owned(), Pending::Live(text));
        self.wake.notify_one();
    }

    /// The session ended: `recoverable` is its latest record when it may be recovered, `None`
    /// when it may not (its record is deleted). Where records do not outlive the process, the
    /// record is stored only now (and a session that may not be recovered has none to delete).
    pub fn end(&self, pid: &str, recoverable: Option<&Record>) {
        if !self.enabled() {
            return;
        }
        if !self.outlive {
            if let Some(record) = recoverable {
                let text = serde_json::to_string(record).unwrap_or_default();
                self.pending
                    .lock()
                    .insert(pid.to_owned(), Pending::Ended(Some(text)));
                self.wake.notify_one();
            }
            return;
        }
        {
            let mut live = self.live.lock();
            if let Some(n) = live.get_mut(pid) {
                *n -= 1;
                if *n > 0 {
                    // A newer session recovered this pid and still runs here: the record is
                    // its own now, kept live and renewed; the old session's end leaves it be.
                    return;
                }
                live.remove(pid);
            }
        }
        let mut pending = self.pending.lock();
        let last = match pending.remove(pid) {
            Some(Pending::Live(text)) => Some(text),
            _ => None,
        };
        let change = if recoverable.is_some() {
            Pending::Ended(last)
        } else {
            Pending::Delete
        };
        pending.insert(pid.to_owned(), change);
        drop(pending);
        self.wake.notify_one();
    }

    /// Writes what is pending (also at the end of a drain, before the backend closes; where
    /// records do not outlive the process, that stores the drained sessions' records in a
    /// process about to end, which is harmless).
    pub async fn flush(&self) {
        // Each change stays in `pending` until it is written, so `load` finds a record the
        // writer is storing right now; it is then forgotten unless a newer change replaced it
        // meanwhile (that one is written next, after this one: one writer keeps them in order).
        let pending: Vec<(String, Pending)> = self
            .pending
            .lock()
            .iter()
            .map(|(pid, p)| (pid.clone(), p.clone()))
            .collect();
        for (pid, p) in pending {
            let r = match &p {
                Pending::Live(text) => {
                    self.registry
                        .put_recovery(&pid, text, self.live_ttl())
                        .await
                }
                Pending::Ended(Some(text)) => {
                    self.registry.put_recovery(&pid, text, self.window).await
                }
                Pending::Ended(None) => {
                    self.registry
                        .touch_recoveries(std::slice::from_ref(&pid), self.window)
                        .await
                }
                Pending::Delete => self.registry.delete_recovery(&pid).await,
            };
            if let Err(e) = r {
                tracing::debug!(error = %e, "writing a Socket.IO recovery record failed");
            }
            let mut pending = self.pending.lock();
            if pending.get(&pid) == Some(&p) {
                pending.remove(&pid);
            }
        }
    }

    /// Renews the records of every session running here.
    async fn renew(&self) {
        let live: Vec<String> = self.live.lock().keys().cloned().collect();
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
#[path = "record_tests.rs"]
mod tests;
