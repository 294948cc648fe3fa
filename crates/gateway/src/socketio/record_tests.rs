//! [`Records`] against an in-process registry that logs every recovery call, in both modes:
//! records that die with the process (the embedded backend: stored only when a session ends)
//! and records that outlive it (Redis: stored while the session runs, renewed, kept a window
//! after it ends).

use super::*;
use async_trait::async_trait;
use switchboard_core::backend::ConnEntry;
use switchboard_proto::Conv;
use switchboard_proto::frame::PresenceEntry;

const WINDOW: Duration = Duration::from_secs(120);
const LEASE: Duration = Duration::from_secs(2);

/// A registry in this process: the records with their time to live, and a log of the calls.
struct Logged {
    outlive: bool,
    /// How long a store takes (a slow registry: the writer is mid-write for this long).
    put_takes: Mutex<Duration>,
    records: Mutex<HashMap<String, (String, Duration)>>,
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
        let (text, ttl) = records.get(pid)?;
        Some((serde_json::from_str(text).expect("a record"), *ttl))
    }

    /// The calls so far, cleared.
    fn take_calls(&self) -> Vec<String> {
        std::mem::take(&mut *self.calls.lock())
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
        value: &str,
        ttl: Duration,
    ) -> Result<(), BackendError> {
        let takes = *self.put_takes.lock();
        if !takes.is_zero() {
            tokio::time::sleep(takes).await;
        }
        self.calls
            .lock()
            .push(format!("put {key} {}s", ttl.as_secs()));
        self.records
            .lock()
            .insert(key.to_owned(), (value.to_owned(), ttl));
        Ok(())
    }
    async fn recovery(&self, key: &str) -> Result<Option<String>, BackendError> {
        Ok(self.records.lock().get(key).map(|(text, _)| text.clone()))
    }
    async fn touch_recoveries(&self, keys: &[String], ttl: Duration) -> Result<(), BackendError> {
        let mut records = self.records.lock();
        for key in keys {
            self.calls
                .lock()
                .push(format!("touch {key} {}s", ttl.as_secs()));
            if let Some((_, t)) = records.get_mut(key) {
                *t = ttl;
            }
        }
        Ok(())
    }
    async fn delete_recovery(&self, key: &str) -> Result<(), BackendError> {
        self.calls.lock().push(format!("delete {key}"));
        self.records.lock().remove(key);
        Ok(())
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

#[tokio::test(start_paused = true)]
async fn a_session_stores_nothing_while_it_runs_where_records_die_with_the_process() {
    let (registry, records) = start(false).await;
    records.begin("p1", &record(&[])).await.unwrap();
    records.update("p1", &record(&["r1"]));
    records.update("p1", &record(&["r1", "r2"]));
    wait(LEASE * 5).await;
    assert_eq!(
        registry.writes(),
        Vec::<String>::new(),
        "no write, no renewal"
    );
    assert!(records.live.lock().is_empty(), "not in the live set");
    assert_eq!(
        records.load("p1").await.unwrap(),
        None,
        "nothing to recover"
    );
}

#[tokio::test(start_paused = true)]
async fn a_recoverable_end_stores_the_latest_record_for_the_window() {
    let (registry, records) = start(false).await;
    records.begin("p1", &record(&[])).await.unwrap();
    records.update("p1", &record(&["r1"]));
    records.end("p1", Some(&record(&["r1", "r2"])));
    wait(Duration::from_millis(1)).await;
    assert_eq!(registry.writes(), ["put p1 120s"]);
    assert_eq!(registry.stored("p1"), Some((record(&["r1", "r2"]), WINDOW)));
    assert_eq!(
        records.load("p1").await.unwrap(),
        Some(record(&["r1", "r2"]))
    );
}

#[tokio::test(start_paused = true)]
async fn an_ended_record_loads_at_once_before_the_writer_stores_it() {
    for outlive in [false, true] {
        let (registry, records) = start(outlive).await;
        records.begin("p1", &record(&[])).await.unwrap();
        records.update("p1", &record(&["r1"]));
        records.end("p1", Some(&record(&["r1"])));
        // The writer has not run: the registry holds no record or the one from `begin`.
        let stored = registry.stored("p1").map(|(r, _)| r);
        assert_ne!(
            stored,
            Some(record(&["r1"])),
            "outlive {outlive}: not written yet"
        );
        assert_eq!(
            records.load("p1").await.unwrap(),
            Some(record(&["r1"])),
            "outlive {outlive}: the pending record is what a reconnecting client gets"
        );
    }
}

#[tokio::test(start_paused = true)]
async fn an_end_without_recovery_stores_nothing_where_records_die_with_the_process() {
    let (registry, records) = start(false).await;
    records.begin("p1", &record(&["r1"])).await.unwrap();
    records.end("p1", None);
    assert_eq!(records.load("p1").await.unwrap(), None);
    wait(LEASE).await;
    assert_eq!(registry.writes(), Vec::<String>::new());
}

#[tokio::test(start_paused = true)]
async fn a_recovered_session_takes_its_record_back_where_records_die_with_the_process() {
    let (registry, records) = start(false).await;
    records.begin("p1", &record(&[])).await.unwrap();
    records.end("p1", Some(&record(&["r1"])));
    wait(Duration::from_millis(1)).await;
    let loaded = records.load("p1").await.unwrap().expect("recoverable");

    // The client recovers: its new session holds the record, a second client presenting the
    // same pid while it runs gets nothing.
    records.begin("p1", &loaded).await.unwrap();
    assert_eq!(records.load("p1").await.unwrap(), None, "the session runs");
    wait(Duration::from_millis(1)).await;
    assert_eq!(registry.stored("p1"), None);

    // It ends on purpose: nothing to recover, ever.
    records.end("p1", None);
    wait(LEASE).await;
    assert_eq!(records.load("p1").await.unwrap(), None);
    assert_eq!(registry.stored("p1"), None);
}

#[tokio::test(start_paused = true)]
async fn a_record_the_writer_is_storing_loads_and_a_recovery_deletes_it_after_the_store() {
    let (registry, records) = start(false).await;
    *registry.put_takes.lock() = Duration::from_millis(10);
    records.begin("p1", &record(&[])).await.unwrap();
    records.end("p1", Some(&record(&["r1"])));
    // The writer is in the middle of storing it.
    wait(Duration::from_millis(2)).await;
    assert_eq!(registry.stored("p1"), None, "not stored yet");
    let loaded = records.load("p1").await.unwrap();
    assert_eq!(loaded, Some(record(&["r1"])), "found while being written");

    // The client recovers; the ended session's store lands after that, and the delete after it.
    records.begin("p1", &record(&["r1"])).await.unwrap();
    wait(Duration::from_millis(30)).await;
    assert_eq!(
        registry.stored("p1"),
        None,
        "a running session's pid is not recoverable"
    );
    assert_eq!(records.load("p1").await.unwrap(), None);
    assert!(records.pending.lock().is_empty(), "everything written");
}

#[tokio::test(start_paused = true)]
async fn a_session_recovered_before_the_writer_ran_supersedes_the_pending_record() {
    for outlive in [false, true] {
        let (registry, records) = start(outlive).await;
        records.begin("p1", &record(&[])).await.unwrap();
        records.end("p1", Some(&record(&["r1"])));
        let loaded = records.load("p1").await.unwrap().expect("recoverable");
        records.begin("p1", &loaded).await.unwrap();
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
async fn records_that_outlive_the_process_are_stored_renewed_and_kept_a_window() {
    let (registry, records) = start(true).await;
    records.begin("p1", &record(&[])).await.unwrap();
    assert_eq!(
        registry.take_calls(),
        ["put p1 122s"],
        "stored before CONNECT is answered"
    );

    records.update("p1", &record(&["r1"]));
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

    records.end("p1", Some(&record(&["r1"])));
    wait(Duration::from_millis(1)).await;
    assert_eq!(
        registry.take_calls(),
        ["touch p1 120s"],
        "kept a window after the end"
    );
    wait(LEASE).await;
    assert_eq!(
        registry.take_calls(),
        Vec::<String>::new(),
        "no renewal once ended"
    );

    records.begin("p2", &record(&[])).await.unwrap();
    records.end("p2", None);
    wait(Duration::from_millis(1)).await;
    assert_eq!(registry.take_calls(), ["put p2 122s", "delete p2"]);
}

#[tokio::test(start_paused = true)]
async fn an_old_session_ending_after_its_pid_was_recovered_here_leaves_the_new_record_live() {
    let (registry, records) = start(true).await;
    records.begin("p1", &record(&[])).await.unwrap();
    // The client came back before its old connection was noticed gone, and recovered.
    records.begin("p1", &record(&["r1"])).await.unwrap();
    registry.take_calls();

    // The old session ends now, not recoverable (its client logged out, say): the record is
    // the new session's and stays.
    records.end("p1", None);
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
    records.end("p1", Some(&record(&["r1"])));
    wait(Duration::from_millis(1)).await;
    assert_eq!(registry.take_calls(), ["touch p1 120s"]);
    assert!(records.live.lock().is_empty());
}
