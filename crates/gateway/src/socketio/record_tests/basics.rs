//! Records in both modes and where records die with the process (one node): what is stored
//! when, what a reconnecting client loads, and recoveries that race.

use super::*;

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
