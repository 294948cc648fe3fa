//! Delivery in seq order: forwarding pub/sub messages, reading a gap from the stream before
//! the message after it, and delivering what was missed after a reconnect.

use super::{FILL_BATCH, Interest, RESUME_CHUNK};
use crate::batch::Batch;
use crate::{Shared, broker};
use redis::Msg;
use std::sync::Arc;
use switchboard_core::backend::{BackendError, ControlEvent};
use switchboard_proto::{Conv, Message};

/// After a reconnect: for every conversation of interest, delivers what was stored after the
/// last seq delivered. The first page of every conversation is read in pipelines of
/// [`RESUME_CHUNK`] conversations, so a node with many conversations resumes in few round trips.
pub(super) async fn resume_all(s: &Shared, interest: &mut Interest) -> Result<(), BackendError> {
    let convs: Vec<(Conv, u64)> = interest.last.iter().map(|(c, l)| (c.clone(), *l)).collect();
    for chunk in convs.chunks(RESUME_CHUNK) {
        let mut p = Batch::new();
        for (conv, last) in chunk {
            p.cmd("HGET").arg(s.keys.meta(conv)).arg("seq");
            p.cmd("XRANGE")
                .arg(s.keys.log(conv))
                .arg(format!("{}-0", last + 1))
                .arg("+")
                .arg("COUNT")
                .arg(FILL_BATCH);
        }
        let replies: Vec<redis::Value> = s.redis.batch("resuming subscriptions", &p).await?;
        if replies.len() != chunk.len() * 2 {
            return Err(crate::error::bad_reply(
                "resuming subscriptions",
                format!("{} replies", replies.len()),
            ));
        }
        let mut replies = replies.into_iter();
        for (conv, last) in chunk {
            let (Some(head), Some(page)) = (replies.next(), replies.next()) else {
                break;
            };
            let head: Option<u64> = redis::from_redis_value(head)
                .map_err(|e| crate::error::bad_reply("HGET seq", e))?;
            if head.unwrap_or(0) < *last {
                tracing::warn!(%conv, last, "conversation seq restarted (history lost); delivering it from the start");
                interest.last.insert(conv.clone(), 0);
                catch_up(s, interest, conv, None).await?;
                continue;
            }
            let page = broker::parse_entries(conv, page)?;
            let full = page.len() >= FILL_BATCH;
            deliver_after(s, interest, conv, page);
            if full {
                catch_up(s, interest, conv, None).await?;
            }
        }
    }
    Ok(())
}

/// Delivers the messages of `page` that come after the last one delivered, in order, together
/// (a subscriber gets them in one write).
fn deliver_after(s: &Shared, interest: &mut Interest, conv: &Conv, page: Vec<Arc<Message>>) {
    let Some(last) = interest.last.get_mut(conv) else {
        return;
    };
    let mut out = Vec::with_capacity(page.len());
    for m in page {
        if m.seq > *last {
            *last = m.seq;
            out.push(m);
        }
    }
    flush(s, &mut out);
}

/// Hands the gathered messages to the sink together.
pub(crate) fn flush(s: &Shared, out: &mut Vec<Arc<Message>>) {
    match out.len() {
        0 => {}
        1 => s.sink.deliver(out.pop().expect("one")),
        _ => s.sink.deliver_all(std::mem::take(out)),
    }
}

/// Delivers the stored messages of `conv` after the last one delivered, up to `until`
/// (exclusive) or the head, a page at a time.
pub(crate) async fn catch_up(
    s: &Shared,
    interest: &mut Interest,
    conv: &Conv,
    until: Option<u64>,
) -> Result<(), BackendError> {
    loop {
        let Some(last) = interest.last.get(conv).copied() else {
            return Ok(());
        };
        let page = broker::range(s, conv, last + 1, until, FILL_BATCH).await?;
        let n = page.len();
        deliver_after(s, interest, conv, page);
        if n < FILL_BATCH {
            return Ok(());
        }
    }
}

/// Forwards one pub/sub message, leaving a message that is simply next in `out` for the caller
/// to deliver with the others read at once ([`flush`]). What `out` holds is delivered first
/// whenever something must not wait behind it or overtake it: a control event, or a gap's
/// catch-up. `Err` when a gap could not be filled (the caller reconnects, or repairs the
/// channel, which fills it from the last delivered seq).
pub(crate) async fn gather_message(
    s: &Shared,
    interest: &mut Interest,
    control: &str,
    msg: Msg,
    out: &mut Vec<Arc<Message>>,
) -> Result<(), BackendError> {
    let channel = msg.get_channel_name();
    if channel == control {
        match serde_json::from_slice::<ControlEvent>(msg.get_payload_bytes()) {
            Ok(event) => {
                flush(s, out);
                s.sink.control(event)
            }
            Err(e) => tracing::warn!(error = %e, "ignoring a malformed control event"),
        }
        return Ok(());
    }
    let Some(conv) = interest.channels.get(channel).cloned() else {
        // Unsubscribed meanwhile.
        return Ok(());
    };
    let m: Message = match serde_json::from_slice(msg.get_payload_bytes()) {
        Ok(m) => m,
        Err(e) => {
            tracing::warn!(%conv, error = %e, "ignoring a malformed published message");
            return Ok(());
        }
    };
    if m.conv != conv {
        tracing::warn!(%conv, got = %m.conv, "ignoring a message published on another conversation's channel");
        return Ok(());
    }
    let last = interest.last.get(&conv).copied().unwrap_or(0);
    if m.seq <= last {
        return Ok(());
    }
    if m.seq > last + 1 {
        flush(s, out);
        catch_up(s, interest, &conv, Some(m.seq)).await?;
    }
    interest.last.insert(conv, m.seq);
    out.push(Arc::new(m));
    Ok(())
}
