//! The store's reads (users, sessions, rooms, members), each one query on a reader thread's
//! connection.

use super::to_u64;
use crate::error::DbResultExt;
use rusqlite::{Connection, OptionalExtension, Row};
use switchboard_core::backend::{
    AuthSession, BackendError, Room, TokenHash, User, UserCredentials, Visibility,
};

/// Parses a stored visibility.
pub(crate) fn parse_visibility(s: &str) -> Result<Visibility, BackendError> {
    match s {
        "public" => Ok(Visibility::Public),
        "private" => Ok(Visibility::Private),
        other => Err(BackendError::Internal(format!(
            "stored room has unknown visibility {other:?}"
        ))),
    }
}

/// Finds a user by login name.
pub(crate) fn user_by_username(
    conn: &Connection,
    username: &str,
) -> Result<Option<UserCredentials>, BackendError> {
    // The exact spelling first: a name stored before names compared ignoring case, that
    // collided with an older one when keys were assigned (schema module), has no key and is
    // found only this way. Then the key, as every other name is.
    let exact = credentials(
        conn,
        "SELECT user_id, username, password_hash FROM users WHERE username = ?1",
        username,
    )?;
    if exact.is_some() {
        return Ok(exact);
    }
    credentials(
        conn,
        "SELECT user_id, username, password_hash FROM users WHERE username_key = ?1",
        &switchboard_core::names::username_key(username),
    )
}

fn credentials(
    conn: &Connection,
    sql: &str,
    arg: &str,
) -> Result<Option<UserCredentials>, BackendError> {
    conn.prepare_cached(sql)
        .and_then(|mut s| {
            s.query_row([arg], |r| {
                Ok(UserCredentials {
                    user: User {
                        user_id: r.get(0)?,
                        username: r.get(1)?,
                    },
                    password_hash: r.get(2)?,
                })
            })
            .optional()
        })
        .ctx("reading a user by name")
}

/// Finds a user by id.
pub(crate) fn user(conn: &Connection, user_id: &str) -> Result<Option<User>, BackendError> {
    conn.prepare_cached("SELECT user_id, username FROM users WHERE user_id = ?1")
        .and_then(|mut s| {
            s.query_row([user_id], |r| {
                Ok(User {
                    user_id: r.get(0)?,
                    username: r.get(1)?,
                })
            })
            .optional()
        })
        .ctx("reading a user")
}

/// Finds a session by token hash.
pub(crate) fn session(
    conn: &Connection,
    token_hash: &TokenHash,
) -> Result<Option<AuthSession>, BackendError> {
    conn.prepare_cached(
        "SELECT session_id, user_id, expires_at FROM sessions WHERE token_hash = ?1",
    )
    .and_then(|mut s| {
        s.query_row([&token_hash[..]], |r| {
            Ok(AuthSession {
                session_id: r.get(0)?,
                user_id: r.get(1)?,
                expires_at_ms: to_u64(r.get(2)?),
            })
        })
        .optional()
    })
    .ctx("reading a session")
}

type RoomRow = (String, String, String, String, i64);

fn room_row(r: &Row<'_>) -> rusqlite::Result<RoomRow> {
    Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?, r.get(4)?))
}

fn room_from_row(
    (room_id, name, visibility, owner, created_at): RoomRow,
) -> Result<Room, BackendError> {
    Ok(Room {
        room_id,
        name,
        visibility: parse_visibility(&visibility)?,
        owner,
        created_at_ms: to_u64(created_at),
    })
}

/// Finds a room.
pub(crate) fn room(conn: &Connection, room_id: &str) -> Result<Option<Room>, BackendError> {
    let row = conn
        .prepare_cached(
            "SELECT room_id, name, visibility, owner, created_at FROM rooms WHERE room_id = ?1",
        )
        .and_then(|mut s| s.query_row([room_id], room_row).optional())
        .ctx("reading a room")?;
    row.map(room_from_row).transpose()
}

/// Public rooms and the rooms `user_id` belongs to, oldest first.
pub(crate) fn rooms_visible_to(
    conn: &Connection,
    user_id: &str,
) -> Result<Vec<Room>, BackendError> {
    let rows = conn
        .prepare_cached(
            "SELECT room_id, name, visibility, owner, created_at FROM rooms
             WHERE visibility = 'public'
                OR room_id IN (SELECT room_id FROM members WHERE user_id = ?1)
             ORDER BY rowid",
        )
        .and_then(|mut s| {
            s.query_map([user_id], room_row)?
                .collect::<rusqlite::Result<Vec<_>>>()
        })
        .ctx("listing rooms")?;
    rows.into_iter().map(room_from_row).collect()
}

/// Whether `user_id` is a member of `room_id`.
pub(crate) fn is_member(
    conn: &Connection,
    room_id: &str,
    user_id: &str,
) -> Result<bool, BackendError> {
    conn.prepare_cached("SELECT 1 FROM members WHERE room_id = ?1 AND user_id = ?2")
        .and_then(|mut s| s.exists([room_id, user_id]))
        .ctx("reading a membership")
}

/// The members of a room in the order they joined.
pub(crate) fn members(conn: &Connection, room_id: &str) -> Result<Vec<String>, BackendError> {
    conn.prepare_cached("SELECT user_id FROM members WHERE room_id = ?1 ORDER BY joined")
        .and_then(|mut s| {
            s.query_map([room_id], |r| r.get(0))?
                .collect::<rusqlite::Result<Vec<String>>>()
        })
        .ctx("listing members")
}
