//! Subscribe and unsubscribe requests while connected: a burst shares one pipelined head read
//! and one SUBSCRIBE (or one UNSUBSCRIBE).

use super::{Command, Interest};
use crate::Shared;
use crate::batch::Batch;
use crate::error::{self, is_transient};
use redis::aio::PubSubSink;
use std::time::Instant;
use switchboard_core::backend::BackendError;
use switchboard_proto::Conv;
use tokio::sync::oneshot;

/// Handles requests while connected, in order; consecutive subscribes (and consecutive
/// unsubscribes) share their round trips. `Err` means the connection is in doubt: reconnect.
pub(super) async fn commands(
    s: &Shared,
    interest: &mut Interest,
    sink: &mut PubSubSink,
    batch: Vec<Command>,
) -> Result<(), String> {
    let mut subscribes = Vec::new();
    let mut unsubscribes = Vec::new();
    for cmd in batch {
        match cmd {
            Command::Subscribe {
                conv,
                deadline,
                ack,
            } => {
                if !unsubscribes.is_empty() {
                    unsubscribe(s, interest, sink, std::mem::take(&mut unsubscribes)).await?;
                }
                subscribes.push((conv, deadline, ack));
            }
            Command::Unsubscribe { conv, ack } => {
                if !subscribes.is_empty() {
                    subscribe(s, interest, sink, std::mem::take(&mut subscribes)).await?;
                }
                unsubscribes.push((conv, ack));
            }
        }
    }
    if !subscribes.is_empty() {
        subscribe(s, interest, sink, subscribes).await?;
    }
    if !unsubscribes.is_empty() {
        unsubscribe(s, interest, sink, unsubscribes).await?;
    }
    Ok(())
}

pub(crate) type Ack = oneshot::Sender<Result<(), BackendError>>;

/// The conversations of a batch of subscribe requests still to subscribe, each with who waits
/// for it, in first-asked order. Requests whose caller gave up are answered with a timeout, and
/// those for conversations already received at once.
pub(crate) fn wanted(
    s: &Shared,
    interest: &Interest,
    requests: Vec<(Conv, Instant, Ack)>,
) -> Vec<(Conv, Vec<Ack>)> {
    let now = Instant::now();
    let mut wanted: Vec<(Conv, Vec<Ack>)> = Vec::new();
    for (conv, deadline, ack) in requests {
        if now >= deadline || ack.is_closed() {
            let _ = ack.send(Err(error::timed_out(
                s.redis.url(),
                "subscribe",
                s.redis.timeout(),
            )));
        } else if interest.last.contains_key(&conv) {
            let _ = ack.send(Ok(()));
        } else if let Some((_, acks)) = wanted.iter_mut().find(|(c, _)| *c == conv) {
            acks.push(ack);
        } else {
            wanted.push((conv, vec![ack]));
        }
    }
    wanted
}

/// Subscribes to new conversations: one pipelined head read, then one SUBSCRIBE for all.
async fn subscribe(
    s: &Shared,
    interest: &mut Interest,
    sink: &mut PubSubSink,
    requests: Vec<(Conv, Instant, Ack)>,
) -> Result<(), String> {
    let t = s.redis.timeout();
    let url = s.redis.url();
    let wanted = wanted(s, interest, requests);
    if wanted.is_empty() {
        return Ok(());
    }
    let answer = |wanted: Vec<(Conv, Vec<Ack>)>, r: Result<(), BackendError>| {
        for (_, acks) in wanted {
            for ack in acks {
                let _ = ack.send(r.clone());
            }
        }
    };
    // The heads before subscribing: everything published after the SUBSCRIBE has a higher seq,
    // so it is never taken for a repeat.
    let mut p = Batch::new();
    for (conv, _) in &wanted {
        p.cmd("HGET").arg(s.keys.meta(conv)).arg("seq");
    }
    let heads: Vec<Option<u64>> = match s.redis.batch("reading heads", &p).await {
        Ok(h) => h,
        Err(e) => {
            answer(wanted, Err(e));
            return Ok(());
        }
    };
    let channels: Vec<String> = wanted.iter().map(|(c, _)| s.keys.channel(c)).collect();
    match tokio::time::timeout(t, sink.subscribe(&channels)).await {
        Ok(Ok(())) => {
            for (((conv, _), channel), head) in wanted.iter().zip(channels).zip(heads) {
                interest.add(conv.clone(), channel, head.unwrap_or(0));
            }
            answer(wanted, Ok(()));
            Ok(())
        }
        Ok(Err(e)) => {
            let transient = is_transient(&e);
            let why = format!("SUBSCRIBE failed: {e}");
            answer(wanted, Err(error::map(url, "SUBSCRIBE", e)));
            if transient { Err(why) } else { Ok(()) }
        }
        Err(_) => {
            answer(wanted, Err(error::timed_out(url, "SUBSCRIBE", t)));
            Err("no answer to SUBSCRIBE".into())
        }
    }
}

/// Forgets conversations (answered at once: later messages of them are dropped), then sends one
/// UNSUBSCRIBE for all.
async fn unsubscribe(
    s: &Shared,
    interest: &mut Interest,
    sink: &mut PubSubSink,
    requests: Vec<(Conv, Ack)>,
) -> Result<(), String> {
    let mut channels = Vec::new();
    for (conv, ack) in requests {
        channels.extend(interest.remove(s, &conv));
        let _ = ack.send(Ok(()));
    }
    if channels.is_empty() {
        return Ok(());
    }
    match tokio::time::timeout(s.redis.timeout(), sink.unsubscribe(&channels)).await {
        Ok(Ok(())) => Ok(()),
        Ok(Err(e)) => Err(format!("UNSUBSCRIBE failed: {e}")),
        Err(_) => Err("no answer to UNSUBSCRIBE".into()),
    }
}
