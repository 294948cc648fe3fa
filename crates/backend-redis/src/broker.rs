//! Messages: append (one atomic script: idempotency, seq, stream, publish), history pages from
//! the stream, positions, and control broadcasts.
//!
//! The message JSON is built by the script from pieces prepared here around `seq` and `ts`, so
//! the body is never parsed in Lua and the bytes stored, published and read back are the same.

use crate::error::bad_reply;
use crate::{Shared, now_ms};
use redis::Value;
use std::sync::Arc;
use switchboard_core::backend::{
    AppendRequest, Appended, BackendError, ControlEvent, HistoryQuery, Position, Receipt,
};
use switchboard_proto::{Conv, Message};

/// Idempotency keys are kept at least this long (7 days), or as long as history when the age
/// limit is longer (the embedded backend's rule).
const IDEMPOTENCY_MIN_RETENTION_MS: u64 = 7 * 24 * 3600 * 1000;

/// The most messages one history read returns.
pub(crate) const HISTORY_MAX_LIMIT: u32 = 500;

/// One append, ready to send: the script's keys and arguments.
///
/// Keys: `meta1, log1, [meta2, log2], [idem]`. Arguments: `now, maxlen, epoch candidate,
/// idem ttl (s), has_copy, has_idem, mid, post, receipt prefix, ch1, pre1, ch2, pre2`, where a
/// message's JSON is `pre + seq + mid + ts + post`.
pub(crate) struct Prepared {
    /// The script's keys.
    pub keys: Vec<String>,
    /// Its arguments.
    pub args: Vec<String>,
    /// The new message's id.
    pub message_id: String,
}

fn json_str(s: &str) -> String {
    serde_json::Value::String(s.to_owned()).to_string()
}

fn json_opt(s: &Option<String>) -> String {
    s.as_deref().map_or_else(|| "null".to_owned(), json_str)
}

/// `{"conv":"<conv>","seq":` — the start of a message of `conv`.
fn message_prefix(conv: &Conv) -> String {
    format!("{{\"conv\":{},\"seq\":", json_str(conv.as_str()))
}

fn prepare(s: &Shared, req: &AppendRequest) -> Prepared {
    let message_id = switchboard_proto::ids::new_id("m");
    let idem = req
        .client_msg_id
        .as_ref()
        .map(|cmid| s.keys.idem(&req.conv, &req.idempotency_owner, cmid));
    prepare_with(s, req, message_id, now_ms(), idem, !s.replicated)
}

/// [`prepare`] with a given message id, time, idempotency key and whether the script publishes
/// (replicated mode publishes later, see [`crate::replicated`]).
pub(crate) fn prepare_with(
    s: &Shared,
    req: &AppendRequest,
    message_id: String,
    now: u64,
    idem: Option<String>,
    publish: bool,
) -> Prepared {
    let k = &s.keys;
    let idem_ttl_s = IDEMPOTENCY_MIN_RETENTION_MS
        .max(s.config.history_max_age_ms)
        .div_ceil(1000);
    let mid = format!(
        ",\"message_id\":{},\"from\":{},\"to\":{},\"ts\":",
        json_str(&message_id),
        json_opt(&req.from),
        json_opt(&req.to)
    );
    let post = format!(
        ",\"client_msg_id\":{},\"body\":{}}}",
        json_opt(&req.client_msg_id),
        req.body.get()
    );
    let receipt_prefix = format!(
        "{{\"conv\":{},\"message_id\":{},\"seq\":",
        json_str(req.conv.as_str()),
        json_str(&message_id)
    );
    let mut keys = vec![k.meta(&req.conv), k.log(&req.conv)];
    let (ch2, pre2) = match &req.copy_to {
        Some(copy) => {
            keys.push(k.meta(copy));
            keys.push(k.log(copy));
            (k.channel(copy), message_prefix(copy))
        }
        None => (String::new(), String::new()),
    };
    let has_idem = idem.is_some();
    keys.extend(idem);
    let flag = |b: bool| if b { "1" } else { "0" }.to_owned();
    let args = vec![
        now.to_string(),
        s.config.history_max_messages.to_string(),
        new_epoch(),
        idem_ttl_s.to_string(),
        flag(req.copy_to.is_some()),
        flag(has_idem),
        mid,
        post,
        receipt_prefix,
        k.channel(&req.conv),
        message_prefix(&req.conv),
        ch2,
        pre2,
        flag(publish),
    ];
    Prepared {
        keys,
        args,
        message_id,
    }
}

/// A fresh random epoch.
pub(crate) fn new_epoch() -> String {
    format!("{:016x}", switchboard_proto::ids::random_u64())
}

pub(crate) fn as_u64(v: &Value) -> Option<u64> {
    match v {
        Value::Int(n) => u64::try_from(*n).ok(),
        Value::BulkString(b) => std::str::from_utf8(b).ok()?.parse().ok(),
        Value::SimpleString(s) => s.parse().ok(),
        _ => None,
    }
}

/// Turns the script's reply into the answer.
pub(crate) fn finish(
    req: AppendRequest,
    message_id: String,
    reply: Value,
) -> Result<Appended, BackendError> {
    let items = match reply {
        Value::Array(items) => items,
        other => return Err(bad_reply("append", format!("{other:?}"))),
    };
    match items.as_slice() {
        [Value::Int(0), Value::BulkString(receipt)] => {
            let receipt: Receipt = serde_json::from_slice(receipt)
                .map_err(|e| bad_reply("append (stored receipt)", e))?;
            Ok(Appended {
                receipt,
                stored: Vec::new(),
            })
        }
        [Value::Int(1), seq1, ts, seq2] => {
            let (Some(seq1), Some(ts), Some(seq2)) = (as_u64(seq1), as_u64(ts), as_u64(seq2))
            else {
                return Err(bad_reply("append", format!("{items:?}")));
            };
            let message = |conv: Conv, seq: u64| {
                Arc::new(Message {
                    conv,
                    seq,
                    message_id: message_id.clone(),
                    from: req.from.clone(),
                    to: req.to.clone(),
                    ts,
                    client_msg_id: req.client_msg_id.clone(),
                    body: req.body.clone(),
                    encoded: Default::default(),
                })
            };
            let mut stored = vec![message(req.conv.clone(), seq1)];
            if let Some(copy) = &req.copy_to {
                stored.push(message(copy.clone(), seq2));
            }
            Ok(Appended {
                receipt: Receipt {
                    conv: req.conv.clone(),
                    seq: seq1,
                    message_id: message_id.clone(),
                    ts,
                },
                stored,
            })
        }
        _ => Err(bad_reply("append", format!("{items:?}"))),
    }
}

/// Notes the conversations of a fresh append for age trimming.
pub(crate) async fn noted(s: &Shared, appended: &Appended) {
    for m in &appended.stored {
        crate::retention::note(s, &m.conv, m.ts).await;
    }
}

/// Stores and publishes one message (and its copy) with one script call.
///
/// With `copy_to`, both conversations are written by the same call: standalone Redis allows
/// keys of several hash slots in one script. Redis Cluster would need two calls (primary, then
/// copy), losing the atomicity of the pair.
pub(crate) async fn append(s: &Shared, req: AppendRequest) -> Result<Appended, BackendError> {
    if s.replicated {
        return crate::replicated::append(s, req).await;
    }
    let p = prepare(s, &req);
    let reply: Value = s
        .redis
        .eval("append", &s.scripts.append, &p.keys, &p.args)
        .await?;
    let appended = finish(req, p.message_id, reply)?;
    noted(s, &appended).await;
    Ok(appended)
}

/// Stores many in one round trip (a pipeline of script calls, run in order).
pub(crate) async fn append_many(
    s: &Shared,
    requests: Vec<AppendRequest>,
) -> Vec<Result<Appended, BackendError>> {
    if requests.len() <= 1 || s.replicated {
        let mut out = Vec::with_capacity(requests.len());
        for r in requests {
            out.push(append(s, r).await);
        }
        return out;
    }
    let prepared: Vec<Prepared> = requests.iter().map(|r| prepare(s, r)).collect();
    let mut pipe = redis::pipe();
    pipe.ignore_errors();
    for p in &prepared {
        pipe.cmd("EVALSHA")
            .arg(s.scripts.append.get_hash())
            .arg(p.keys.len())
            .arg(&p.keys)
            .arg(&p.args);
    }
    let replies: Vec<redis::RedisResult<Value>> = match s.redis.pipe("append_many", &pipe).await {
        Ok(r) => r,
        Err(e) => return requests.iter().map(|_| Err(e.clone())).collect(),
    };
    if replies.len() != requests.len() {
        let e = bad_reply("append_many", format!("{} replies", replies.len()));
        return requests.iter().map(|_| Err(e.clone())).collect();
    }
    let mut out = Vec::with_capacity(requests.len());
    for ((req, p), reply) in requests.into_iter().zip(prepared).zip(replies) {
        let answer = match reply {
            Ok(v) => finish(req, p.message_id, v),
            // The script was not loaded (Redis restarted): that call did not run; run it alone,
            // which loads the script.
            Err(e) if e.kind() == redis::ErrorKind::Server(redis::ServerErrorKind::NoScript) => {
                append(s, req).await
            }
            Err(e) => Err(crate::error::map(s.redis.url(), "append_many", e)),
        };
        if let Ok(a) = &answer {
            noted(s, a).await;
        }
        out.push(answer);
    }
    out
}

/// Stream id of a seq (entries are `<seq>-1`; `<seq>-0` sorts just before it).
fn id0(seq: u64) -> String {
    format!("{seq}-0")
}

/// Parses XRANGE / XREVRANGE entries into messages.
pub(crate) fn parse_entries(conv: &Conv, v: Value) -> Result<Vec<Arc<Message>>, BackendError> {
    let Value::Array(entries) = v else {
        return Err(bad_reply("XRANGE", format!("{v:?}")));
    };
    let mut out = Vec::with_capacity(entries.len());
    for e in entries {
        let Value::Array(mut parts) = e else {
            return Err(bad_reply("XRANGE entry", format!("{e:?}")));
        };
        let fields = match parts.pop() {
            Some(Value::Array(f)) => f,
            other => return Err(bad_reply("XRANGE entry fields", format!("{other:?}"))),
        };
        let mut json = None;
        for pair in fields.chunks(2) {
            if let [Value::BulkString(name), Value::BulkString(value)] = pair
                && name.as_slice() == b"m"
            {
                json = Some(value);
            }
        }
        let Some(json) = json else {
            return Err(bad_reply("XRANGE entry", "no `m` field"));
        };
        let m: Message = serde_json::from_slice(json).map_err(|e| {
            BackendError::Internal(format!("a stored message of {conv} is not valid: {e}"))
        })?;
        out.push(Arc::new(m));
    }
    Ok(out)
}

/// A page of history, ascending seq (the embedded backend's rules: after, before, both,
/// neither; the limit clamped to 1..=500).
pub(crate) async fn history(
    s: &Shared,
    conv: &Conv,
    q: HistoryQuery,
) -> Result<Vec<Arc<Message>>, BackendError> {
    let limit = q.limit.clamp(1, HISTORY_MAX_LIMIT);
    let log = s.keys.log(conv);
    let (cmd, descending) = match (q.after, q.before) {
        (Some(after), before) => {
            let Some(start) = after.checked_add(1) else {
                return Ok(Vec::new());
            };
            let end = before.map_or_else(|| "+".to_owned(), id0);
            let mut c = redis::cmd("XRANGE");
            c.arg(&log).arg(id0(start)).arg(end).arg("COUNT").arg(limit);
            (c, false)
        }
        (None, Some(before)) => {
            let mut c = redis::cmd("XREVRANGE");
            c.arg(&log)
                .arg(id0(before))
                .arg("-")
                .arg("COUNT")
                .arg(limit);
            (c, true)
        }
        (None, None) => {
            let mut c = redis::cmd("XREVRANGE");
            c.arg(&log).arg("+").arg("-").arg("COUNT").arg(limit);
            (c, true)
        }
    };
    let v: Value = s.redis.query("history", &cmd).await?;
    let mut out = parse_entries(conv, v)?;
    if descending {
        out.reverse();
    }
    Ok(out)
}

/// Messages of `conv` with seq in `from..until` (`until` exclusive, `None` = to the head), at
/// most `count`, ascending. Used by the pub/sub task to fill gaps.
pub(crate) async fn range(
    s: &Shared,
    conv: &Conv,
    from: u64,
    until: Option<u64>,
    count: usize,
) -> Result<Vec<Arc<Message>>, BackendError> {
    let mut c = redis::cmd("XRANGE");
    c.arg(s.keys.log(conv))
        .arg(id0(from))
        .arg(until.map_or_else(|| "+".to_owned(), id0))
        .arg("COUNT")
        .arg(count);
    let v: Value = s.redis.query("reading a gap", &c).await?;
    parse_entries(conv, v)
}

/// Head, oldest stored seq and epoch, read atomically; the epoch is made on first use.
pub(crate) async fn position(s: &Shared, conv: &Conv) -> Result<Position, BackendError> {
    let keys = [s.keys.meta(conv), s.keys.log(conv)];
    let (head_seq, epoch, oldest_seq): (u64, String, u64) = s
        .redis
        .eval("position", &s.scripts.position, &keys, &[new_epoch()])
        .await?;
    Ok(Position {
        epoch,
        head_seq,
        oldest_seq,
    })
}

/// Publishes a control event on the control channel; every node's pub/sub task (this one's
/// included) hands it to its sink.
pub(crate) async fn broadcast(s: &Shared, event: &ControlEvent) -> Result<(), BackendError> {
    let json = serde_json::to_string(event)
        .map_err(|e| BackendError::Internal(format!("encoding a control event: {e}")))?;
    let mut c = redis::cmd("PUBLISH");
    c.arg(s.keys.control()).arg(json);
    let _receivers: i64 = s.redis.query("broadcast", &c).await?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pieces_make_the_message_json() {
        let conv = Conv::room("r\"1");
        let pre = message_prefix(&conv);
        let mid = format!(
            ",\"message_id\":{},\"from\":{},\"to\":{},\"ts\":",
            json_str("m_1"),
            json_opt(&Some("u\n1".into())),
            json_opt(&None)
        );
        let post = format!(
            ",\"client_msg_id\":{},\"body\":{}}}",
            json_opt(&None),
            r#"{"a":[1,2]}"#
        );
        let json = format!("{pre}7{mid}123{post}");
        let m: Message = serde_json::from_str(&json).expect("valid message JSON");
        assert_eq!(m.conv, conv);
        assert_eq!((m.seq, m.ts), (7, 123));
        assert_eq!(m.from.as_deref(), Some("u\n1"));
        assert_eq!(m.to, None);
        assert_eq!(m.body.get(), r#"{"a":[1,2]}"#);
    }
}
