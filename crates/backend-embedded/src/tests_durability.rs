//! Tests of what a commit waits for: the checkpoint thread (the log is copied back beside the
//! writer and then starts over) and `--durability` (the writer's sync level).

use crate::schema;

/// The writer's connection does not checkpoint (SQLite's automatic checkpoint is off): once the
/// log holds the threshold's pages, the checkpoint thread copies them into the database file.
#[test]
fn checkpoints_run_on_their_own_thread() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (mut conn, _) = schema::open_writer(dir.path()).expect("open");
    let node_metrics = switchboard_core::metrics::Metrics::new();
    let metrics = node_metrics.commits.clone();
    let mut checkpointer =
        crate::checkpointer::Checkpointer::start(dir.path(), &mut conn, 64, Some(metrics.clone()))
            .expect("start");
    let auto: i64 = conn
        .query_row("PRAGMA wal_autocheckpoint", [], |r| r.get(0))
        .expect("wal_autocheckpoint");
    assert_eq!(auto, 0, "the writer's commits never checkpoint");
    let db = dir.path().join(schema::DB_FILE);
    let before = std::fs::metadata(&db).expect("db").len();
    conn.execute_batch("CREATE TABLE filler (x BLOB)")
        .expect("table");
    // About 200 pages, in commits of a few pages each: past the threshold of 64.
    for _ in 0..100 {
        conn.execute("INSERT INTO filler VALUES (zeroblob(8000))", [])
            .expect("insert");
    }
    // The thread's pass copies the log into the database file, then asks the writer to finish.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while !checkpointer.finish_wanted() {
        assert!(
            std::time::Instant::now() < deadline,
            "no checkpoint pass ended"
        );
        std::thread::sleep(std::time::Duration::from_millis(10));
    }
    let after = std::fs::metadata(&db).expect("db").len();
    assert!(
        after >= before + 16 * 4096,
        "the pass copied the log into the database file ({before} -> {after} bytes)"
    );
    // The writer finishes it; its next commit starts the log over.
    checkpointer.finish(&conn);
    conn.execute("INSERT INTO filler VALUES (zeroblob(10))", [])
        .expect("insert");
    let (in_log, _) = crate::checkpointer::checkpoint(&conn).expect("log length");
    assert!(in_log < 16, "the log started over: {in_log} pages in it");
    let steps: u64 = node_metrics
        .render()
        .lines()
        .find_map(|l| l.strip_prefix("switchboard_checkpoint_seconds_count "))
        .and_then(|v| v.trim().parse().ok())
        .expect("the checkpoint histogram is exported");
    assert!(
        steps >= 2,
        "the pass and the finishing step are timed: {steps}"
    );
    checkpointer.stop();
}

/// `--durability process` lowers the writer's sync to NORMAL (no fsync per commit); `disk`
/// keeps FULL. The flag's spellings parse back to the same values.
#[test]
fn durability_sets_the_writers_sync_level() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (conn, _) = schema::open_writer(dir.path()).expect("open");
    let sync = |conn: &rusqlite::Connection| -> i64 {
        conn.query_row("PRAGMA synchronous", [], |r| r.get(0))
            .expect("synchronous")
    };
    crate::Durability::Process.apply(&conn).expect("process");
    assert_eq!(sync(&conn), 1, "synchronous=NORMAL");
    crate::Durability::Disk.apply(&conn).expect("disk");
    assert_eq!(sync(&conn), 2, "synchronous=FULL");
    for d in [crate::Durability::Disk, crate::Durability::Process] {
        assert_eq!(d.as_str().parse::<crate::Durability>(), Ok(d));
    }
    assert!("fsync".parse::<crate::Durability>().is_err());
}
