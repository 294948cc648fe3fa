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
    let mut checkpointer = crate::checkpointer::Checkpointer::start(
        dir.path(),
        &mut conn,
        64,
        None,
        Some(metrics.clone()),
    )
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
    // It copies at least what was committed when the hook woke it (the writer's own snapshot is
    // never older): the schema and the first inserts. A pass that met the writer rewriting the
    // wal-index header tries again (BUSY_TRIES) instead of leaving the whole copy to the writer.
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
    let (in_log, _) = crate::checkpointer::checkpoint(&conn)
        .expect("log length")
        .expect("no other checkpoint");
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

/// A writer with nothing to write still finishes every checkpoint: here only maintenance commits
/// (deleting expired history in chunks), and the log must still be copied back and start over
/// instead of growing with every chunk (it did, before the writer looked between maintenance
/// passes and while idle).
#[test]
fn maintenance_alone_keeps_the_log_short() {
    use crate::tests::{LIMITS, keyed, queue_append, run_writer};
    use crate::writer::{Writer, WriterLimits};
    use std::sync::atomic::AtomicBool;
    use std::sync::{Arc, mpsc};
    use switchboard_conformance::RecordingSink;
    use switchboard_proto::Conv;

    let dir = tempfile::tempdir().expect("tempdir");
    let sink = RecordingSink::new();
    // Three maintenance chunks of history (stored with SQLite's own checkpoints).
    {
        let (jobs, rx) = mpsc::channel();
        let replies: Vec<_> = (0..30_000)
            .map(|i| queue_append(&jobs, keyed(&Conv::room(&format!("r{}", i % 997)), None)))
            .collect();
        run_writer(dir.path(), jobs, rx, &sink);
        drop(replies);
    }
    std::thread::sleep(std::time::Duration::from_millis(20));
    // Everything is older than 1 ms: maintenance deletes it, a chunk every 100 ms, no jobs.
    let (mut conn, _) = schema::open_writer(dir.path()).expect("open");
    let checkpointer =
        crate::checkpointer::Checkpointer::start(dir.path(), &mut conn, 64, None, None)
            .expect("start");
    let (jobs, rx) = mpsc::channel();
    let limits = WriterLimits {
        history_max_age_ms: 1,
        ..LIMITS
    };
    let writer = Writer::new(conn, rx, sink.as_sink(), limits)
        .expect("writer")
        .with_checkpointer(checkpointer);
    let thread = std::thread::spawn(move || writer.run(Arc::new(AtomicBool::new(true))));
    let db = dir.path().join(schema::DB_FILE);
    let reader = rusqlite::Connection::open(&db).expect("reader");
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    let (mut left, mut in_log, mut copied) = (-1i64, -1i64, -2i64);
    while std::time::Instant::now() < deadline {
        std::thread::sleep(std::time::Duration::from_millis(50));
        left = reader
            .query_row("SELECT count(*) FROM messages", [], |r| r.get(0))
            .expect("count");
        (in_log, copied) = reader
            .query_row("PRAGMA wal_checkpoint(NOOP)", [], |r| {
                Ok((r.get(1)?, r.get(2)?))
            })
            .expect("log");
        if left == 0 && in_log == copied {
            break;
        }
    }
    drop(jobs);
    thread.join().expect("writer");
    assert_eq!(left, 0, "maintenance deleted the expired history");
    assert_eq!(
        in_log, copied,
        "the idle writer finished the checkpoint: the whole log is copied back"
    );
    assert!(
        in_log < 1_000,
        "the log started over between chunks: {in_log} pages in it (threshold 64)"
    );
}

/// With `--durability process` commits do not fsync the log, so the checkpoint thread does, a
/// bounded time after a commit; while nothing is committed it does not.
#[test]
fn an_unsynced_log_is_synced_soon_after_a_commit_and_not_while_idle() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (mut conn, _) = schema::open_writer(dir.path()).expect("open");
    crate::Durability::Process.apply(&conn).expect("process");
    let every = std::time::Duration::from_millis(50);
    let mut checkpointer =
        crate::checkpointer::Checkpointer::start(dir.path(), &mut conn, 8192, Some(every), None)
            .expect("start");
    std::thread::sleep(every * 4);
    assert_eq!(
        checkpointer.log_syncs(),
        0,
        "nothing committed, nothing synced"
    );
    conn.execute_batch("CREATE TABLE t (x); INSERT INTO t VALUES (1);")
        .expect("commit");
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while checkpointer.log_syncs() == 0 {
        assert!(
            std::time::Instant::now() < deadline,
            "the log was never synced after the commit"
        );
        std::thread::sleep(std::time::Duration::from_millis(5));
    }
    let after = checkpointer.log_syncs();
    std::thread::sleep(every * 4);
    assert_eq!(
        checkpointer.log_syncs(),
        after,
        "no more commits, no more syncs"
    );
    checkpointer.stop();
}
