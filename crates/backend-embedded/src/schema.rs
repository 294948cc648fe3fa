//! The database file: connection settings, the schema and its version, and the epoch.
//!
//! One file, `<data_dir>/switchboard.db`, in WAL mode with `synchronous=FULL` (the backend lowers
//! it to `NORMAL` for `--durability process`, see the durability module): a commit is on
//! disk when it returns, readers never block the writer, and the writer never blocks readers.

use crate::error::DbResultExt;
use rusqlite::{Connection, OpenFlags, OptionalExtension};
use std::path::Path;
use std::time::Duration;
use switchboard_core::backend::BackendError;

/// The schema version this build writes and understands. Version 2 stores messages and
/// idempotency keys in the order they were written and no longer rewrites a conversation's head
/// row on every append; version 3 gives every named user a `username_key` (NFKC, lowercased),
/// unique, by which names compare; version 4 stores a message once, however many streams it is
/// in (a direct message and the sender's copy), with one small entry per stream, and keeps its
/// idempotency key on the message row; version 5 writes those entries after the message, in
/// sorted steps, and records each partition's progress in `index_marks` (see the index and tail
/// modules: a build that indexes as it stores must not open such a file). Older databases are
/// migrated on open (see [`open_writer`] and the migrate module).
pub(crate) const SCHEMA_VERSION: u32 = 5;

/// The file name inside the data directory.
pub(crate) const DB_FILE: &str = "switchboard.db";

/// How long a connection waits for a lock before giving up (only checkpoints and recovery take
/// locks that readers can meet in WAL mode).
const BUSY_TIMEOUT: Duration = Duration::from_secs(10);

/// The writer's page cache, in KiB (SQLite's default is 2,000). A direct message adds an entry to
/// two streams, each in its own leaf page somewhere in the `entries` index; with the default the
/// leaves of a few thousand active conversations do not stay cached, and the writer read about one
/// page back from the operating system per DM (`pread64`, measured in the `dm` benchmark with
/// 10,000 users). 8 MiB removed as many reads as 32 MiB did; a larger cache also makes SQLite
/// scan a larger page hash at the end of every transaction (`pcache1TruncateUnsafe`, 6% of the
/// writer thread at 32 MiB). Pages are allocated as they are used.
const WRITER_CACHE_KIB: i64 = 8 * 1024;

/// The size the write-ahead log file is cut back to when the log starts over, in bytes. A reader
/// holding an old snapshot keeps the log from starting over, so it can grow past the checkpoint
/// threshold's 33 MB; without a limit the file kept its largest size until shutdown.
const WAL_SIZE_LIMIT: i64 = 64 << 20;

/// Prepared statements kept per connection: more than the writer and the readers use, so none is
/// ever evicted and compiled again (rusqlite keeps 16 by default).
const STATEMENT_CACHE: usize = 64;

/// The table that holds the schema version: the only one created before the version is known.
const META: &str = "
CREATE TABLE IF NOT EXISTS meta (
    key TEXT PRIMARY KEY,
    value TEXT NOT NULL
) WITHOUT ROWID;
";

/// Every table and index of the current version (created if missing).
const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS users (
    user_id TEXT PRIMARY KEY,
    username TEXT UNIQUE,
    password_hash TEXT,
    created_at INTEGER NOT NULL,
    username_key TEXT
);
-- What names compare by (switchboard_core::names::username_key); NULL for users without a
-- name, and for names that collided with an older one when version 3 assigned the keys.
CREATE UNIQUE INDEX IF NOT EXISTS users_by_key ON users (username_key);

CREATE TABLE IF NOT EXISTS sessions (
    token_hash BLOB PRIMARY KEY,
    session_id TEXT NOT NULL,
    user_id TEXT NOT NULL,
    expires_at INTEGER NOT NULL
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS sessions_expires ON sessions (expires_at);
-- Revoking every token of a user.
CREATE INDEX IF NOT EXISTS sessions_by_user ON sessions (user_id);

CREATE TABLE IF NOT EXISTS rooms (
    room_id TEXT PRIMARY KEY,
    name TEXT NOT NULL,
    visibility TEXT NOT NULL,
    owner TEXT NOT NULL,
    created_at INTEGER NOT NULL
);

CREATE TABLE IF NOT EXISTS members (
    room_id TEXT NOT NULL,
    user_id TEXT NOT NULL,
    joined INTEGER NOT NULL,
    PRIMARY KEY (room_id, user_id)
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS members_by_user ON members (user_id, room_id);
CREATE INDEX IF NOT EXISTS members_by_order ON members (room_id, joined);

-- One row per message, in the order they were stored (`id` grows with `ts`, which never goes
-- backwards): each commit appends to the last pages of the table, and age trimming deletes a
-- prefix by `id`. `conv`/`seq` is the stream the message was sent to (its receipt's);
-- `copy_conv`/`copy_seq` the sender's copy of a direct message, NULL otherwise. Streams find
-- their messages through `entries`; a row lives as long as one of its entries does.
-- `key_owner` is set when the message has a `client_msg_id`: the key a retry is answered by.
CREATE TABLE IF NOT EXISTS messages (
    id INTEGER PRIMARY KEY,
    conv TEXT NOT NULL,
    seq INTEGER NOT NULL,
    copy_conv TEXT,
    copy_seq INTEGER,
    message_id TEXT NOT NULL,
    from_user TEXT,
    to_user TEXT,
    ts INTEGER NOT NULL,
    key_owner TEXT,
    client_msg_id TEXT,
    body TEXT NOT NULL
);
-- Not unique: a key older than its retention no longer answers, and the same key may then name
-- a new message (the writer looks keys up before it stores; the newest live one answers).
CREATE INDEX IF NOT EXISTS messages_by_key ON messages (key_owner, client_msg_id)
    WHERE key_owner IS NOT NULL;

-- A stream's messages: (conv, seq) -> messages.id, a few dozen bytes per entry. Written after
-- the message, a partition of the conversations at a time (the index module).
CREATE TABLE IF NOT EXISTS entries (
    conv TEXT NOT NULL,
    seq INTEGER NOT NULL,
    msg INTEGER NOT NULL,
    PRIMARY KEY (conv, seq)
) WITHOUT ROWID;

-- Per partition of the conversations: every entry of a row up to `id` is in `entries`.
CREATE TABLE IF NOT EXISTS index_marks (
    part INTEGER PRIMARY KEY,
    id INTEGER NOT NULL
);

-- Every conversation that ever had a message. A conversation's head is the larger of `head` and
-- its newest stored seq: the row is written (head 0) with the first message and raised only
-- before age trimming deletes newest messages, not rewritten by every append.
CREATE TABLE IF NOT EXISTS convs (
    conv TEXT PRIMARY KEY,
    head INTEGER NOT NULL
) WITHOUT ROWID;

-- Message rows the count limit left in no stream, to be deleted together in id order (the
-- trimming module: rows deleted one by one as their streams were trimmed each wrote a page).
-- Added within version 5: a build that does not know the table leaves such rows in place, in
-- no stream (no read finds them), until age trimming deletes them, and may give a queued id to a
-- new row once the age limit emptied the table, so the deletion checks again that each queued
-- row is in no stream.
CREATE TABLE IF NOT EXISTS doomed (
    id INTEGER PRIMARY KEY
);

-- Idempotency keys whose message was trimmed before the key expired (and every key stored before
-- version 4), so that a retry still gets the original answer. Expiry deletes a prefix by `id`.
CREATE TABLE IF NOT EXISTS idempotency (
    id INTEGER PRIMARY KEY,
    owner TEXT NOT NULL,
    client_msg_id TEXT NOT NULL,
    conv TEXT NOT NULL,
    seq INTEGER NOT NULL,
    message_id TEXT NOT NULL,
    ts INTEGER NOT NULL
);
CREATE UNIQUE INDEX IF NOT EXISTS idempotency_by_key ON idempotency (owner, client_msg_id);
";

/// Opens the writer's connection, creating the file and the schema if needed, and returns it
/// with the database's epoch (stream entries a crash left are written, untrimmed: see
/// [`open_writer_retaining`]).
#[cfg(test)]
pub(crate) fn open_writer(dir: &Path) -> Result<(Connection, String), BackendError> {
    open_writer_retaining(dir, None)
}

/// [`open_writer`], trimming the conversations whose entries a crash left to `retention`.
pub(crate) fn open_writer_retaining(
    dir: &Path,
    retention: Option<crate::index::Retention>,
) -> Result<(Connection, String), BackendError> {
    crate::files::prepare_dir(dir)?;
    let path = dir.join(DB_FILE);
    crate::files::prepare_db(&path)?;
    let mut conn = Connection::open(&path).ctx("opening the database")?;
    conn.busy_timeout(BUSY_TIMEOUT)
        .ctx("setting busy_timeout")?;
    conn.set_prepared_statement_cache_capacity(STATEMENT_CACHE);
    stable_plans(&conn)?;
    let mode: String = conn
        .query_row("PRAGMA journal_mode=WAL", [], |r| r.get(0))
        .ctx("enabling WAL")?;
    if !mode.eq_ignore_ascii_case("wal") {
        return Err(BackendError::Internal(format!(
            "the database refused WAL mode (journal_mode={mode})"
        )));
    }
    conn.execute_batch("PRAGMA synchronous=FULL; PRAGMA foreign_keys=OFF;")
        .ctx("setting pragmas")?;
    conn.pragma_update(None, "cache_size", -WRITER_CACHE_KIB)
        .ctx("sizing the writer's page cache")?;
    conn.pragma_update(None, "journal_size_limit", WAL_SIZE_LIMIT)
        .ctx("limiting the log file's size")?;

    let tx = conn
        .transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)
        .ctx("starting the schema transaction")?;
    // The version is read before the schema is applied: `CREATE ... IF NOT EXISTS` would leave an
    // older table in place and put the new indexes on it.
    tx.execute_batch(META).ctx("creating the meta table")?;
    let version: Option<String> = tx
        .query_row(
            "SELECT value FROM meta WHERE key='schema_version'",
            [],
            |r| r.get(0),
        )
        .optional()
        .ctx("reading the schema version")?;
    let from: u32 = match version.as_deref() {
        None => SCHEMA_VERSION,
        Some(v) => match v.parse() {
            Ok(n @ 1..=SCHEMA_VERSION) => n,
            _ => {
                return Err(BackendError::Internal(format!(
                    "the database has schema version {v}; this build understands {SCHEMA_VERSION}"
                )));
            }
        },
    };
    crate::migrate::before_schema(&tx, from)?;
    tx.execute_batch(SCHEMA).ctx("creating the schema")?;
    crate::migrate::after_schema(&tx, from)?;
    tx.execute(
        "INSERT INTO meta (key, value) VALUES ('schema_version', ?1)
         ON CONFLICT (key) DO UPDATE SET value = excluded.value",
        [SCHEMA_VERSION.to_string()],
    )
    .ctx("writing the schema version")?;
    let epoch = format!("{:016x}", switchboard_proto::ids::random_u64());
    tx.execute(
        "INSERT OR IGNORE INTO meta (key, value) VALUES ('epoch', ?1)",
        [&epoch],
    )
    .ctx("writing the epoch")?;
    let epoch: String = tx
        .query_row("SELECT value FROM meta WHERE key='epoch'", [], |r| r.get(0))
        .ctx("reading the epoch")?;
    tx.commit().ctx("committing the schema")?;
    crate::index::recover(&mut conn, retention)?;
    Ok((conn, epoch))
}

/// Keeps each cached statement's plan. Without it SQLite compiles a statement again whenever a
/// new value is bound to a parameter that its plan looked at: a conversation id compared twice
/// (the writer's head lookup, 3-5% of the writer thread in the `dm` pattern) or a `LIMIT ?`. The
/// plans do not depend on the values here; the database is never `ANALYZE`d.
fn stable_plans(conn: &Connection) -> Result<(), BackendError> {
    conn.set_db_config(
        rusqlite::config::DbConfig::SQLITE_DBCONFIG_ENABLE_QPSG,
        true,
    )
    .ctx("keeping query plans")?;
    Ok(())
}

/// Opens the checkpoint thread's connection (see the checkpointer module). It never commits: it
/// only checkpoints, which syncs the log before copying and the database after, at any
/// `synchronous` level but OFF.
pub(crate) fn open_checkpointer(dir: &Path) -> Result<Connection, BackendError> {
    let conn = Connection::open(dir.join(DB_FILE)).ctx("opening the checkpoint connection")?;
    conn.busy_timeout(BUSY_TIMEOUT)
        .ctx("setting busy_timeout")?;
    Ok(conn)
}

/// Opens a read-only connection (WAL lets any number of them read while the writer writes).
pub(crate) fn open_reader(dir: &Path) -> Result<Connection, BackendError> {
    let conn = Connection::open_with_flags(
        dir.join(DB_FILE),
        OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX,
    )
    .ctx("opening a read connection")?;
    conn.busy_timeout(BUSY_TIMEOUT)
        .ctx("setting busy_timeout")?;
    conn.set_prepared_statement_cache_capacity(STATEMENT_CACHE);
    stable_plans(&conn)?;
    Ok(conn)
}
