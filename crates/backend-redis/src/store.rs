//! Users and auth sessions, with the embedded backend's semantics.
//!
//! Writes that must check and write together (a free username) are small scripts; the rest are
//! single commands or MULTI pipelines. Rooms and members are in the rooms module.

use crate::batch::Batch;
use crate::error::bad_reply;
use crate::{Shared, now_ms};
use switchboard_core::backend::{AuthSession, BackendError, TokenHash, User, UserCredentials};

/// Creates a user with a fresh id; `UsernameTaken` if the name exists.
pub(crate) async fn create_user(
    s: &Shared,
    username: &str,
    password_hash: &str,
) -> Result<User, BackendError> {
    let user_id = switchboard_proto::ids::new_id("u");
    let name_key = switchboard_core::names::username_key(username);
    if s.redis.is_cluster() {
        return create_user_cluster(s, username, password_hash, user_id, &name_key).await;
    }
    let keys = [s.keys.username(&name_key), s.keys.user(&user_id)];
    let args = [
        user_id.as_str(),
        username,
        password_hash,
        &now_ms().to_string(),
    ];
    let created: i64 = s
        .redis
        .eval("create_user", &s.scripts.create_user, &keys, &args)
        .await?;
    if created == 1 {
        let user = User {
            user_id,
            username: Some(username.to_owned()),
        };
        s.users.insert(&user);
        Ok(user)
    } else {
        Err(BackendError::UsernameTaken)
    }
}

/// On a cluster the name key and the user are in different slots: the user is written first
/// (a fresh id nobody knows yet), then the name is claimed with `SET NX`; if it was taken, the
/// orphan user is deleted. No reader ever finds a name without its user.
async fn create_user_cluster(
    s: &Shared,
    username: &str,
    password_hash: &str,
    user_id: String,
    name_key: &str,
) -> Result<User, BackendError> {
    let user_key = s.keys.user(&user_id);
    let mut c = redis::cmd("HSET");
    c.arg(&user_key)
        .arg("username")
        .arg(username)
        .arg("password_hash")
        .arg(password_hash)
        .arg("created_at")
        .arg(now_ms());
    s.redis.query::<i64>("create_user", &c).await?;
    let mut c = redis::cmd("SET");
    c.arg(s.keys.username(name_key)).arg(&user_id).arg("NX");
    let claimed: Option<String> = s.redis.query("create_user", &c).await?;
    if claimed.is_some() {
        return Ok(User {
            user_id,
            username: Some(username.to_owned()),
        });
    }
    let mut c = redis::cmd("DEL");
    c.arg(&user_key);
    s.redis.query::<i64>("create_user", &c).await?;
    Err(BackendError::UsernameTaken)
}

/// Finds a user by login name, with the password hash: by the exact spelling first (a name an
/// older version stored, whose key an older name had; see the accounts module), then by key.
pub(crate) async fn user_by_username(
    s: &Shared,
    username: &str,
) -> Result<Option<UserCredentials>, BackendError> {
    let mut b = Batch::new();
    b.cmd("GET").arg(s.keys.username(username));
    b.cmd("GET").arg(
        s.keys
            .username(&switchboard_core::names::username_key(username)),
    );
    let (exact, by_key): (Option<String>, Option<String>) =
        s.redis.batch("user_by_username", &b).await?;
    let Some(user_id) = exact.or(by_key) else {
        return Ok(None);
    };
    let mut c = redis::cmd("HMGET");
    c.arg(s.keys.user(&user_id))
        .arg("created_at")
        .arg("username")
        .arg("password_hash");
    let (created, username, password_hash): (Option<String>, Option<String>, Option<String>) =
        s.redis.query("user_by_username", &c).await?;
    Ok(created.map(|_| UserCredentials {
        user: User { user_id, username },
        password_hash,
    }))
}

/// Finds a user by id (from memory if found before: see [`crate::users`]).
pub(crate) async fn user(s: &Shared, user_id: &str) -> Result<Option<User>, BackendError> {
    if let Some(user) = s.users.get(user_id) {
        return Ok(Some(user));
    }
    let mut c = redis::cmd("HMGET");
    c.arg(s.keys.user(user_id))
        .arg("created_at")
        .arg("username");
    let (created, username): (Option<String>, Option<String>) = s.redis.query("user", &c).await?;
    let user = created.map(|_| User {
        user_id: user_id.to_owned(),
        username,
    });
    if let Some(user) = &user {
        s.users.insert(user);
    }
    Ok(user)
}

/// Returns the user, creating it without name or password if unknown.
pub(crate) async fn ensure_user(s: &Shared, user_id: &str) -> Result<User, BackendError> {
    let key = s.keys.user(user_id);
    let mut p = Batch::new();
    p.cmd("HSETNX")
        .arg(&key)
        .arg("created_at")
        .arg(now_ms())
        .ignore()
        .cmd("HGET")
        .arg(&key)
        .arg("username");
    let (username,): (Option<String>,) = s.redis.batch("ensure_user", &p).await?;
    let user = User {
        user_id: user_id.to_owned(),
        username,
    };
    s.users.insert(&user);
    Ok(user)
}

/// Stores a session; the key expires with the session.
pub(crate) async fn create_session(
    s: &Shared,
    token_hash: &TokenHash,
    session: &AuthSession,
) -> Result<(), BackendError> {
    let key = s.keys.session(token_hash);
    let user_sessions = s.keys.user_sessions(&session.user_id);
    let mut p = Batch::new();
    p.atomic()
        // The user's index of tokens, for revoking them all; expired ones leave it here.
        .cmd("ZREMRANGEBYSCORE")
        .arg(&user_sessions)
        .arg("-inf")
        .arg(now_ms())
        .ignore()
        .cmd("ZADD")
        .arg(&user_sessions)
        .arg(session.expires_at_ms)
        .arg(hex::encode(token_hash))
        .ignore()
        .cmd("HSET")
        .arg(&key)
        .arg("session_id")
        .arg(&session.session_id)
        .arg("user_id")
        .arg(&session.user_id)
        .arg("expires_at")
        .arg(session.expires_at_ms)
        .ignore()
        .cmd("PEXPIREAT")
        .arg(&key)
        .arg(session.expires_at_ms)
        .ignore();
    s.redis.batch::<()>("create_session", &p).await
}

fn parse_session(
    fields: (Option<String>, Option<String>, Option<String>),
) -> Result<Option<AuthSession>, BackendError> {
    match fields {
        (Some(session_id), Some(user_id), Some(expires)) => Ok(Some(AuthSession {
            session_id,
            user_id,
            expires_at_ms: expires
                .parse()
                .map_err(|e| bad_reply("session expiry", e))?,
        })),
        _ => Ok(None),
    }
}

/// Looks up a session.
pub(crate) async fn session(
    s: &Shared,
    token_hash: &TokenHash,
) -> Result<Option<AuthSession>, BackendError> {
    let mut c = redis::cmd("HMGET");
    c.arg(s.keys.session(token_hash))
        .arg("session_id")
        .arg("user_id")
        .arg("expires_at");
    parse_session(s.redis.query("session", &c).await?)
}

/// Deletes a session, returning it if it existed (read and delete in one MULTI).
pub(crate) async fn delete_session(
    s: &Shared,
    token_hash: &TokenHash,
) -> Result<Option<AuthSession>, BackendError> {
    let key = s.keys.session(token_hash);
    let mut p = Batch::new();
    p.atomic()
        .cmd("HMGET")
        .arg(&key)
        .arg("session_id")
        .arg("user_id")
        .arg("expires_at")
        .cmd("DEL")
        .arg(&key)
        .ignore();
    let (fields,): ((Option<String>, Option<String>, Option<String>),) =
        s.redis.batch("delete_session", &p).await?;
    parse_session(fields)
}
