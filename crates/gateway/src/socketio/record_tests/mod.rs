//! [`Records`] against an in-process registry that logs every recovery call, in both modes:
//! records that die with the process (the embedded backend: stored only when a session ends)
//! and records that outlive it (Redis: stored while the session runs, renewed, kept a window
//! after it ends).

use super::*;
use async_trait::async_trait;
use switchboard_core::backend::{ConnEntry, RecoveryRecord};
use switchboard_proto::Conv;
use switchboard_proto::frame::PresenceEntry;

const WINDOW: Duration = Duration::from_secs(120);
const LEASE: Duration = Duration::from_secs(2);

/// A registry in this process: the records with their time to live, and a log of the calls.
pub(crate) struct Logged {
    outlive: bool,
    /// How long a store takes (a slow registry: the writer is mid-write for this long).
    put_takes: Mutex<Duration>,
    /// Each record's owner, text and time to live.
    records: Mutex<HashMap<String, (String, String, Duration)>>,
    calls: Mutex<Vec<String>>,
}

impl Logged {
    fn new(outlive: bool) -> Arc<Logged> {
        Arc::new(Logged {
            outlive,
            put_takes: Mutex::new(Duration::ZERO),
            records: Mutex::new(HashMap::new()),
            calls: Mutex::new(Vec::new()),
        })
    }

    /// The stored record of `pid` and its time to live.
    fn stored(&self, pid: &str) -> Option<(Record, Duration)> {
        let records = self.records.lock();
        let (_, text, ttl) = records.get(pid)?;
        Some((serde_json::from_str(text).expect("a record"), *ttl))
    }

    /// The calls so far, cleared.
    fn take_calls(&self) -> Vec<String> {
        std::mem::take(&mut *self.calls.lock())
    }

    /// The owner of the stored record of `pid`.
    fn owner(&self, pid: &str) -> Option<String> {
        self.records.lock().get(pid).map(|(o, _, _)| o.clone())
    }

    /// The calls so far that store or renew something.
    fn writes(&self) -> Vec<String> {
        let calls = self.calls.lock();
        calls
            .iter()
            .filter(|c| !c.starts_with("delete"))
            .cloned()
            .collect()
    }
}

#[async_trait]
impl Registry for Logged {
    async fn add_connection(&self, _: &ConnEntry) -> Result<(), BackendError> {
        Ok(())
    }
    async fn remove_connection(&self, _: &ConnEntry) -> Result<(), BackendError> {
        Ok(())
    }
    async fn add_room_subscriber(&self, _: &str, _: &ConnEntry) -> Result<(), BackendError> {
        Ok(())
    }
    async fn remove_room_subscriber(&self, _: &str, _: &ConnEntry) -> Result<(), BackendError> {
        Ok(())
    }
    async fn user_connections(&self, ids: &[String]) -> Result<Vec<u32>, BackendError> {
        Ok(vec![0; ids.len()])
    }
    async fn room_presence(&self, _: &str) -> Result<Vec<PresenceEntry>, BackendError> {
        Ok(Vec::new())
    }
    async fn put_recovery(
        &self,
        key: &str,
        owner: &str,
        value: &str,
        ttl: Duration,
        guard: RecoveryGuard<'_>,
    ) -> Result<bool, BackendError> {
        let takes = *self.put_takes.lock();
        if !takes.is_zero() {
            tokio::time::sleep(takes).await;
        }
        let mut records = self.records.lock();
        let allowed = guard.allows(records.get(key).map(|(o, _, _)| o.as_str()));
        let refused = if allowed { "" } else { " refused" };
        self.calls
            .lock()
            .push(format!("put {key} {}s{refused}", ttl.as_secs()));
        if allowed {
            records.insert(key.to_owned(), (owner.to_owned(), value.to_owned(), ttl));
        }
        Ok(allowed)
    }
    async fn recovery(&self, key: &str) -> Result<Option<RecoveryRecord>, BackendError> {
        Ok(self
            .records
            .lock()
            .get(key)
            .map(|(owner, value, _)| RecoveryRecord {
                owner: owner.clone(),
                value: value.clone(),
            }))
    }
    async fn touch_recoveries(&self, keys: &[String], ttl: Duration) -> Result<(), BackendError> {
        let mut records = self.records.lock();
        for key in keys {
            self.calls
                .lock()
                .push(format!("touch {key} {}s", ttl.as_secs()));
            if let Some((_, _, t)) = records.get_mut(key) {
                *t = ttl;
            }
        }
        Ok(())
    }
    async fn delete_recovery(&self, key: &str, owner: &str) -> Result<bool, BackendError> {
        let mut records = self.records.lock();
        let allowed = records.get(key).is_some_and(|(o, _, _)| o == owner);
        let refused = if allowed { "" } else { " refused" };
        self.calls.lock().push(format!("delete {key}{refused}"));
        if allowed {
            records.remove(key);
        }
        Ok(allowed)
    }
    fn recoveries_outlive_process(&self) -> bool {
        self.outlive
    }
}

/// A record of user `u1` holding its own stream and `rooms`.
fn record(rooms: &[&str]) -> Record {
    let slot = |conv: Conv| Slot {
        conv,
        start: 0,
        epoch: "e".to_owned(),
        live: true,
    };
    let mut slots = vec![slot(Conv::user("u1"))];
    for room in rooms {
        slots.push(slot(Conv::parse(&format!("room:{room}")).expect("a room")));
    }
    Record {
        user_id: "u1".to_owned(),
        slots,
        full: false,
    }
}

/// Lets the writer task run (time is paused: this advances it by `by`).
async fn wait(by: Duration) {
    tokio::time::sleep(by).await;
}

/// The records of a registry whose records outlive the process or not, once the writer task
/// ran its first round (renewals then come every half lease from now).
pub(crate) async fn start(outlive: bool) -> (Arc<Logged>, Arc<Records>) {
    let registry = Logged::new(outlive);
    let records = Records::start(registry.clone(), WINDOW, LEASE);
    wait(Duration::from_millis(1)).await;
    (registry, records)
}

/// The record `load` finds for `pid` (what a reconnecting client would recover).
async fn loaded(records: &Records, pid: &str) -> Option<Record> {
    records.load(pid).await.unwrap().map(|l| l.record)
}

/// A recovery of `pid` by a session held by `owner`, as a CONNECT does it: load, then take the
/// record over from whoever held it. `None` when there was nothing to recover or another
/// recovery took it first.
async fn recover(records: &Records, pid: &str, owner: u64) -> Option<Record> {
    let Loaded {
        record,
        owner: from,
    } = records.load(pid).await.unwrap()?;
    records
        .begin(pid, owner, &record, Some(&from))
        .await
        .unwrap()
        .then_some(record)
}

mod basics;
mod outlive;
