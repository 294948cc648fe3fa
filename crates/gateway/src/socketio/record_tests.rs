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
struct Logged {
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
async fn start(outlive: bool) -> (Arc<Logged>, Arc<Records>) {
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

#[tokio::test(start_paused = true)]
async fn a_session_stores_nothing_while_it_runs_where_records_die_with_the_process() {
    let (registry, records) = start(false).await;
    records.begin("p1", 1, &record(&[]), None).await.unwrap();
    records.update("p1", 1, &record(&["r1"]));
    records.update("p1", 1, &record(&["r1", "r2"]));
    wait(LEASE * 5).await;
    assert_eq!(
        registry.writes(),
        Vec::<String>::new(),
        "no write, no renewal"
    );
    assert!(records.live.lock().is_empty(), "not in the live set");
    assert_eq!(loaded(&records, "p1").await, None, "nothing to recover");
}

#[tokio::test(start_paused = true)]
async fn a_recoverable_end_stores_the_latest_record_for_the_window() {
    let (registry, records) = start(false).await;
    records.begin("p1", 1, &record(&[]), None).await.unwrap();
    records.update("p1", 1, &record(&["r1"]));
    records.end("p1", 1, Some(&record(&["r1", "r2"])));
    wait(Duration::from_millis(1)).await;
    assert_eq!(registry.writes(), ["put p1 120s"]);
    assert_eq!(registry.stored("p1"), Some((record(&["r1", "r2"]), WINDOW)));
    assert_eq!(registry.owner("p1"), Some(owner_token(1)));
    assert_eq!(loaded(&records, "p1").await, Some(record(&["r1", "r2"])));
}

#[tokio::test(start_paused = true)]
async fn an_ended_record_loads_at_once_before_the_writer_stores_it() {
    for outlive in [false, true] {
        let (registry, records) = start(outlive).await;
        records.begin("p1", 1, &record(&[]), None).await.unwrap();
        records.update("p1", 1, &record(&["r1"]));
        records.end("p1", 1, Some(&record(&["r1"])));
        // The writer has not run: the registry holds no record or the one from `begin`.
        let stored = registry.stored("p1").map(|(r, _)| r);
        assert_ne!(
            stored,
            Some(record(&["r1"])),
            "outlive {outlive}: not written yet"
        );
        assert_eq!(
            records.load("p1").await.unwrap(),
            Some(Loaded {
                record: record(&["r1"]),
                owner: owner_token(1)
            }),
            "outlive {outlive}: the pending record is what a reconnecting client gets"
        );
    }
}

#[tokio::test(start_paused = true)]
async fn an_end_without_recovery_stores_nothing_where_records_die_with_the_process() {
    let (registry, records) = start(false).await;
    records
        .begin("p1", 1, &record(&["r1"]), None)
        .await
        .unwrap();
    records.end("p1", 1, None);
    assert_eq!(loaded(&records, "p1").await, None);
    wait(LEASE).await;
    assert_eq!(registry.writes(), Vec::<String>::new());
}

#[tokio::test(start_paused = true)]
async fn a_recovered_session_takes_its_record_back_where_records_die_with_the_process() {
    let (registry, records) = start(false).await;
    records.begin("p1", 1, &record(&[]), None).await.unwrap();
    records.end("p1", 1, Some(&record(&["r1"])));
    wait(Duration::from_millis(1)).await;

    // The client recovers: its new session holds the record, a second client presenting the
    // same pid while it runs gets nothing.
    assert_eq!(recover(&records, "p1", 2).await, Some(record(&["r1"])));
    assert_eq!(loaded(&records, "p1").await, None, "the session runs");
    assert_eq!(recover(&records, "p1", 3).await, None);
    wait(Duration::from_millis(1)).await;
    assert_eq!(registry.stored("p1"), None);

    // It ends on purpose: nothing to recover, ever.
    records.end("p1", 2, None);
    wait(LEASE).await;
    assert_eq!(loaded(&records, "p1").await, None);
    assert_eq!(registry.stored("p1"), None);
}

#[tokio::test(start_paused = true)]
async fn a_record_the_writer_is_storing_loads_and_a_recovery_deletes_it_after_the_store() {
    let (registry, records) = start(false).await;
    *registry.put_takes.lock() = Duration::from_millis(10);
    records.begin("p1", 1, &record(&[]), None).await.unwrap();
    records.end("p1", 1, Some(&record(&["r1"])));
    // The writer is in the middle of storing it.
    wait(Duration::from_millis(2)).await;
    assert_eq!(registry.stored("p1"), None, "not stored yet");
    assert_eq!(
        loaded(&records, "p1").await,
        Some(record(&["r1"])),
        "found while being written"
    );

    // The client recovers: it waits for the store, then takes the record from the registry.
    assert_eq!(recover(&records, "p1", 2).await, Some(record(&["r1"])));
    wait(Duration::from_millis(30)).await;
    assert_eq!(
        registry.stored("p1"),
        None,
        "a running session's pid is not recoverable"
    );
    assert_eq!(loaded(&records, "p1").await, None);
    assert!(records.pending.lock().is_empty(), "everything written");
    assert_eq!(registry.take_calls(), ["put p1 120s", "delete p1"]);
}

#[tokio::test(start_paused = true)]
async fn a_session_recovered_before_the_writer_ran_supersedes_the_pending_record() {
    for outlive in [false, true] {
        let (registry, records) = start(outlive).await;
        records.begin("p1", 1, &record(&[]), None).await.unwrap();
        records.end("p1", 1, Some(&record(&["r1"])));
        assert_eq!(recover(&records, "p1", 2).await, Some(record(&["r1"])));
        registry.take_calls();
        wait(Duration::from_millis(1)).await;
        assert_eq!(
            registry.writes(),
            Vec::<String>::new(),
            "outlive {outlive}: the ended session's record is not written over the new one"
        );
    }
}

#[tokio::test(start_paused = true)]
async fn of_two_clients_recovering_one_pid_at_once_one_gets_it() {
    for (outlive, written) in [(false, false), (false, true), (true, false), (true, true)] {
        let (registry, records) = start(outlive).await;
        records.begin("p1", 1, &record(&[]), None).await.unwrap();
        records.end("p1", 1, Some(&record(&["r1"])));
        if written {
            wait(Duration::from_millis(1)).await;
        }
        // Both CONNECTs load the record before either takes it over.
        let first = records.load("p1").await.unwrap().expect("recoverable");
        let second = records.load("p1").await.unwrap().expect("recoverable");
        let r = &first.record;
        let a = records.begin("p1", 2, r, Some(&first.owner)).await.unwrap();
        let b = records
            .begin("p1", 3, r, Some(&second.owner))
            .await
            .unwrap();
        assert_eq!(
            (a, b),
            (true, false),
            "outlive {outlive}, written {written}: the second gets a pid of its own"
        );
        if outlive {
            assert_eq!(registry.owner("p1"), Some(owner_token(2)));
        }
    }
}

#[tokio::test(start_paused = true)]
async fn records_that_outlive_the_process_are_stored_renewed_and_kept_a_window() {
    let (registry, records) = start(true).await;
    records.begin("p1", 1, &record(&[]), None).await.unwrap();
    assert_eq!(
        registry.take_calls(),
        ["put p1 122s"],
        "stored before CONNECT is answered"
    );

    records.update("p1", 1, &record(&["r1"]));
    wait(Duration::from_millis(1)).await;
    assert_eq!(registry.take_calls(), ["put p1 122s"]);
    assert_eq!(
        registry.stored("p1"),
        Some((record(&["r1"]), WINDOW + LEASE))
    );

    wait(LEASE / 2).await;
    assert_eq!(
        registry.take_calls(),
        ["touch p1 122s"],
        "renewed every half lease"
    );

    records.end("p1", 1, Some(&record(&["r1", "r2"])));
    wait(Duration::from_millis(1)).await;
    assert_eq!(
        registry.take_calls(),
        ["put p1 120s"],
        "the latest record, kept a window after the end"
    );
    assert_eq!(registry.stored("p1"), Some((record(&["r1", "r2"]), WINDOW)));
    wait(LEASE).await;
    assert_eq!(
        registry.take_calls(),
        Vec::<String>::new(),
        "no renewal once ended"
    );

    records.begin("p2", 1, &record(&[]), None).await.unwrap();
    records.end("p2", 1, None);
    wait(Duration::from_millis(1)).await;
    assert_eq!(registry.take_calls(), ["put p2 122s", "delete p2"]);
}

/// Records that outlive the process, with session 1 holding `p1` (with `rooms`) and session 2
/// having recovered it on the same node while session 1 still runs (not yet noticed gone).
async fn recovered_here(rooms: &[&str]) -> (Arc<Logged>, Arc<Records>) {
    let (registry, records) = start(true).await;
    records.begin("p1", 1, &record(rooms), None).await.unwrap();
    assert_eq!(recover(&records, "p1", 2).await, Some(record(rooms)));
    (registry, records)
}

#[tokio::test(start_paused = true)]
async fn an_old_session_ending_after_its_pid_was_recovered_here_leaves_the_new_record_live() {
    // The client came back before its old connection was noticed gone, and recovered.
    let (registry, records) = recovered_here(&[]).await;
    records.update("p1", 2, &record(&["r1"]));
    wait(Duration::from_millis(1)).await;
    registry.take_calls();

    // The old session ends now, not recoverable (its client logged out, say): the record is
    // the new session's and stays.
    records.end("p1", 1, None);
    wait(LEASE / 2 + Duration::from_millis(1)).await;
    assert_eq!(
        registry.take_calls(),
        ["touch p1 122s"],
        "not deleted, still renewed"
    );
    assert_eq!(
        registry.stored("p1"),
        Some((record(&["r1"]), WINDOW + LEASE))
    );

    // The new session's own end keeps it a window.
    records.end("p1", 2, Some(&record(&["r1"])));
    wait(Duration::from_millis(1)).await;
    assert_eq!(registry.take_calls(), ["put p1 120s"]);
    assert!(records.live.lock().is_empty());
}

/// Two nodes on one registry: the client of a session on node A recovers on node B before A
/// notices it gone; A's late end must leave B's record alone, whatever it says.
#[tokio::test(start_paused = true)]
async fn a_late_end_on_another_node_cannot_overwrite_or_delete_the_recovered_record() {
    for recoverable in [false, true] {
        let registry = Logged::new(true);
        let a = Records::start(registry.clone(), WINDOW, LEASE);
        let b = Records::start(registry.clone(), WINDOW, LEASE);
        wait(Duration::from_millis(1)).await;
        a.begin("p1", 1, &record(&[]), None).await.unwrap();
        a.update("p1", 1, &record(&["old"]));
        wait(Duration::from_millis(1)).await;

        assert_eq!(recover(&b, "p1", 2).await, Some(record(&["old"])));
        b.update("p1", 2, &record(&["new"]));
        wait(Duration::from_millis(1)).await;
        registry.take_calls();

        // A notices its client gone, late.
        a.update("p1", 1, &record(&["old", "later"]));
        a.end(
            "p1",
            1,
            recoverable.then(|| record(&["old", "later"])).as_ref(),
        );
        wait(Duration::from_millis(1)).await;
        assert_eq!(
            registry.stored("p1"),
            Some((record(&["new"]), WINDOW + LEASE)),
            "recoverable {recoverable}: B's record stands"
        );
        assert_eq!(registry.owner("p1"), Some(owner_token(2)));
        let refused = registry.take_calls();
        assert!(
            refused.iter().all(|c| c.ends_with("refused")),
            "recoverable {recoverable}: every write of A's was refused: {refused:?}"
        );

        // B goes on owning it: its own changes land, and A's node renews nothing of it.
        b.update("p1", 2, &record(&["new", "more"]));
        wait(Duration::from_millis(1)).await;
        assert_eq!(registry.take_calls(), ["put p1 122s"]);
        assert!(a.live.lock().is_empty());
    }
}

/// Two sessions under one pid on one node, the newer (which recovered it) ending first, not
/// recoverable (a kick or logout ends both, in either order): its record goes with it, and the
/// older one's end, later, cannot bring it back.
#[tokio::test(start_paused = true)]
async fn the_recovering_session_ending_first_here_deletes_its_record() {
    for old_recoverable in [false, true] {
        let (registry, records) = recovered_here(&[]).await;
        records.update("p1", 2, &record(&["r1"]));
        wait(Duration::from_millis(1)).await;
        registry.take_calls();

        records.end("p1", 2, None);
        wait(Duration::from_millis(1)).await;
        assert_eq!(
            registry.stored("p1"),
            None,
            "old recoverable {old_recoverable}: the kicked session's record is deleted"
        );
        records.end("p1", 1, old_recoverable.then(|| record(&[])).as_ref());
        wait(LEASE).await;
        assert_eq!(
            registry.stored("p1"),
            None,
            "old recoverable {old_recoverable}: the old session's end brings nothing back"
        );
        assert!(
            registry.writes().iter().all(|c| !c.starts_with("touch")),
            "old recoverable {old_recoverable}: nothing renewed once the record's session \
             ended: {:?}",
            registry.writes()
        );
        assert!(records.live.lock().is_empty());
    }
}

/// The same, ending recoverable: its latest record is kept a window, not renewed while the
/// older session lingers, and that one's end leaves it be.
#[tokio::test(start_paused = true)]
async fn the_recovering_session_ending_first_here_keeps_its_latest_record_a_window() {
    let (registry, records) = recovered_here(&[]).await;
    wait(Duration::from_millis(1)).await;
    registry.take_calls();

    records.end("p1", 2, Some(&record(&["r1", "r2"])));
    wait(Duration::from_millis(1)).await;
    assert_eq!(registry.take_calls(), ["put p1 120s"]);
    wait(LEASE).await;
    assert_eq!(registry.take_calls(), Vec::<String>::new(), "no renewal");
    records.end("p1", 1, Some(&record(&[])));
    wait(Duration::from_millis(1)).await;
    assert_eq!(registry.stored("p1"), Some((record(&["r1", "r2"]), WINDOW)));
    assert_eq!(registry.owner("p1"), Some(owner_token(2)));
}

/// A change of the superseded session (a room it was removed from, pushed by the server) comes
/// right after one of the session that recovered its pid here, before the writer ran: the
/// newer session's change must still be written.
#[tokio::test(start_paused = true)]
async fn a_superseded_session_here_does_not_replace_the_pending_change_of_the_new_one() {
    let (registry, records) = recovered_here(&["r1"]).await;
    records.update("p1", 2, &record(&["r1", "r2"]));
    records.update("p1", 1, &record(&[]));
    wait(Duration::from_millis(1)).await;
    assert_eq!(
        registry.stored("p1"),
        Some((record(&["r1", "r2"]), WINDOW + LEASE)),
        "the recovered session's change is stored"
    );
}

/// Across nodes: the session that recovered the pid on B ended not recoverable (deleted its
/// record); the old session on A, not yet noticed gone, then changes (a server-side
/// unsubscribe) and ends recoverable. Nothing may bring the record back.
#[tokio::test(start_paused = true)]
async fn a_superseded_session_elsewhere_cannot_bring_back_a_deleted_record() {
    let registry = Logged::new(true);
    let a = Records::start(registry.clone(), WINDOW, LEASE);
    let b = Records::start(registry.clone(), WINDOW, LEASE);
    wait(Duration::from_millis(1)).await;
    a.begin("p1", 1, &record(&["r1"]), None).await.unwrap();
    assert_eq!(recover(&b, "p1", 2).await, Some(record(&["r1"])));
    b.end("p1", 2, None);
    wait(Duration::from_millis(1)).await;
    assert_eq!(
        registry.stored("p1"),
        None,
        "the kicked session's record is gone"
    );

    a.update("p1", 1, &record(&[]));
    wait(Duration::from_millis(1)).await;
    a.end("p1", 1, Some(&record(&[])));
    wait(Duration::from_millis(1)).await;
    assert_eq!(registry.stored("p1"), None, "and stays gone");
}
