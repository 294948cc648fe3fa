//! The count limit's trimmed rows: queued in `doomed` while in no stream, then deleted together
//! once [`DOOMED_BATCH`] wait, on close, or when the database opens; their live keys kept.

use super::{LIMITS, keyed, run_appends};
use crate::schema;
use crate::trimming::{
    DOOMED_BATCH, DOOMED_DELETE, DOOMED_KEYS, LEFT_IN_NO_STREAM, QUEUE_ONE_STREAM,
};
use crate::writer::WriterLimits;
use rusqlite::Connection;
use std::time::Duration;
use switchboard_core::backend::{AppendRequest, Appended};
use switchboard_proto::Conv;

fn count(dir: &std::path::Path, sql: &str) -> usize {
    let conn = Connection::open(dir.join(schema::DB_FILE)).expect("db");
    let n: i64 = conn.query_row(sql, [], |r| r.get(0)).expect("count");
    usize::try_from(n).expect("a count")
}

/// Runs a writer over `dir` with a history limit of one message on `requests`, then a close
/// (`close`) or nothing (a crash). Steps run only for a partition that holds 1,000 entries (and
/// on close).
fn run(dir: &std::path::Path, requests: Vec<AppendRequest>, close: bool) -> Vec<Appended> {
    let limits = WriterLimits {
        history_max_messages: 1,
        index_cycle: Duration::from_secs(3600),
        ..LIMITS
    };
    run_appends(dir, limits, requests, close)
}

#[test]
fn trimmed_rows_wait_in_no_stream_and_go_together() {
    let dir = tempfile::tempdir().expect("tempdir");
    let room = Conv::room("r");
    let plain = |n: usize| (0..n).map(|_| keyed(&room, None)).collect::<Vec<_>>();
    let mut first = vec![keyed(&room, Some("k1"))];
    first.extend(plain(1_500));
    let answers = run(dir.path(), first, false);
    let receipt = answers[0].receipt.clone();

    // The step at 1,000 entries trimmed them to one: the rows are queued, none deleted yet,
    // and the keyed one's key is still on its row.
    let queued = count(dir.path(), "SELECT count(*) FROM doomed");
    assert!((900..1_500).contains(&queued), "{queued} rows queued");
    assert_eq!(count(dir.path(), "SELECT count(*) FROM messages"), 1_501);
    assert_eq!(count(dir.path(), "SELECT count(*) FROM idempotency"), 0);
    let in_streams = "SELECT count(*) FROM messages WHERE id IN (SELECT id FROM doomed)
                      AND EXISTS (SELECT 1 FROM entries WHERE msg = messages.id)";
    assert_eq!(
        count(dir.path(), in_streams),
        0,
        "a queued row is in no stream"
    );

    // Opening writes the entries the crash left, trims them to the limit, and deletes what is
    // queued, the live key kept.
    let retention = crate::index::Retention {
        max_messages: 1,
        key_retention_ms: crate::writer::IDEMPOTENCY_MIN_RETENTION_MS,
    };
    drop(schema::open_writer_retaining(dir.path(), Some(retention)).expect("open"));
    assert_eq!(count(dir.path(), "SELECT count(*) FROM doomed"), 0);
    assert_eq!(count(dir.path(), "SELECT count(*) FROM messages"), 1);
    assert_eq!(count(dir.path(), "SELECT count(*) FROM idempotency"), 1);

    // A retry still gets the original answer. Steps queue more; once DOOMED_BATCH wait, the
    // step deletes them all.
    let mut second = vec![keyed(&room, Some("k1"))];
    second.extend(plain(DOOMED_BATCH + 1_000));
    let answers = run(dir.path(), second, false);
    assert_eq!(
        answers[0].receipt, receipt,
        "the trimmed message's key answers"
    );
    assert!(answers[0].stored.is_empty());
    let queued = count(dir.path(), "SELECT count(*) FROM doomed");
    let rows = count(dir.path(), "SELECT count(*) FROM messages");
    assert!(queued < DOOMED_BATCH, "{queued} rows still queued");
    assert!(
        rows < 1_501 + 2_000,
        "{rows} rows: the queue was deleted during the run"
    );

    // Closing deletes the rest: one message is left, the limit.
    run(dir.path(), plain(10), true);
    assert_eq!(count(dir.path(), "SELECT count(*) FROM doomed"), 0);
    assert_eq!(count(dir.path(), "SELECT count(*) FROM messages"), 1);
    assert_eq!(count(dir.path(), "SELECT count(*) FROM entries"), 1);
}

/// Asserts that no step of `sql`'s plan (on a new database, with `args`) scans a table, and
/// that one is a search by `key`.
fn assert_searches(sql: &str, args: &[&dyn rusqlite::ToSql], key: &str) {
    let dir = tempfile::tempdir().expect("tempdir");
    let (conn, _) = schema::open_writer(dir.path()).expect("open");
    let plan: Vec<String> = conn
        .prepare(&format!("EXPLAIN QUERY PLAN {sql}"))
        .and_then(|mut s| {
            let args = &args[..s.parameter_count()];
            s.query_map(args, |r| r.get::<_, String>(3))?.collect()
        })
        .expect("plan");
    assert!(
        !plan.iter().any(|step| step.starts_with("SCAN")),
        "{sql}: {plan:?}"
    );
    assert!(plan.iter().any(|s| s.contains(key)), "{sql}: {plan:?}");
}

/// The queue's statements look each queued id up: deleting it never scans `messages`.
#[test]
fn the_queue_is_deleted_by_id() {
    for sql in [DOOMED_KEYS, DOOMED_DELETE] {
        assert_searches(sql, rusqlite::params![0], "INTEGER PRIMARY KEY (rowid=?)");
    }
}

/// The trim's statements find the trimmed range by the stream's key and each row and entry by
/// key: a trim costs the rows it trims, never a scan of a table.
#[test]
fn the_trim_searches_by_key() {
    for sql in [QUEUE_ONE_STREAM, LEFT_IN_NO_STREAM] {
        let args = rusqlite::params!["room:r", 1, 1];
        assert_searches(sql, args, "SEARCH e USING PRIMARY KEY (conv=? AND seq<?)");
    }
}

/// Stores row `id` of `conv` at `seq`, keyed `key` (if given) and stored `age_ms` ago, with its
/// entry when `in_stream`.
fn row(conn: &Connection, id: i64, seq: i64, key: Option<&str>, age_ms: u64, in_stream: bool) {
    conn.execute(
        "INSERT INTO messages (id, conv, seq, message_id, ts, key_owner, client_msg_id, body)
         VALUES (?1, 'room:r', ?2, ?3, ?4, ?5, ?6, '{}')",
        rusqlite::params![
            id,
            seq,
            format!("m_{id}"),
            (crate::error::now_ms() - age_ms) as i64,
            key.map(|_| "u_1"),
            key,
        ],
    )
    .expect("a message");
    if in_stream {
        conn.execute(
            "INSERT INTO entries (conv, seq, msg) VALUES ('room:r', ?1, ?2)",
            [seq, id],
        )
        .expect("an entry");
    }
}

/// What the queue's deletion keeps and moves: a live key moves, an expired one does not, a key
/// on two rows ends with the newer one's answer (it used to fail the whole deletion, and with
/// it every open), and a queued id whose row is in a stream (an older build gave the id again)
/// deletes nothing.
#[test]
fn the_queue_keeps_live_rows_and_the_newest_key() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (conn, _) = schema::open_writer(dir.path()).expect("open");
    let week = crate::writer::IDEMPOTENCY_MIN_RETENTION_MS;
    row(&conn, 1, 1, Some("old"), week + 60_000, false);
    row(&conn, 2, 2, Some("live"), 0, false);
    row(&conn, 3, 3, Some("twice"), 2_000, false);
    row(&conn, 4, 4, Some("twice"), 1_000, false);
    row(&conn, 5, 5, None, 0, true);
    conn.execute("INSERT INTO doomed (id) SELECT id FROM messages", [])
        .expect("queue");
    let keys_from = crate::error::now_ms() - week;
    assert!(crate::trimming::delete_doomed(&conn, keys_from).expect("delete"));
    let left: Vec<i64> = conn
        .prepare("SELECT id FROM messages ORDER BY id")
        .and_then(|mut s| s.query_map([], |r| r.get(0))?.collect())
        .expect("rows");
    assert_eq!(left, [5], "the row in a stream stays");
    let keys: Vec<(String, String)> = conn
        .prepare("SELECT client_msg_id, message_id FROM idempotency ORDER BY client_msg_id")
        .and_then(|mut s| s.query_map([], |r| Ok((r.get(0)?, r.get(1)?)))?.collect())
        .expect("keys");
    let keys: Vec<(&str, &str)> = keys.iter().map(|(k, m)| (&k[..], &m[..])).collect();
    assert_eq!(keys, [("live", "m_2"), ("twice", "m_4")]);
    assert_eq!(count(dir.path(), "SELECT count(*) FROM doomed"), 0);
    // The same key once more, from an older row: the newer answer stays.
    row(&conn, 6, 6, Some("twice"), 5_000, false);
    conn.execute("INSERT INTO doomed (id) VALUES (6)", [])
        .expect("queue");
    crate::trimming::delete_doomed(&conn, keys_from).expect("delete");
    let answer: String = conn
        .query_row(
            "SELECT message_id FROM idempotency WHERE client_msg_id = 'twice'",
            [],
            |r| r.get(0),
        )
        .expect("key");
    assert_eq!(answer, "m_4");
}

/// One user stream holding pushes (a row in this stream alone) and direct messages (a row in
/// two streams): a trim queues a push at once, a direct message only once its other entry is
/// gone too (a message to oneself: both of its entries), and no row any of whose partitions
/// is not indexed past it; every trimmed entry goes.
#[test]
fn a_trim_queues_single_stream_rows_together_and_shared_ones_when_in_no_stream() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (conn, _) = schema::open_writer(dir.path()).expect("open");
    let me = Conv::user("me");
    let stored = |id: i64, conv: &str, seq: i64, copy: Option<(&str, i64)>| {
        conn.execute(
            "INSERT INTO messages (id, conv, seq, copy_conv, copy_seq, message_id, ts, body)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, 0, '{}')",
            rusqlite::params![
                id,
                conv,
                seq,
                copy.map(|c| c.0),
                copy.map(|c| c.1),
                format!("m_{id}")
            ],
        )
        .expect("a message");
    };
    let entry = |conv: &str, seq: i64, id: i64| {
        conn.execute(
            "INSERT INTO entries (conv, seq, msg) VALUES (?1, ?2, ?3)",
            rusqlite::params![conv, seq, id],
        )
        .expect("an entry");
    };
    // 1: a push. 2: a DM to me, still in the sender's stream. 3: a DM from me whose
    // recipient's entry was trimmed already. 4: a push above my partition's mark. 5: a push
    // above the trim.
    stored(1, "user:me", 1, None);
    entry("user:me", 1, 1);
    stored(2, "user:me", 2, Some(("user:s", 1)));
    entry("user:me", 2, 2);
    entry("user:s", 1, 2);
    stored(3, "user:x", 1, Some(("user:me", 3)));
    entry("user:me", 3, 3);
    stored(4, "user:me", 4, None);
    entry("user:me", 4, 4);
    stored(5, "user:me", 5, None);
    entry("user:me", 5, 5);
    let parts = crate::tail::PARTITIONS;
    let mut marks = vec![5; parts];
    marks[crate::tail::partition(me.as_str(), parts)] = 3;
    let queued = crate::trimming::trim_stream(&conn, &me, 4, &marks).expect("trim");
    let ids = |sql: &str| -> Vec<i64> {
        conn.prepare(sql)
            .and_then(|mut s| s.query_map([], |r| r.get(0))?.collect())
            .expect("ids")
    };
    assert_eq!(queued, 2);
    assert_eq!(ids("SELECT id FROM doomed ORDER BY id"), [1, 3]);
    assert_eq!(
        ids("SELECT seq FROM entries WHERE conv = 'user:me' ORDER BY seq"),
        [5]
    );
    assert_eq!(ids("SELECT msg FROM entries WHERE conv = 'user:s'"), [2]);

    // 6: a message to myself, in my stream twice: in no stream once both entries are trimmed.
    stored(6, "user:me", 6, Some(("user:me", 7)));
    entry("user:me", 6, 6);
    entry("user:me", 7, 6);
    let marks = vec![10; parts];
    assert_eq!(
        crate::trimming::trim_stream(&conn, &me, 6, &marks).expect("trim"),
        1
    );
    assert_eq!(ids("SELECT id FROM doomed ORDER BY id"), [1, 3, 5]);
    assert_eq!(
        crate::trimming::trim_stream(&conn, &me, 7, &marks).expect("trim"),
        1
    );
    assert_eq!(ids("SELECT id FROM doomed ORDER BY id"), [1, 3, 5, 6]);
    assert_eq!(
        ids("SELECT count(*) FROM entries WHERE conv = 'user:me'"),
        [0]
    );

    // 7: a row with no copy that a second entry also names (no build writes that, but a trim
    // must not take the row for one in this stream alone): kept while its own entry is left.
    stored(7, "user:me", 9, None);
    entry("user:me", 8, 7);
    entry("user:me", 9, 7);
    assert_eq!(
        crate::trimming::trim_stream(&conn, &me, 8, &marks).expect("trim"),
        0
    );
    assert_eq!(
        crate::trimming::trim_stream(&conn, &me, 9, &marks).expect("trim"),
        1
    );
    assert_eq!(ids("SELECT id FROM doomed ORDER BY id"), [1, 3, 5, 6, 7]);

    // 8: a row with no copy of another user, named only from my stream (again no build writes
    // that): its own partition's mark decides, not mine.
    let other = (0..)
        .map(|i| Conv::user(&format!("o{i}")))
        .find(|c| {
            crate::tail::partition(c.as_str(), parts) != crate::tail::partition(me.as_str(), parts)
        })
        .expect("another partition");
    stored(8, other.as_str(), 1, None);
    entry("user:me", 10, 8);
    let mut marks = vec![10; parts];
    marks[crate::tail::partition(other.as_str(), parts)] = 7;
    assert_eq!(
        crate::trimming::trim_stream(&conn, &me, 10, &marks).expect("trim"),
        0
    );
    stored(9, other.as_str(), 2, None);
    entry("user:me", 11, 9);
    marks[crate::tail::partition(other.as_str(), parts)] = 9;
    assert_eq!(
        crate::trimming::trim_stream(&conn, &me, 11, &marks).expect("trim"),
        1
    );
    assert_eq!(ids("SELECT id FROM doomed ORDER BY id"), [1, 3, 5, 6, 7, 9]);
}
