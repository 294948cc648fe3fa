//! Migrations of older databases to the current schema, run by `schema::open_writer` inside its
//! schema transaction: a crash leaves the database at its old version.
//!
//! - Version 1 kept messages and idempotency keys in `WITHOUT ROWID` tables clustered on
//!   (conv, seq) and (owner, client_msg_id), each with an index on `ts`.
//! - Versions 2 and 3 keep them in write order (`id`), a direct message as two full rows (the
//!   recipient's and the sender's copy) with the same `message_id`, each in a (conv, seq) index.
//! - Version 3 added `users.username_key`.
//! - Version 4 stores each message once, with one `entries` row per stream.
//! - Version 5 writes those rows after the message and adds `index_marks`; a version-4 file is
//!   wholly indexed, so it needs no step here (the index module's `recover` marks it so).

use crate::error::DbResultExt;
use rusqlite::Connection;
use switchboard_core::backend::BackendError;

/// Steps before the current schema is applied (`CREATE ... IF NOT EXISTS` would leave an older
/// table in place and put the new indexes on it): older message tables are set aside as
/// `messages_v3`, in the version-3 layout.
pub(crate) fn before_schema(tx: &Connection, from: u32) -> Result<(), BackendError> {
    if from == 1 {
        tx.execute_batch(V1_SET_ASIDE)
            .ctx("migrating from schema version 1")?;
    } else if from < 4 && has_table(tx, "messages")? {
        tx.execute_batch("ALTER TABLE messages RENAME TO messages_v3")
            .ctx("setting version-3 messages aside")?;
    }
    if from < 3 {
        tx.execute_batch("ALTER TABLE users ADD COLUMN username_key TEXT")
            .ctx("adding username keys")?;
    }
    Ok(())
}

/// Steps after the current schema is applied: the set-aside rows are copied into it.
pub(crate) fn after_schema(tx: &Connection, from: u32) -> Result<(), BackendError> {
    if from == 1 {
        tx.execute_batch(V1_COPY_KEYS)
            .ctx("migrating idempotency keys from schema version 1")?;
    }
    if from < 4 && has_table(tx, "messages_v3")? {
        tx.execute_batch(V3_TO_V4)
            .ctx("migrating messages to schema version 4")?;
        tracing::info!(
            from,
            "embedded backend: migrated the database's messages to schema version 4 (a message \
             stored once)"
        );
    }
    if from < 3 {
        assign_username_keys(tx)?;
    }
    Ok(())
}

/// Whether the database has the table `name` (a database that never stored a message may lack
/// the message tables of its version).
fn has_table(tx: &Connection, name: &str) -> Result<bool, BackendError> {
    tx.query_row(
        "SELECT EXISTS (SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = ?1)",
        [name],
        |r| r.get(0),
    )
    .ctx("looking for a table")
}

/// Moves a version-1 database's messages and idempotency keys aside: the messages into a table
/// of the version-3 layout, in `ts` order, so that `id` order is time order as the writer keeps
/// it.
const V1_SET_ASIDE: &str = "
ALTER TABLE messages RENAME TO messages_v1;
ALTER TABLE idempotency RENAME TO idempotency_v1;
CREATE TABLE messages_v3 (
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
INSERT INTO messages_v3 (conv, seq, message_id, from_user, to_user, ts, client_msg_id, body)
    SELECT conv, seq, message_id, from_user, to_user, ts, client_msg_id, body
    FROM messages_v1 ORDER BY ts, conv, seq;
DROP TABLE messages_v1;
";

/// Copies version-1 idempotency keys in `ts` order (expiry deletes a prefix by `id`).
const V1_COPY_KEYS: &str = "
INSERT INTO idempotency (owner, client_msg_id, conv, seq, message_id, ts)
    SELECT owner, client_msg_id, conv, seq, message_id, ts
    FROM idempotency_v1 ORDER BY ts, owner, client_msg_id;
DROP TABLE idempotency_v1;
";

/// Version-3 rows (set aside as `messages_v3`) into version-4 messages and entries. The rows of
/// one message (same `message_id`) become one message row with the first row's `id`, `conv` and
/// `seq`, the second row's stream as the copy, and an entry per row. Keys stay in the
/// `idempotency` table, which versions 2 to 4 share.
const V3_TO_V4: &str = "
CREATE INDEX messages_v3_by_message ON messages_v3 (message_id, id);
INSERT OR IGNORE INTO messages (id, conv, seq, copy_conv, copy_seq, message_id, from_user,
        to_user, ts, client_msg_id, body)
    SELECT m.id, m.conv, m.seq, c.conv, c.seq, m.message_id, m.from_user, m.to_user, m.ts,
        m.client_msg_id, m.body
    FROM messages_v3 AS m LEFT JOIN messages_v3 AS c
        ON c.message_id = m.message_id AND c.id > m.id
    WHERE NOT EXISTS
        (SELECT 1 FROM messages_v3 AS p WHERE p.message_id = m.message_id AND p.id < m.id)
    ORDER BY m.id, c.id;
INSERT INTO entries (conv, seq, msg)
    SELECT v.conv, v.seq,
        (SELECT min(p.id) FROM messages_v3 AS p WHERE p.message_id = v.message_id)
    FROM messages_v3 AS v;
DROP TABLE messages_v3;
";

/// Gives every named user without one its `username_key`, oldest user first. A name whose key
/// an older user already has (`Alice` registered after `alice`, when names compared exactly)
/// keeps no key: that user still logs in with the exact name, and nobody can register another
/// spelling of it. Each such name is logged.
fn assign_username_keys(conn: &Connection) -> Result<(), BackendError> {
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
