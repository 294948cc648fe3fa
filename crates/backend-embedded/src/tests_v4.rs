//! Unit tests of the version-4 message layout: a message stored once with an entry per stream,
//! its key on the row and moved aside when the row goes, runs of appends in one savepoint, and
//! the migration from version 3.

use crate::error::now_ms;
use crate::tests::{
    AppendReply, LIMITS, keyed, old_database, queue_append, queue_session, run_writer,
};
use crate::writer::WriterLimits;
use crate::{reads, schema};
use rusqlite::Connection;
use std::sync::mpsc;
use switchboard_conformance::RecordingSink;
use switchboard_core::backend::{AppendRequest, Appended, HistoryQuery};
use switchboard_proto::{Conv, MessageBody};

/// A direct message from `u_1` to `to`, with the sender's copy, and an optional key.
fn dm(to: &str, cmid: Option<&str>) -> AppendRequest {
    AppendRequest {
        conv: Conv::user(to),
        from: Some("u_1".into()),
        to: Some(to.into()),
        body: MessageBody::from_json(r#"{"dm":1}"#.into()).expect("json"),
        client_msg_id: cmid.map(str::to_owned),
        idempotency_owner: "u_1".into(),
        copy_to: Some(Conv::user("u_1")),
    }
}

/// Runs every request in one batch of a writer with `limits`; returns the answers.
fn one_batch(
    dir: &std::path::Path,
    limits: WriterLimits,
    requests: Vec<AppendRequest>,
) -> Vec<Appended> {
    crate::tests::run_appends(dir, limits, requests, true)
}

fn count(conn: &Connection, sql: &str) -> i64 {
    conn.query_row(sql, [], |r| r.get(0)).expect("count")
}

/// The newest 100 messages.
fn page() -> HistoryQuery {
    HistoryQuery {
        limit: 100,
        ..HistoryQuery::default()
    }
}

fn seqs(conn: &Connection, conv: &Conv) -> Vec<u64> {
    reads::history(conn, &crate::tail::Tail::default(), conv, page())
        .expect("history")
        .iter()
        .map(|m| m.seq)
        .collect()
}

/// A direct message is one row with two entries; it stays while either stream keeps it, and
/// when the count limit has trimmed both, the row goes and its key still answers.
#[test]
fn a_dm_is_stored_once_and_kept_while_a_stream_holds_it() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (bob, me) = (Conv::user("u_bob"), Conv::user("u_1"));
    let first = one_batch(dir.path(), LIMITS, vec![dm("u_bob", Some("k1"))]);
    let conn = schema::open_reader(dir.path()).expect("reader");
    assert_eq!(count(&conn, "SELECT count(*) FROM messages"), 1);
    assert_eq!(count(&conn, "SELECT count(*) FROM entries"), 2);
    let mine = reads::history(&conn, &crate::tail::Tail::default(), &me, page()).expect("history");
    assert_eq!(mine.len(), 1);
    assert_eq!(
        (mine[0].conv.clone(), mine[0].seq, mine[0].to.as_deref()),
        (me.clone(), 1, Some("u_bob"))
    );
    assert_eq!(mine[0].message_id, first[0].receipt.message_id);
    drop(conn);

    // Two messages to bob's stream (limit 2) trim bob's entry of the first, not the sender's.
    let limited = WriterLimits {
        history_max_messages: 2,
        ..LIMITS
    };
    let one_stream = |to, key| AppendRequest {
        copy_to: None,
        ..dm(to, Some(key))
    };
    let to_bob = |key| one_stream("u_bob", key);
    one_batch(dir.path(), limited, vec![to_bob("k2"), to_bob("k3")]);
    let conn = schema::open_reader(dir.path()).expect("reader");
    assert_eq!(seqs(&conn, &bob), vec![2, 3]);
    assert_eq!(seqs(&conn, &me), vec![1], "the sender's copy stays");
    assert_eq!(count(&conn, "SELECT count(*) FROM messages"), 3);
    assert_eq!(count(&conn, "SELECT count(*) FROM idempotency"), 0);
    drop(conn);

    // Two more of the sender's own messages trim the copy too: the row goes, its key moves.
    let to_me = |key| one_stream("u_1", key);
    one_batch(dir.path(), limited, vec![to_me("k4"), to_me("k5")]);
    let conn = schema::open_reader(dir.path()).expect("reader");
    assert_eq!(seqs(&conn, &me), vec![2, 3]);
    assert_eq!(count(&conn, "SELECT count(*) FROM messages"), 4);
    assert_eq!(count(&conn, "SELECT count(*) FROM entries"), 4);
    assert_eq!(count(&conn, "SELECT count(*) FROM idempotency"), 1);
    drop(conn);
    let retry = one_batch(dir.path(), limited, vec![dm("u_bob", Some("k1"))]);
    assert_eq!(retry[0].receipt, first[0].receipt, "the moved key answers");
    assert!(retry[0].stored.is_empty());
}

/// One append of a run failing (its key names a conversation that cannot be parsed) fails
/// alone: its neighbours in the same batch are stored, with no gap in the seqs. Both ways of
/// undoing a run: the run first in its transaction (rolled back and begun again), and after
/// another write (rolled back to its savepoint, the write kept).
#[test]
fn a_failing_append_fails_alone_in_its_run() {
    for write_first in [false, true] {
        let dir = tempfile::tempdir().expect("tempdir");
        let conv = Conv::room("run");
        let (conn, _) = schema::open_writer(dir.path()).expect("open");
        conn.execute(
            "INSERT INTO messages (conv, seq, message_id, ts, key_owner, client_msg_id, body)
             VALUES ('not a conversation', 1, 'm_bad', ?1, 'u_1', 'bad', '{}')",
            [now_ms() as i64],
        )
        .expect("a bad row");
        drop(conn);
        let sink = RecordingSink::new();
        let (jobs, rx) = mpsc::channel();
        let session = write_first.then(|| queue_session(&jobs, [7; 32], u64::MAX / 2));
        let a = queue_append(&jobs, keyed(&conv, Some("a")));
        let bad = queue_append(&jobs, keyed(&conv, Some("bad")));
        let b = queue_append(&jobs, keyed(&conv, None));
        run_writer(dir.path(), jobs, rx, &sink);
        let seq = |r: AppendReply| {
            r.blocking_recv()
                .expect("answered")
                .expect("append")
                .receipt
                .seq
        };
        assert_eq!(seq(a), 1, "write first: {write_first}");
        assert!(bad.blocking_recv().expect("answered").is_err());
        assert_eq!(seq(b), 2);
        let delivered: Vec<u64> = sink.messages().iter().map(|m| m.seq).collect();
        assert_eq!(delivered, vec![1, 2]);
        let conn = schema::open_reader(dir.path()).expect("reader");
        assert_eq!(seqs(&conn, &conv), vec![1, 2]);
        if let Some(session) = session {
            session.blocking_recv().expect("answered").expect("session");
            assert!(
                reads::session(&conn, &[7; 32]).expect("session").is_some(),
                "the write before the run is kept"
            );
        }
    }
}

/// The version-3 layout of the message tables (the others are the same in version 4).
const V3_MESSAGES: &str = "
CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL) WITHOUT ROWID;
CREATE TABLE users (user_id TEXT PRIMARY KEY, username TEXT UNIQUE, password_hash TEXT,
    created_at INTEGER NOT NULL, username_key TEXT);
CREATE UNIQUE INDEX users_by_key ON users (username_key);
CREATE TABLE messages (id INTEGER PRIMARY KEY, conv TEXT NOT NULL, seq INTEGER NOT NULL,
    message_id TEXT NOT NULL, from_user TEXT, to_user TEXT, ts INTEGER NOT NULL,
    client_msg_id TEXT, body TEXT NOT NULL);
CREATE UNIQUE INDEX messages_by_conv ON messages (conv, seq);
CREATE TABLE convs (conv TEXT PRIMARY KEY, head INTEGER NOT NULL) WITHOUT ROWID;
CREATE TABLE idempotency (id INTEGER PRIMARY KEY, owner TEXT NOT NULL,
    client_msg_id TEXT NOT NULL, conv TEXT NOT NULL, seq INTEGER NOT NULL,
    message_id TEXT NOT NULL, ts INTEGER NOT NULL);
CREATE UNIQUE INDEX idempotency_by_key ON idempotency (owner, client_msg_id);
";

/// A version-3 database (a DM as two rows, one DM with its recipient's row trimmed, a room
/// message with a key) is migrated in place: every stream reads the same, keys answer with the
/// original receipt, seqs go on, and each message is one row.
#[test]
fn a_version_3_database_is_migrated_on_open() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (bob, me, room) = (Conv::user("u_bob"), Conv::user("u_1"), Conv::room("r1"));
    let ts0 = i64::try_from(now_ms()).expect("ms since 1970") - 60_000;
    {
        let old = old_database(
            dir.path(),
            V3_MESSAGES,
            "INSERT INTO meta VALUES ('schema_version', '3'), ('epoch', '00000000000000e3');
             INSERT INTO convs VALUES ('user:u_bob', 1), ('user:u_1', 1), ('room:r1', 1);",
        );
        // (conv, seq, message id, to, key): m1 a DM, m2 a room message, m3 a DM whose
        // recipient's row was trimmed, m4 a DM.
        let rows = [
            ("user:u_bob", 1, "m1", Some("u_bob"), None),
            ("user:u_1", 1, "m1", Some("u_bob"), None),
            ("room:r1", 1, "m2", None, Some("c2")),
            ("user:u_1", 2, "m3", Some("u_bob"), None),
            ("user:u_bob", 3, "m4", Some("u_bob"), Some("c4")),
            ("user:u_1", 3, "m4", Some("u_bob"), Some("c4")),
        ];
        // Both rows of a message have its time: m<n> was stored at ts0 + n.
        for (conv, seq, mid, to, key) in rows {
            let n: i64 = mid[1..].parse().expect("m<n>");
            old.execute(
                "INSERT INTO messages (conv, seq, message_id, from_user, to_user, ts,
                     client_msg_id, body)
                 VALUES (?1, ?2, ?3, 'u_1', ?4, ?5, ?6, ?7)",
                rusqlite::params![
                    conv,
                    seq,
                    mid,
                    to,
                    ts0 + n,
                    key,
                    format!(r#"{{"m":"{mid}"}}"#)
                ],
            )
            .expect("v3 message");
        }
        old.execute(
            "INSERT INTO idempotency (owner, client_msg_id, conv, seq, message_id, ts)
             VALUES ('u_1', 'c4', 'user:u_bob', 3, 'm4', ?1)",
            [ts0 + 4],
        )
        .expect("v3 key");
    }

    let (conn, epoch) = schema::open_writer(dir.path()).expect("open and migrate");
    assert_eq!(epoch, "00000000000000e3");
    assert_eq!(count(&conn, "SELECT count(*) FROM messages"), 4);
    assert_eq!(count(&conn, "SELECT count(*) FROM entries"), 6);
    assert_eq!(
        count(
            &conn,
            "SELECT count(*) FROM sqlite_master WHERE name IN ('messages_v3', 'messages_by_conv')"
        ),
        0,
        "the old table and its index are gone"
    );
    assert_eq!(seqs(&conn, &bob), vec![1, 3]);
    assert_eq!(seqs(&conn, &me), vec![1, 2, 3]);
    assert_eq!(seqs(&conn, &room), vec![1]);
    let mine = reads::history(&conn, &crate::tail::Tail::default(), &me, page()).expect("history");
    let got: Vec<(&str, u64, &str, Option<&str>)> = mine
        .iter()
        .map(|m| {
            (
                m.message_id.as_str(),
                m.ts,
                m.body.get(),
                m.client_msg_id.as_deref(),
            )
        })
        .collect();
    let ts = |i: i64| (ts0 + i) as u64;
    assert_eq!(
        got,
        vec![
            ("m1", ts(1), r#"{"m":"m1"}"#, None),
            ("m3", ts(3), r#"{"m":"m3"}"#, None),
            ("m4", ts(4), r#"{"m":"m4"}"#, Some("c4")),
        ],
        "the sender's copies read as before"
    );
    assert_eq!(
        reads::position(&conn, &crate::tail::Tail::default(), &bob).expect("bob"),
        (3, Some(1))
    );
    drop(conn);

    let next = one_batch(
        dir.path(),
        LIMITS,
        vec![dm("u_bob", Some("c4")), dm("u_bob", None)],
    );
    assert_eq!(
        (next[0].receipt.seq, next[0].receipt.message_id.as_str()),
        (3, "m4"),
        "a version-3 key answers with the original receipt"
    );
    assert!(next[0].stored.is_empty());
    let seqs_now: Vec<(String, u64)> = next[1]
        .stored
        .iter()
        .map(|m| (m.conv.to_string(), m.seq))
        .collect();
    assert_eq!(
        seqs_now,
        vec![("user:u_bob".to_owned(), 4), ("user:u_1".to_owned(), 4)],
        "seqs go on in both streams"
    );
}
