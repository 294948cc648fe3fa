//! Records that outlive the process (Redis): stored while the session runs and renewed, and
//! several sessions under one `pid`, on this node or another, of which only the one that took
//! the record over last writes it.

use super::*;

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

/// A library socket that takes everything (the wire's outlet in these tests).
struct NoOutlet;

impl crate::socketio::wire::Outlet for NoOutlet {
    fn flush(&self) -> Option<usize> {
        None
    }
    fn poll_room(&self, _: &mut std::task::Context<'_>) -> std::task::Poll<()> {
        std::task::Poll::Ready(())
    }
    fn emit(&self, _: &str, _: String) -> std::io::Result<()> {
        Ok(())
    }
    fn emit_message(&self, _: &str, _: &str) -> std::io::Result<()> {
        Ok(())
    }
    fn ack(&self, _: u64, _: &str) -> std::io::Result<()> {
        Ok(())
    }
    fn ping(&self) -> std::io::Result<bool> {
        Ok(false)
    }
    fn disconnect(&self) {}
    fn close_transport(&self) {}
    fn close_transport_after(&self, _: Duration) {}
}

#[tokio::test(start_paused = true)]
async fn a_socket_that_ends_before_its_session_starts_ends_its_record() {
    let (registry, records) = start(true).await;
    records.begin("p1", 1, &record(&[]), None).await.unwrap();
    let wire = crate::socketio::wire::SioWire::new(
        NoOutlet,
        crate::socketio::offset::Slots::default(),
        records.clone(),
        "p1".to_owned(),
        1,
        "u1".to_owned(),
        8,
    );
    registry.take_calls();
    wire.ended_unstarted();
    wire.ended_unstarted();
    wait(Duration::from_millis(1)).await;
    assert_eq!(
        registry.take_calls(),
        ["put p1 120s"],
        "kept a window, once"
    );
    assert!(records.live.lock().is_empty(), "no longer renewed");
    wait(LEASE).await;
    assert_eq!(registry.take_calls(), Vec::<String>::new());
}
