//! Revoking every token of a user, password changes, and the one-time indexing of the
//! usernames older versions wrote.
//!
//! Each user's tokens are listed in `usersessions:<user>` (a zset of token-hash hex scored by
//! expiry), written with the session. The first start of this version adds the sessions an
//! older version wrote ([`index_user_sessions`]); sessions that nodes of an older version still
//! make during a rolling upgrade are not indexed (see docs/SECURITY.md).

use crate::batch::Batch;
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
    let mut p = Batch::new();
    for h in &hexes {
        p.cmd("HGET").arg(s.keys.session_hex(h)).arg("session_id");
    }
    let ids: Vec<Option<String>> = s.redis.batch("delete_user_sessions", &p).await?;
    let (mut deleted, mut doomed) = (Vec::new(), 0);
    let mut p = Batch::new();
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
        s.redis.batch::<()>("delete_user_sessions", &p).await?;
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
    if already_done(s, &done).await? {
        return Ok(());
    }
    let prefix = s.keys.username("");
    let (mut cursor, mut indexed, mut collisions) = (0u64, 0u64, 0u64);
    loop {
        let names;
        (cursor, names) = scan_step(s, &prefix, cursor).await?;
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
    mark_done(s, &done).await?;
    if indexed + collisions > 0 {
        tracing::info!(
            indexed,
            collisions,
            "redis backend: indexed older usernames by key"
        );
    }
    Ok(())
}

/// Adds every session an older version stored to its user's index, once per database (a marker
/// key records it). Safe to run from several nodes at once (ZADD of the same member).
pub(crate) async fn index_user_sessions(s: &Shared) -> Result<(), BackendError> {
    let done = s.keys.user_sessions_done();
    if already_done(s, &done).await? {
        return Ok(());
    }
    let prefix = s.keys.session_hex("");
    let (mut cursor, mut indexed) = (0u64, 0u64);
    loop {
        let keys;
        (cursor, keys) = scan_step(s, &prefix, cursor).await?;
        if !keys.is_empty() {
            let mut p = Batch::new();
            for k in &keys {
                p.cmd("HMGET").arg(k).arg("user_id").arg("expires_at");
            }
            let found: Vec<(Option<String>, Option<u64>)> =
                s.redis.batch("index_user_sessions", &p).await?;
            let (mut p, before) = (Batch::new(), indexed);
            for (k, (user, expires)) in keys.iter().zip(found) {
                let (Some(user), Some(expires), Some(hex)) =
                    (user, expires, k.strip_prefix(&prefix))
                else {
                    continue;
                };
                p.cmd("ZADD")
                    .arg(s.keys.user_sessions(&user))
                    .arg(expires)
                    .arg(hex)
                    .ignore();
                indexed += 1;
            }
            if indexed > before {
                s.redis.batch::<()>("index_user_sessions", &p).await?;
            }
        }
        if cursor == 0 {
            break;
        }
    }
    mark_done(s, &done).await?;
    if indexed > 0 {
        tracing::info!(indexed, "redis backend: indexed older sessions by user");
    }
    Ok(())
}

/// Whether the one-time job whose marker key is `marker` already ran on this database.
async fn already_done(s: &Shared, marker: &str) -> Result<bool, BackendError> {
    let mut c = redis::cmd("EXISTS");
    c.arg(marker);
    Ok(s.redis.query::<i64>("one-time index", &c).await? == 1)
}

/// Records that the one-time job of `marker` ran.
async fn mark_done(s: &Shared, marker: &str) -> Result<(), BackendError> {
    let mut c = redis::cmd("SET");
    c.arg(marker).arg(now_ms());
    s.redis.query::<()>("one-time index", &c).await
}

/// One SCAN step over the keys that start with `prefix`: the next cursor (0 at the end) and
/// the keys found.
async fn scan_step(
    s: &Shared,
    prefix: &str,
    cursor: u64,
) -> Result<(u64, Vec<String>), BackendError> {
    let mut c = redis::cmd("SCAN");
    c.arg(cursor)
        .arg("MATCH")
        .arg(format!("{}*", glob_escape(prefix)))
        .arg("COUNT")
        .arg(1000);
    let (next, keys): (String, Vec<String>) = s.redis.query("one-time index", &c).await?;
    let next = next.parse().map_err(|e| bad_reply("SCAN cursor", e))?;
    Ok((next, keys))
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
