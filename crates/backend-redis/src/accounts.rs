//! Revoking every token of a user, password changes, and the one-time indexing of the
//! usernames older versions wrote.
//!
//! Each user's tokens are listed in `usersessions:<user>` (a zset of token-hash hex scored by
//! expiry), written with the session. Tokens issued by a version before this one are not in it:
//! they are not found by a user-wide revoke and end with their expiry (see docs/SECURITY.md).

use crate::error::bad_reply;
use crate::{Shared, now_ms};
use switchboard_core::backend::BackendError;

/// Deletes every session of `user_id` but the one with session id `except`; returns the ids of
/// those deleted. A session created while this runs may survive it (it was made after the
/// revoke began).
pub(crate) async fn delete_user_sessions(
    s: &Shared,
    user_id: &str,
    except: Option<&str>,
) -> Result<Vec<String>, BackendError> {
    let index = s.keys.user_sessions(user_id);
    let mut c = redis::cmd("ZRANGE");
    c.arg(&index).arg(0).arg(-1);
    let hexes: Vec<String> = s.redis.query("delete_user_sessions", &c).await?;
    if hexes.is_empty() {
        return Ok(Vec::new());
    }
    let mut p = redis::pipe();
    for h in &hexes {
        p.cmd("HGET").arg(s.keys.session_hex(h)).arg("session_id");
    }
    let ids: Vec<Option<String>> = s.redis.pipe("delete_user_sessions", &p).await?;
    let (mut deleted, mut doomed) = (Vec::new(), 0);
    let mut p = redis::pipe();
    p.atomic();
    for (h, id) in hexes.iter().zip(ids) {
        if id.is_some() && id.as_deref() == except {
            continue;
        }
        // Expired entries (no session left) are dropped from the index on the way.
        p.cmd("DEL").arg(s.keys.session_hex(h)).ignore();
        p.cmd("ZREM").arg(&index).arg(h).ignore();
        deleted.extend(id);
        doomed += 1;
    }
    if doomed > 0 {
        s.redis.pipe::<()>("delete_user_sessions", &p).await?;
    }
    Ok(deleted)
}

/// Replaces the password hash of an existing user.
pub(crate) async fn set_password(
    s: &Shared,
    user_id: &str,
    password_hash: &str,
) -> Result<(), BackendError> {
    // `created_at` is set for every user; HSET only if it is, in one step.
    let mut c = redis::cmd("EVAL");
    c.arg(
        "if redis.call('HEXISTS', KEYS[1], 'created_at') == 0 then return 0 end \
         redis.call('HSET', KEYS[1], 'password_hash', ARGV[1]) return 1",
    )
    .arg(1)
    .arg(s.keys.user(user_id))
    .arg(password_hash);
    let set: i64 = s.redis.query("set_password", &c).await?;
    if set == 1 {
        Ok(())
    } else {
        Err(BackendError::NotFound)
    }
}

/// Gives every username an older version stored under its exact spelling an entry under its
/// key too, so that nobody registers `Alice` next to an older `alice`. Runs once per database
/// (a marker key records it); a name whose key an older name holds keeps only its exact entry
/// and is logged. Safe to run from several nodes at once (each entry is set only if absent).
pub(crate) async fn index_username_keys(s: &Shared) -> Result<(), BackendError> {
    let done = s.keys.username_keys_done();
    let mut c = redis::cmd("EXISTS");
    c.arg(&done);
    let marked: i64 = s.redis.query("index_username_keys", &c).await?;
    if marked == 1 {
        return Ok(());
    }
    let prefix = s.keys.username("");
    let (mut cursor, mut indexed, mut collisions) = (0u64, 0u64, 0u64);
    loop {
        let mut c = redis::cmd("SCAN");
        c.arg(cursor)
            .arg("MATCH")
            .arg(format!("{}*", glob_escape(&prefix)))
            .arg("COUNT")
            .arg(1000);
        let (next, names): (String, Vec<String>) = s.redis.query("index_username_keys", &c).await?;
        cursor = next.parse().map_err(|e| bad_reply("SCAN cursor", e))?;
        for full in names {
            let Some(name) = full.strip_prefix(&prefix) else {
                continue;
            };
            let key = switchboard_core::names::username_key(name);
            if key == name {
                continue;
            }
            let mut c = redis::cmd("EVAL");
            c.arg(
                "local id = redis.call('GET', KEYS[1]) if not id then return 2 end \
                 if redis.call('SET', KEYS[2], id, 'NX') then return 1 end \
                 if redis.call('GET', KEYS[2]) == id then return 1 end return 0",
            )
            .arg(2)
            .arg(&full)
            .arg(s.keys.username(&key));
            match s.redis.query::<i64>("index_username_keys", &c).await? {
                1 => indexed += 1,
                0 => {
                    collisions += 1;
                    tracing::warn!(
                        username = %name, key = %key,
                        "redis backend: this username differs from an older one only in case or \
                         form; it keeps working by its exact spelling"
                    );
                }
                _ => {}
            }
        }
        if cursor == 0 {
            break;
        }
    }
    let mut c = redis::cmd("SET");
    c.arg(&done).arg(now_ms());
    s.redis.query::<()>("index_username_keys", &c).await?;
    if indexed + collisions > 0 {
        tracing::info!(
            indexed,
            collisions,
            "redis backend: indexed older usernames by key"
        );
    }
    Ok(())
}

/// `s` with the glob pattern characters escaped.
fn glob_escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        if matches!(c, '*' | '?' | '[' | ']' | '\\') {
            out.push('\\');
        }
        out.push(c);
    }
    out
}
