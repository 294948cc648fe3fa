//! Opening a database: its pragmas and epoch, and migrating a version-1 file in place.

use super::{keyed, old_database, queue_append, run_writer};
use crate::error::now_ms;
use crate::{reads, schema};
use std::sync::mpsc;
use switchboard_conformance::RecordingSink;
use switchboard_core::backend::HistoryQuery;
use switchboard_proto::Conv;

#[test]
fn the_database_is_wal_with_full_sync_and_a_stable_epoch() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (conn, epoch) = schema::open_writer(dir.path()).expect("open");
    let mode: String = conn
        .query_row("PRAGMA journal_mode", [], |r| r.get(0))
        .expect("journal_mode");
    assert_eq!(mode, "wal");
    let sync: i64 = conn
        .query_row("PRAGMA synchronous", [], |r| r.get(0))
        .expect("synchronous");
    assert_eq!(sync, 2, "synchronous=FULL");
    let cache: i64 = conn
        .query_row("PRAGMA cache_size", [], |r| r.get(0))
        .expect("cache_size");
    assert_eq!(cache, -8 * 1024, "the writer caches up to 8 MiB of pages");
    let limit: i64 = conn
        .query_row("PRAGMA journal_size_limit", [], |r| r.get(0))
        .expect("journal_size_limit");
    assert_eq!(
        limit,
        64 << 20,
        "the log file is cut back to 64 MiB when it starts over"
    );
    drop(conn);
    let (_conn, again) = schema::open_writer(dir.path()).expect("reopen");
    assert_eq!(epoch, again, "the epoch is made once");
    let other = tempfile::tempdir().expect("tempdir");
    let (_conn, fresh) = schema::open_writer(other.path()).expect("open");
    assert_ne!(epoch, fresh, "a new database gets a new epoch");
}

/// The version-1 layout: messages clustered on (conv, seq) with an index on `ts`.
const V1_SCHEMA: &str = "
CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL) WITHOUT ROWID;
CREATE TABLE users (user_id TEXT PRIMARY KEY, username TEXT UNIQUE, password_hash TEXT,
    created_at INTEGER NOT NULL);
CREATE TABLE sessions (token_hash BLOB PRIMARY KEY, session_id TEXT NOT NULL,
    user_id TEXT NOT NULL, expires_at INTEGER NOT NULL) WITHOUT ROWID;
CREATE INDEX sessions_expires ON sessions (expires_at);
CREATE TABLE rooms (room_id TEXT PRIMARY KEY, name TEXT NOT NULL, visibility TEXT NOT NULL,
    owner TEXT NOT NULL, created_at INTEGER NOT NULL);
CREATE TABLE members (room_id TEXT NOT NULL, user_id TEXT NOT NULL, joined INTEGER NOT NULL,
    PRIMARY KEY (room_id, user_id)) WITHOUT ROWID;
CREATE INDEX members_by_user ON members (user_id, room_id);
CREATE INDEX members_by_order ON members (room_id, joined);
CREATE TABLE messages (conv TEXT NOT NULL, seq INTEGER NOT NULL, message_id TEXT NOT NULL,
    from_user TEXT, to_user TEXT, ts INTEGER NOT NULL, client_msg_id TEXT, body TEXT NOT NULL,
    PRIMARY KEY (conv, seq)) WITHOUT ROWID;
CREATE INDEX messages_by_ts ON messages (ts);
CREATE TABLE convs (conv TEXT PRIMARY KEY, head INTEGER NOT NULL) WITHOUT ROWID;
CREATE TABLE idempotency (owner TEXT NOT NULL, client_msg_id TEXT NOT NULL, conv TEXT NOT NULL,
    seq INTEGER NOT NULL, message_id TEXT NOT NULL, ts INTEGER NOT NULL,
    PRIMARY KEY (owner, client_msg_id)) WITHOUT ROWID;
CREATE INDEX idempotency_by_ts ON idempotency (ts);
";

/// A version-1 data directory is migrated in place on open: every message, head, idempotency
/// key, session and the epoch survive, and seqs go on.
#[test]
fn a_version_1_database_is_migrated_on_open() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (room, dm, gone) = (Conv::room("r1"), Conv::user("u_2"), Conv::room("gone"));
    let ts0 = i64::try_from(now_ms()).expect("ms since 1970") - 60_000;
    {
        let old = old_database(
            dir.path(),
            V1_SCHEMA,
            "INSERT INTO meta VALUES ('schema_version', '1'), ('epoch', '00000000000000e1');
             INSERT INTO convs VALUES ('room:r1', 3), ('user:u_2', 2), ('room:gone', 7);",
        );
        // Inserted out of time order: the clustered table keeps them by (conv, seq) anyway.
        let rows = [
            ("user:u_2", 2, 4),
            ("room:r1", 1, 0),
            ("room:r1", 3, 5),
            ("user:u_2", 1, 1),
            ("room:r1", 2, 2),
        ];
        for (conv, seq, dt) in rows {
            old.execute(
                "INSERT INTO messages VALUES (?1, ?2, ?3, 'u_1', NULL, ?4, ?5, ?6)",
                rusqlite::params![
                    conv,
                    seq,
                    format!("m_{conv}_{seq}"),
                    ts0 + dt,
                    (conv == "room:r1" && seq == 1).then_some("c1"),
                    format!(r#"{{"n":"{conv}#{seq}"}}"#),
                ],
            )
            .expect("v1 message");
        }
        old.execute(
            "INSERT INTO idempotency VALUES ('u_1', 'c1', 'room:r1', 1, 'm_room:r1_1', ?1)",
            [ts0],
        )
        .expect("v1 key");
        old.execute(
            "INSERT INTO sessions VALUES (?1, 's_1', 'u_1', ?2)",
            rusqlite::params![&[9u8; 32][..], i64::MAX / 2],
        )
        .expect("v1 session");
    }

    let (conn, epoch) = schema::open_writer(dir.path()).expect("open and migrate");
    assert_eq!(epoch, "00000000000000e1", "the epoch survives");
    let version: String = conn
        .query_row(
            "SELECT value FROM meta WHERE key = 'schema_version'",
            [],
            |r| r.get(0),
        )
        .expect("version");
    assert_eq!(version, schema::SCHEMA_VERSION.to_string());
    let leftovers: i64 = conn
        .query_row(
            "SELECT count(*) FROM sqlite_master WHERE name IN
             ('messages_v1', 'messages_by_ts', 'idempotency_v1', 'idempotency_by_ts')",
            [],
            |r| r.get(0),
        )
        .expect("leftovers");
    assert_eq!(leftovers, 0, "the old tables and their indexes are gone");
    let by_id: Vec<i64> = conn
        .prepare("SELECT ts FROM messages ORDER BY id")
        .and_then(|mut s| s.query_map([], |r| r.get(0))?.collect())
        .expect("rows");
    assert_eq!(
        by_id,
        (0..=5)
            .filter(|d| *d != 3)
            .map(|d| ts0 + d)
            .collect::<Vec<_>>()
    );
    let q = HistoryQuery {
        limit: 10,
        ..HistoryQuery::default()
    };
    let history = reads::history(&conn, &crate::tail::Tail::default(), &room, q).expect("history");
    let got: Vec<(u64, &str, u64, Option<&str>, String)> = history
        .iter()
        .map(|m| {
            (
                m.seq,
                m.message_id.as_str(),
                m.ts,
                m.client_msg_id.as_deref(),
                m.body.get().to_owned(),
            )
        })
        .collect();
    let want = |seq: u64, dt: i64, cmid| {
        let id = format!("m_room:r1_{seq}");
        (
            seq,
            id,
            (ts0 + dt) as u64,
            cmid,
            format!(r#"{{"n":"room:r1#{seq}"}}"#),
        )
    };
    let want = [want(1, 0, Some("c1")), want(2, 2, None), want(3, 5, None)];
    assert_eq!(got.len(), want.len());
    for (g, w) in got.iter().zip(&want) {
        assert_eq!(
            (g.0, g.1, g.2, g.3, &g.4),
            (w.0, w.1.as_str(), w.2, w.3, &w.4)
        );
    }
    assert_eq!(history[0].from.as_deref(), Some("u_1"));
    assert_eq!(
        reads::position(&conn, &crate::tail::Tail::default(), &room).expect("room"),
        (3, Some(1))
    );
    assert_eq!(
        reads::position(&conn, &crate::tail::Tail::default(), &dm).expect("dm"),
        (2, Some(1))
    );
    assert_eq!(
        reads::position(&conn, &crate::tail::Tail::default(), &gone).expect("gone"),
        (7, None),
        "a head without messages survives"
    );
    assert!(reads::session(&conn, &[9; 32]).expect("session").is_some());
    drop(conn);

    let sink = RecordingSink::new();
    let (jobs, rx) = mpsc::channel();
    let retry = queue_append(&jobs, keyed(&room, Some("c1")));
    let next: Vec<_> = [&room, &dm, &gone]
        .into_iter()
        .map(|c| queue_append(&jobs, keyed(c, None)))
        .collect();
    run_writer(dir.path(), jobs, rx, &sink);
    let retry = retry.blocking_recv().expect("answered").expect("retry");
    assert_eq!(
        (
            retry.receipt.seq,
            retry.receipt.message_id.as_str(),
            retry.receipt.ts
        ),
        (1, "m_room:r1_1", ts0 as u64),
        "the idempotency key answers with the original receipt"
    );
    assert!(retry.stored.is_empty());
    let seqs = super::answered_seqs(next);
    assert_eq!(seqs, vec![4, 3, 8], "seqs go on from the migrated heads");
    let (conn, _) = schema::open_writer(dir.path()).expect("reopen at version 2");
    assert_eq!(
        reads::position(&conn, &crate::tail::Tail::default(), &room).expect("room"),
        (4, Some(1))
    );
}
