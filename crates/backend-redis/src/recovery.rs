//! Connection-state recovery records in Redis: one string key per record, `owner` `\n` `value`,
//! with a time to live. Guarded writes and owner-checked deletes are scripts, so the check and
//! the write are one atomic step on the key's shard (two nodes taking over one record cannot
//! both win). A value stored before records had owners (no `\n` in it) reads as owned by `""`.

use crate::Shared;
use crate::batch;
use std::time::Duration;
use switchboard_core::backend::{BackendError, RecoveryGuard, RecoveryRecord};

/// Stores `ARGV[1]` (the record's text, owner first) under `KEYS[1]` for `ARGV[2]` ms when the
/// guard allows it: `ARGV[3]` is `a` (always), `o` (only when `ARGV[4]` owns the record) or `x`
/// (when `ARGV[4]` owns it or there is none). Returns 1 when stored, 0 when not.
pub(crate) const PUT_LUA: &str = r#"
if ARGV[3] ~= 'a' then
  local cur = redis.call('GET', KEYS[1])
  if cur then
    if (string.match(cur, '^([^\n]*)\n') or '') ~= ARGV[4] then return 0 end
  elseif ARGV[3] == 'o' then
    return 0
  end
end
redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
return 1
"#;

/// Deletes `KEYS[1]` when `ARGV[1]` owns it. Returns 1 when deleted, 0 when not.
pub(crate) const DELETE_LUA: &str = r#"
local cur = redis.call('GET', KEYS[1])
if not cur then return 0 end
if (string.match(cur, '^([^\n]*)\n') or '') ~= ARGV[1] then return 0 end
redis.call('DEL', KEYS[1])
return 1
"#;

/// A record's stored text: its owner, a newline, its value.
fn encode(owner: &str, value: &str) -> String {
    let mut text = String::with_capacity(owner.len() + 1 + value.len());
    text.push_str(owner);
    text.push('\n');
    text.push_str(value);
    text
}

/// A record from its stored text (see [`encode`]; text without a newline is a record from
/// before owners, owned by `""`).
fn decode(text: String) -> RecoveryRecord {
    match text.split_once('\n') {
        Some((owner, value)) => RecoveryRecord {
            owner: owner.to_owned(),
            value: value.to_owned(),
        },
        None => RecoveryRecord {
            owner: String::new(),
            value: text,
        },
    }
}

/// `Registry::put_recovery`.
pub(crate) async fn put(
    s: &Shared,
    key: &str,
    owner: &str,
    value: &str,
    ttl: Duration,
    guard: RecoveryGuard<'_>,
) -> Result<bool, BackendError> {
    if owner.contains('\n') {
        return Err(BackendError::Internal(
            "a recovery record's owner has a newline".into(),
        ));
    }
    let (mode, expected) = match guard {
        RecoveryGuard::Always => ("a", ""),
        RecoveryGuard::OwnedBy(o) => ("o", o),
        RecoveryGuard::OwnedByOrAbsent(o) => ("x", o),
    };
    let ms = ttl.as_millis().max(1).to_string();
    let text = encode(owner, value);
    let args = [text.as_str(), ms.as_str(), mode, expected];
    let stored: i64 = s
        .redis
        .eval(
            "put_recovery",
            &s.scripts.put_recovery,
            &[s.keys.recovery(key)],
            &args,
        )
        .await?;
    Ok(stored == 1)
}

/// `Registry::recovery`.
pub(crate) async fn get(s: &Shared, key: &str) -> Result<Option<RecoveryRecord>, BackendError> {
    let mut cmd = redis::cmd("GET");
    cmd.arg(s.keys.recovery(key));
    let text: Option<String> = s.redis.query("recovery", &cmd).await?;
    Ok(text.map(decode))
}

/// `Registry::touch_recoveries`.
pub(crate) async fn touch(s: &Shared, keys: &[String], ttl: Duration) -> Result<(), BackendError> {
    let ms = ttl.as_millis().max(1) as u64;
    // One round trip per batch (per slot on a cluster, where the records spread over
    // slots); a key that expired meanwhile stays gone (PEXPIRE creates nothing).
    for chunk in keys.chunks(1000) {
        let mut p = batch::Batch::new();
        for k in chunk {
            p.cmd("PEXPIRE").arg(s.keys.recovery(k)).arg(ms).ignore();
        }
        s.redis.batch::<()>("touch_recoveries", &p).await?;
    }
    Ok(())
}

/// `Registry::delete_recovery`.
pub(crate) async fn delete(s: &Shared, key: &str, owner: &str) -> Result<bool, BackendError> {
    let deleted: i64 = s
        .redis
        .eval(
            "delete_recovery",
            &s.scripts.delete_recovery,
            &[s.keys.recovery(key)],
            &[owner],
        )
        .await?;
    Ok(deleted == 1)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stored_text_round_trips_and_reads_records_from_before_owners() {
        let r = decode(encode("o1", r#"{"user_id":"u"}"#));
        assert_eq!(
            (r.owner.as_str(), r.value.as_str()),
            ("o1", r#"{"user_id":"u"}"#)
        );
        let r = decode(encode("", "a\nb"));
        assert_eq!((r.owner.as_str(), r.value.as_str()), ("", "a\nb"));
        let r = decode(r#"{"user_id":"u"}"#.to_owned());
        assert_eq!(
            (r.owner.as_str(), r.value.as_str()),
            ("", r#"{"user_id":"u"}"#)
        );
    }
}
