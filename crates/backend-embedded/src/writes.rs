//! The store's writes (users, sessions, rooms, members). Each runs on the writer thread inside
//! its own savepoint of a group-committed transaction.

use crate::error::{DbResultExt, internal, is_unique_violation, now_ms};
use crate::reads;
use rusqlite::{Connection, OptionalExtension, params};
use switchboard_core::backend::{AuthSession, BackendError, Room, TokenHash, User, Visibility};

/// Inserts a user with a fresh id.
pub(crate) fn create_user(
    conn: &Connection,
    username: &str,
    password_hash: &str,
) -> Result<User, BackendError> {
    let user_id = switchboard_proto::ids::new_id("u");
    let r = conn
        .prepare_cached(
            "INSERT INTO users (user_id, username, username_key, password_hash, created_at)
             VALUES (?1, ?2, ?3, ?4, ?5)",
        )
        .and_then(|mut s| {
            let key = switchboard_core::names::username_key(username);
            s.execute(params![
                user_id,
                username,
                key,
                password_hash,
                now_ms() as i64
            ])
        });
    match r {
        Ok(_) => Ok(User {
            user_id,
            username: Some(username.to_owned()),
        }),
        Err(e) if is_unique_violation(&e) => Err(BackendError::UsernameTaken),
        Err(e) => Err(internal("inserting a user", e)),
    }
}

/// Inserts the user if unknown (no name, no password) and returns it.
pub(crate) fn ensure_user(conn: &Connection, user_id: &str) -> Result<User, BackendError> {
    conn.prepare_cached(
        "INSERT INTO users (user_id, username, password_hash, created_at)
         VALUES (?1, NULL, NULL, ?2) ON CONFLICT (user_id) DO NOTHING",
    )
    .and_then(|mut s| s.execute(params![user_id, now_ms() as i64]))
    .ctx("ensuring a user")?;
    reads::user(conn, user_id)?
        .ok_or_else(|| BackendError::Internal("ensured user is missing".into()))
}

/// Stores a session.
pub(crate) fn create_session(
    conn: &Connection,
    token_hash: &TokenHash,
    session: &AuthSession,
) -> Result<(), BackendError> {
    conn.prepare_cached(
        "INSERT INTO sessions (token_hash, session_id, user_id, expires_at) VALUES (?1, ?2, ?3, ?4)",
    )
    .and_then(|mut s| {
        s.execute(params![
            &token_hash[..],
            session.session_id,
            session.user_id,
            i64::try_from(session.expires_at_ms).unwrap_or(i64::MAX)
        ])
    })
    .ctx("inserting a session")?;
    Ok(())
}

/// Deletes a session, returning it if it existed.
pub(crate) fn delete_session(
    conn: &Connection,
    token_hash: &TokenHash,
) -> Result<Option<AuthSession>, BackendError> {
    let found = reads::session(conn, token_hash)?;
    if found.is_some() {
        conn.prepare_cached("DELETE FROM sessions WHERE token_hash = ?1")
            .and_then(|mut s| s.execute([&token_hash[..]]))
            .ctx("deleting a session")?;
    }
    Ok(found)
}

/// Deletes every session of `user_id` but `except` (a session id); returns the deleted ids.
pub(crate) fn delete_user_sessions(
    conn: &Connection,
    user_id: &str,
    except: Option<&str>,
) -> Result<Vec<String>, BackendError> {
    let except = except.unwrap_or("");
    let ids = conn
        .prepare_cached(
            "DELETE FROM sessions WHERE user_id = ?1 AND session_id != ?2 RETURNING session_id",
        )
        .and_then(|mut s| {
            s.query_map([user_id, except], |r| r.get::<_, String>(0))?
                .collect::<Result<Vec<_>, _>>()
        })
        .ctx("deleting a user's sessions")?;
    Ok(ids)
}

/// Replaces a user's password hash; `NotFound` for an unknown user.
pub(crate) fn set_password(
    conn: &Connection,
    user_id: &str,
    password_hash: &str,
) -> Result<(), BackendError> {
    let changed = conn
        .prepare_cached("UPDATE users SET password_hash = ?2 WHERE user_id = ?1")
        .and_then(|mut s| s.execute([user_id, password_hash]))
        .ctx("setting a password")?;
    if changed == 0 {
        return Err(BackendError::NotFound);
    }
    Ok(())
}

/// Creates a room with a fresh id; the owner is its first member.
pub(crate) fn create_room(
    conn: &Connection,
    name: &str,
    visibility: Visibility,
    owner: &str,
) -> Result<Room, BackendError> {
    let room = Room {
        room_id: switchboard_proto::ids::new_id("r"),
        name: name.to_owned(),
        visibility,
        owner: owner.to_owned(),
        created_at_ms: now_ms(),
    };
    conn.prepare_cached(
        "INSERT INTO rooms (room_id, name, visibility, owner, created_at) VALUES (?1, ?2, ?3, ?4, ?5)",
    )
    .and_then(|mut s| {
        s.execute(params![
            room.room_id,
            room.name,
            room.visibility.as_str(),
            room.owner,
            room.created_at_ms as i64
        ])
    })
    .ctx("inserting a room")?;
    insert_member(conn, &room.room_id, owner)?;
    Ok(room)
}

/// Adds a member; [`BackendError::NotFound`] if the room does not exist.
pub(crate) fn add_member(
    conn: &Connection,
    room_id: &str,
    user_id: &str,
) -> Result<(), BackendError> {
    let exists = conn
        .prepare_cached("SELECT 1 FROM rooms WHERE room_id = ?1")
        .and_then(|mut s| s.query_row([room_id], |_| Ok(())).optional())
        .ctx("checking a room")?
        .is_some();
    if !exists {
        return Err(BackendError::NotFound);
    }
    insert_member(conn, room_id, user_id)
}

/// Inserts a membership at the end of the join order (nothing if already a member).
fn insert_member(conn: &Connection, room_id: &str, user_id: &str) -> Result<(), BackendError> {
    conn.prepare_cached(
        "INSERT INTO members (room_id, user_id, joined)
         VALUES (?1, ?2, (SELECT coalesce(max(joined), 0) + 1 FROM members WHERE room_id = ?1))
         ON CONFLICT (room_id, user_id) DO NOTHING",
    )
    .and_then(|mut s| s.execute([room_id, user_id]))
    .ctx("inserting a member")?;
    Ok(())
}

/// Removes a member (nothing if not one).
pub(crate) fn remove_member(
    conn: &Connection,
    room_id: &str,
    user_id: &str,
) -> Result<(), BackendError> {
    conn.prepare_cached("DELETE FROM members WHERE room_id = ?1 AND user_id = ?2")
        .and_then(|mut s| s.execute([room_id, user_id]))
        .ctx("deleting a member")?;
    Ok(())
}
