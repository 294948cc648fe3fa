//! The database file: connection settings, the schema and its version, and the epoch.
//!
//! One file, `<data_dir>/switchboard.db`, in WAL mode with `synchronous=FULL`: a commit is on
//! disk when it returns, readers never block the writer, and the writer never blocks readers.

use crate::error::DbResultExt;
use rusqlite::{Connection, OpenFlags, OptionalExtension};
use std::path::Path;
use std::time::Duration;
use switchboard_core::backend::BackendError;

/// The schema version this build writes and understands. Version 2 stores messages and
/// idempotency keys in the order they were written and no longer rewrites a conversation's head
/// row on every append; version 3 gives every named user a `username_key` (NFKC, lowercased),
/// unique, by which names compare. Version-1 and version-2 databases are migrated on open (see
/// [`open_writer`] and [`assign_username_keys`]).
pub(crate) const SCHEMA_VERSION: u32 = 3;

/// The file name inside the data directory.
pub(crate) const DB_FILE: &str = "switchboard.db";

/// How long a connection waits for a lock before giving up (only checkpoints and recovery take
/// locks that readers can meet in WAL mode).
const BUSY_TIMEOUT: Duration = Duration::from_secs(10);

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

-- Rows in the order they were stored (`id` grows with `ts`, which never goes backwards): each
-- commit appends to the last pages of the table instead of dirtying one random page per row.
-- History is found through the (conv, seq) index; age trimming deletes a prefix by `id`.
CREATE TABLE IF NOT EXISTS messages (
    id INTEGER PRIMARY KEY,
    conv TEXT NOT NULL,
    seq INTEGER NOT NULL,
    message_id TEXT NOT NULL,
    from_user TEXT,
    to_user TEXT,
    ts INTEGER NOT NULL,
    client_msg_id TEXT,
    body TEXT NOT NULL
);
CREATE UNIQUE INDEX IF NOT EXISTS messages_by_conv ON messages (conv, seq);

-- Every conversation that ever had a message. A conversation's head is the larger of `head` and
-- its newest stored seq: the row is written with the first message and raised only before age
-- trimming deletes newest messages, not rewritten by every append.
CREATE TABLE IF NOT EXISTS convs (
    conv TEXT PRIMARY KEY,
    head INTEGER NOT NULL
) WITHOUT ROWID;

-- In write order like messages (`ts` never goes backwards): a new key costs one random index
-- entry, and expiry deletes an `id` prefix.
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
/// with the database's epoch.
pub(crate) fn open_writer(dir: &Path) -> Result<(Connection, String), BackendError> {
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
    let from_v1 = version.as_deref() == Some("1");
    let before_v3 = matches!(version.as_deref(), Some("1" | "2"));
    match version.as_deref() {
        None | Some("1" | "2") => {}
        Some(v) if v == SCHEMA_VERSION.to_string() => {}
        Some(v) => {
            return Err(BackendError::Internal(format!(
                "the database has schema version {v}; this build understands {SCHEMA_VERSION}"
            )));
        }
    }
    if from_v1 {
        tx.execute_batch(V1_SET_ASIDE)
            .ctx("migrating from schema version 1")?;
    }
    if before_v3 {
        tx.execute_batch("ALTER TABLE users ADD COLUMN username_key TEXT")
            .ctx("adding username keys")?;
    }
    tx.execute_batch(SCHEMA).ctx("creating the schema")?;
    if from_v1 {
        tx.execute_batch(V1_COPY)
            .ctx("migrating messages from schema version 1")?;
        tracing::info!("embedded backend: migrated the database from schema version 1");
    }
    if before_v3 {
        assign_username_keys(&tx)?;
    }
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
    Ok((conn, epoch))
}

/// Gives every named user without one its `username_key`, oldest user first. A name whose key
/// an older user already has (`Alice` registered after `alice`, when names compared exactly)
/// keeps no key: that user still logs in with the exact name, and nobody can register another
/// spelling of it. Each such name is logged.
pub(crate) fn assign_username_keys(conn: &Connection) -> Result<(), BackendError> {
    let users: Vec<(String, String)> = conn
        .prepare(
            "SELECT user_id, username FROM users
             WHERE username IS NOT NULL AND username_key IS NULL
             ORDER BY created_at, rowid",
        )
        .and_then(|mut s| {
            s.query_map([], |r| Ok((r.get(0)?, r.get(1)?)))?
                .collect::<Result<Vec<_>, _>>()
        })
        .ctx("reading usernames")?;
    let mut collisions = 0;
    for (user_id, name) in &users {
        let key = switchboard_core::names::username_key(name);
        match conn.execute(
            "UPDATE users SET username_key = ?1 WHERE user_id = ?2",
            [&key, user_id],
        ) {
            Ok(_) => {}
            Err(e) if crate::error::is_unique_violation(&e) => {
                collisions += 1;
                tracing::warn!(
                    user_id = %user_id, username = %name, key = %key,
                    "embedded backend: this username differs from an older one only in case or \
                     form; it keeps working by its exact spelling"
                );
            }
            Err(e) => return Err(crate::error::internal("assigning a username key", e)),
        }
    }
    tracing::info!(
        users = users.len(),
        collisions,
        "embedded backend: migrated the database to schema version 3 (usernames ignore case)"
    );
    Ok(())
}

/// Moves a version-1 database's messages and idempotency keys aside before the schema is applied.
/// Version 1 kept them in `WITHOUT ROWID` tables clustered on (conv, seq) and (owner,
/// client_msg_id), each with an index on `ts`; every other table is the same in version 2.
const V1_SET_ASIDE: &str = "
ALTER TABLE messages RENAME TO messages_v1;
ALTER TABLE idempotency RENAME TO idempotency_v1;
";

/// Copies the set-aside rows into the new tables in `ts` order, so that `id` order is time order
/// as the writer keeps it, and drops the old tables with their indexes. Runs in the schema
/// transaction: a crash leaves the database at version 1.
const V1_COPY: &str = "
INSERT INTO messages (conv, seq, message_id, from_user, to_user, ts, client_msg_id, body)
    SELECT conv, seq, message_id, from_user, to_user, ts, client_msg_id, body
    FROM messages_v1 ORDER BY ts, conv, seq;
DROP TABLE messages_v1;
INSERT INTO idempotency (owner, client_msg_id, conv, seq, message_id, ts)
    SELECT owner, client_msg_id, conv, seq, message_id, ts
    FROM idempotency_v1 ORDER BY ts, owner, client_msg_id;
DROP TABLE idempotency_v1;
";

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
