//! Replicated appends: acknowledged means replicated, and only replicated messages are published.
//!
//! Used on Redis Cluster, and on one server when `wait_replicas > 0`. One append is:
//!
//! 1. the append script, which stores the message (idempotency check, seq, stream) but does not
//!    publish it, pipelined with `WAIT <replicas> <timeout>` on the same connection to the
//!    conversation's master: one round trip;
//! 2. if fewer replicas than asked confirmed the write: `Unavailable`. The message stays stored
//!    and unpublished; a retry with the same `client_msg_id` finds it (the script then writes a
//!    marker so that the retry's WAIT covers the original write too) and goes on to step 3;
//! 3. the confirm script publishes, in seq order, every message of the conversation up to this
//!    seq that is not yet published (`rseq` in the head), and moves `rseq`. A replica that holds
//!    seq N holds every seq below it, so everything published is replicated, and the publication
//!    order stays the seq order even when two publishers' WAITs return out of order.
//!
//! A direct message's two copies live in different slots (the recipient's and the sender's
//! streams), so they are two appends: the recipient's copy first (with the client's
//! idempotency key), then the sender's copy, whose own idempotency key is the message id. The
//! call answers only when both are replicated. If the node dies between the two, the
//! recipient has the message and the sender's copy is missing until the client retries with the
//! same `client_msg_id`: the retry finds the recipient's copy and adds the sender's once.

use crate::Shared;
use crate::broker::{Prepared, finish, noted, prepare_with};
use crate::error::bad_reply;
use redis::Value;
use switchboard_core::backend::{AppendRequest, Appended, BackendError};
use switchboard_proto::Conv;

/// The idempotency owner of a direct message's sender copy (keyed by the message id).
const COPY_OWNER: &str = "@copy";

/// Stores, waits for replication, publishes: see the module doc.
pub(crate) async fn append(s: &Shared, req: AppendRequest) -> Result<Appended, BackendError> {
    let copy_to = req.copy_to.clone();
    let primary = AppendRequest {
        copy_to: None,
        ..req.clone()
    };
    let idem = req
        .client_msg_id
        .as_ref()
        .map(|cmid| s.keys.idem(&req.conv, &req.idempotency_owner, cmid));
    let message_id = switchboard_proto::ids::new_id("m");
    let p = prepare_with(s, &primary, message_id, crate::now_ms(), idem, false);
    let mut first = store_replicated(s, primary, p).await?;
    let Some(copy) = copy_to else {
        return Ok(first);
    };
    // The sender's copy: same message id, time and body, its own seq.
    let receipt = first.receipt.clone();
    let copy_req = AppendRequest {
        conv: copy.clone(),
        copy_to: None,
        ..req
    };
    let idem = s.keys.idem(&copy, COPY_OWNER, &receipt.message_id);
    let p = prepare_with(
        s,
        &copy_req,
        receipt.message_id.clone(),
        receipt.ts,
        Some(idem),
        false,
    );
    let second = store_replicated(s, copy_req, p).await?;
    if !first.stored.is_empty() {
        first.stored.extend(second.stored);
    }
    Ok(first)
}

/// One conversation's append, WAIT and publication.
async fn store_replicated(
    s: &Shared,
    req: AppendRequest,
    p: Prepared,
) -> Result<Appended, BackendError> {
    let conv = req.conv.clone();
    let (reply, acks) = append_and_wait(s, &p).await?;
    let appended = finish(req, p.message_id, reply)?;
    let wanted = s.config.wait_replicas;
    if acks < i64::from(wanted) {
        return Err(BackendError::Unavailable(format!(
            "message {} of {conv} was stored but only {acks} of {wanted} replicas confirmed it \
             within {} ms; retry with the same client_msg_id",
            appended.receipt.seq,
            s.config.wait_timeout.as_millis()
        )));
    }
    confirm(s, &conv, appended.receipt.seq).await?;
    noted(s, &appended).await;
    Ok(appended)
}

/// Attempts of [`append_and_wait`] while the script is refused (topology changing).
const ATTEMPTS: u32 = 5;

/// The append script and `WAIT`, pipelined on one connection: when both answer, the WAIT ran
/// on the node that ran the script, right after it, whatever the cluster client's routing
/// believed. When the script is refused (MOVED, ASK, TRYAGAIN, a replica, a missing script)
/// it did not run, so it is tried again (a few times, after the client learnt the new
/// topology). Any other failure leaves the outcome unknown: `Unavailable`, and the client
/// retries with its `client_msg_id`.
async fn append_and_wait(s: &Shared, p: &Prepared) -> Result<(Value, i64), BackendError> {
    let wait_ms = u64::try_from(s.config.wait_timeout.as_millis()).unwrap_or(u64::MAX);
    let mut last = String::new();
    for attempt in 0..ATTEMPTS {
        let mut pipe = redis::pipe();
        pipe.ignore_errors();
        pipe.cmd("EVALSHA")
            .arg(s.scripts.append.get_hash())
            .arg(p.keys.len())
            .arg(&p.keys)
            .arg(&p.args);
        pipe.cmd("WAIT").arg(s.config.wait_replicas).arg(wait_ms);
        let replies: Vec<redis::RedisResult<Value>> = s.redis.pipe("append", &pipe).await?;
        let mut it = replies.into_iter();
        match (it.next(), it.next()) {
            (Some(Ok(reply)), Some(Ok(Value::Int(acks)))) => return Ok((reply, acks)),
            (Some(Err(e)), _) if is_noscript(&e) => {
                for (name, script) in s.scripts.all() {
                    s.redis
                        .load(&format!("loading script {name}"), script)
                        .await?;
                }
            }
            (Some(Err(e)), _) if crate::error::is_transient(&e) || is_misrouted(&e) => {
                last = e.to_string();
                // A plain command on the slot lets the cluster client follow the redirect and
                // refresh its slot map before the next attempt.
                let mut c = redis::cmd("EXISTS");
                c.arg(&p.keys[0]);
                let _ = s.redis.query::<i64>("finding the slot's master", &c).await;
                tokio::time::sleep(std::time::Duration::from_millis(
                    50 * u64::from(attempt + 1),
                ))
                .await;
            }
            (Some(Err(e)), _) => return Err(crate::error::map(s.redis.url(), "append", e)),
            other => {
                return Err(BackendError::Unavailable(format!(
                    "append: stored, but its replication is unknown ({other:?}); retry with the \
                     same client_msg_id"
                )));
            }
        }
    }
    Err(BackendError::Unavailable(format!(
        "append: the conversation's slot is moving or failing over ({last})"
    )))
}

/// A write refused because the node is not (or no longer) the slot's master.
fn is_misrouted(e: &redis::RedisError) -> bool {
    matches!(
        e.kind(),
        redis::ErrorKind::Server(
            redis::ServerErrorKind::Moved
                | redis::ServerErrorKind::Ask
                | redis::ServerErrorKind::ReadOnly
        )
    ) || e.to_string().contains("replica")
}

fn is_noscript(e: &redis::RedisError) -> bool {
    e.kind() == redis::ErrorKind::Server(redis::ServerErrorKind::NoScript)
}

/// Publishes what is stored up to `seq` and not yet published.
pub(crate) async fn confirm(s: &Shared, conv: &Conv, seq: u64) -> Result<(), BackendError> {
    let keys = [s.keys.meta(conv), s.keys.log(conv)];
    let publish = if s.redis.is_cluster() {
        "SPUBLISH"
    } else {
        "PUBLISH"
    };
    let args = [seq.to_string(), s.keys.channel(conv), publish.to_owned()];
    let n: i64 = s
        .redis
        .eval(
            "publishing a replicated message",
            &s.scripts.confirm,
            &keys,
            &args,
        )
        .await?;
    if n < 0 {
        return Err(bad_reply(
            "confirm",
            format!("{conv}: seq {seq} is beyond the head (lost in a failover)"),
        ));
    }
    Ok(())
}
