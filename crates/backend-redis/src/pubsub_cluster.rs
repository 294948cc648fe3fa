//! The bus on Redis Cluster: sharded pub/sub (SSUBSCRIBE), one task as on one server.
//!
//! The task owns a cluster connection in RESP3 whose push messages (messages, subscription
//! confirmations, disconnections) arrive on a channel. Each conversation's channel
//! (`P{<conv>}:ch`) is in its conversation's slot, so it is subscribed on the master that stores
//! it; only the conversations with an interested connection are subscribed, as on one server.
//! Control events stay on classic pub/sub (rare, and every node wants them).
//!
//! What can take a subscription away, and what brings it back:
//! - **a node connection drops** (the master was killed, a network cut): the client library
//!   reconnects and subscribes again by itself, but cannot know about a failover until it asks
//!   the cluster. So on a `Disconnection` push every subscription is marked for repair;
//! - **a slot moves** (resharding, or a master turned replica by a failover): the server sends a
//!   `SUNSUBSCRIBE` push for the channels of that slot and the library forgets them. A
//!   `SUNSUBSCRIBE` for a channel still wanted marks it for repair.
//!
//! Repair runs every [`REPAIR_EVERY`]: it sends `SSUBSCRIBE` again for each marked channel (the
//! library routes it to the slot's current master, following MOVED), and once confirmed reads
//! the conversation's stream after the last seq delivered, so nothing published meanwhile is
//! lost. Every `SSUBSCRIBE` confirmation (also the library's own resubscriptions) triggers the
//! same read. Messages are then deduplicated and gap-filled by seq as on one server.

use crate::conn::Target;
use crate::pubsub::{
    COMMAND_BATCH, Command, DELIVERY_BATCH, Interest, catch_up, flush, gather_message,
};
use crate::{Shared, error};
use redis::cluster_async::ClusterConnection;
use redis::{Msg, PushInfo, PushKind, Value};
use std::collections::HashSet;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};
use switchboard_core::backend::BackendError;
use switchboard_proto::{Conv, Message};
use tokio::sync::{mpsc, oneshot};

/// How often marked subscriptions are repaired.
const REPAIR_EVERY: Duration = Duration::from_millis(250);
/// Channels repaired per round (the rest wait for the next round).
const REPAIR_BATCH: usize = 200;

use crate::pubsub::Ack;

/// The task's state besides the connection.
struct State {
    interest: Interest,
    /// Channels to subscribe again (see the module doc).
    repair: HashSet<String>,
    /// Slot ranges and their masters' addresses, for per-shard counts (refreshed when the
    /// topology changes); empty without a counting hook.
    shards: Vec<(u16, u16, String)>,
    /// The topology changed since `shards` was read.
    shards_stale: bool,
}

/// The task: connect, then serve until cancelled. `up` is answered after the first connection.
pub(crate) async fn run(
    s: Arc<Shared>,
    mut rx: mpsc::UnboundedReceiver<Command>,
    up: oneshot::Sender<Result<(), BackendError>>,
) {
    let (push_tx, mut push_rx) = mpsc::unbounded_channel::<PushInfo>();
    let mut conn = match open(&s, push_tx).await {
        Ok(c) => c,
        Err(e) => {
            let _ = up.send(Err(e));
            return;
        }
    };
    s.health.pubsub_up.store(true, Ordering::SeqCst);
    let _ = up.send(Ok(()));
    let mut st = State {
        interest: Interest::default(),
        repair: HashSet::new(),
        shards: Vec::new(),
        shards_stale: false,
    };
    refresh_shards(&s, &mut st).await;
    let control = s.keys.control();
    let mut tick = tokio::time::interval(REPAIR_EVERY);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = s.cancel.cancelled() => return,
            cmd = rx.recv() => {
                let Some(cmd) = cmd else { return };
                let mut batch = vec![cmd];
                while batch.len() < COMMAND_BATCH {
                    match rx.try_recv() {
                        Ok(cmd) => batch.push(cmd),
                        Err(_) => break,
                    }
                }
                commands(&s, &mut st, &mut conn, batch).await;
            }
            push = push_rx.recv() => {
                let Some(push) = push else { return };
                // The messages already received are delivered together (a subscriber gets a
                // conversation's in one write).
                let mut out = Vec::new();
                on_push(&s, &mut st, &control, push, &mut out).await;
                while out.len() < DELIVERY_BATCH {
                    let Ok(push) = push_rx.try_recv() else { break };
                    on_push(&s, &mut st, &control, push, &mut out).await;
                }
                flush(&s, &mut out);
            }
            _ = tick.tick() => {
                if !st.repair.is_empty() {
                    repair(&s, &mut st, &mut conn).await;
                } else if st.shards_stale {
                    st.shards_stale = false;
                    refresh_shards(&s, &mut st).await;
                }
            }
        }
    }
}

/// The cluster connection for pub/sub, subscribed to the control channel.
async fn open(
    s: &Shared,
    push: mpsc::UnboundedSender<PushInfo>,
) -> Result<ClusterConnection, BackendError> {
    let Target::Cluster { seeds, .. } = s.redis.target() else {
        return Err(BackendError::Internal(
            "the cluster pub/sub task runs on one server".into(),
        ));
    };
    let url = s.redis.url();
    let t = s.redis.timeout();
    let client = crate::conn::cluster_builder(seeds, t)
        .use_protocol(redis::ProtocolVersion::RESP3)
        .push_sender(push)
        .build()
        .map_err(|e| error::map(url, "opening the pub/sub connection", e))?;
    let budget = t * 2;
    let mut conn = tokio::time::timeout(budget, client.get_async_connection())
        .await
        .map_err(|_| error::timed_out(url, "opening the pub/sub connection", budget))?
        .map_err(|e| error::map(url, "opening the pub/sub connection", e))?;
    tokio::time::timeout(t, conn.subscribe(s.keys.control()))
        .await
        .map_err(|_| error::timed_out(url, "SUBSCRIBE", t))?
        .map_err(|e| error::map(url, "SUBSCRIBE", e))?;
    Ok(conn)
}

/// Subscribes and unsubscribes, in order.
async fn commands(s: &Shared, st: &mut State, conn: &mut ClusterConnection, batch: Vec<Command>) {
    let mut subscribes = Vec::new();
    for cmd in batch {
        match cmd {
            Command::Subscribe {
                conv,
                deadline,
                ack,
            } => subscribes.push((conv, deadline, ack)),
            Command::Unsubscribe { conv, ack } => {
                if !subscribes.is_empty() {
                    subscribe(s, st, conn, std::mem::take(&mut subscribes)).await;
                }
                if let Some(channel) = st.interest.remove(s, &conv) {
                    st.repair.remove(&channel);
                    let _ = ack.send(Ok(()));
                    // Later messages of it are dropped anyway; a failed SUNSUBSCRIBE only costs
                    // traffic until the slot's master changes.
                    let t = s.redis.timeout();
                    if let Ok(Err(e)) = tokio::time::timeout(t, conn.sunsubscribe(&channel)).await {
                        tracing::debug!(%conv, error = %e, "SUNSUBSCRIBE failed");
                    }
                } else {
                    let _ = ack.send(Ok(()));
                }
            }
        }
    }
    if !subscribes.is_empty() {
        subscribe(s, st, conn, subscribes).await;
    }
}

/// Reads the heads of the new conversations (one batch), then sends one SSUBSCRIBE per
/// conversation, all at once (each goes to its slot's master).
async fn subscribe(
    s: &Shared,
    st: &mut State,
    conn: &mut ClusterConnection,
    requests: Vec<(Conv, Instant, Ack)>,
) {
    let url = s.redis.url();
    let t = s.redis.timeout();
    let wanted = crate::pubsub::wanted(s, &st.interest, requests);
    if wanted.is_empty() {
        return;
    }
    let mut b = crate::batch::Batch::new();
    for (conv, _) in &wanted {
        b.cmd("HGET").arg(s.keys.meta(conv)).arg("seq");
    }
    let heads: Vec<Option<u64>> = match s.redis.batch("reading heads", &b).await {
        Ok(h) => h,
        Err(e) => {
            for (_, acks) in wanted {
                for ack in acks {
                    let _ = ack.send(Err(e.clone()));
                }
            }
            return;
        }
    };
    let sent = wanted.iter().map(|(conv, _)| {
        let channel = s.keys.channel(conv);
        let mut c = conn.clone();
        async move {
            let r = tokio::time::timeout(t, c.ssubscribe(&channel)).await;
            (channel, r)
        }
    });
    let results = futures_util::future::join_all(sent).await;
    for (((conv, acks), head), (channel, r)) in wanted.into_iter().zip(heads).zip(results) {
        let answer = match r {
            Ok(Ok(())) => {
                st.interest.add(conv, channel, head.unwrap_or(0));
                Ok(())
            }
            Ok(Err(e)) => Err(error::map(url, "SSUBSCRIBE", e)),
            Err(_) => Err(error::timed_out(url, "SSUBSCRIBE", t)),
        };
        for ack in acks {
            let _ = ack.send(answer.clone());
        }
    }
}

/// One push from the cluster connection. A message that is simply next is left in `out` for
/// the caller to deliver with the others received at once; anything else delivers what `out`
/// holds first.
async fn on_push(
    s: &Shared,
    st: &mut State,
    control: &str,
    push: PushInfo,
    out: &mut Vec<Arc<Message>>,
) {
    let kind = push.kind.clone();
    // Each message is counted for the shard it came from (see `RedisConfig::on_shard_message`).
    match push.kind {
        PushKind::Message | PushKind::SMessage => {
            let Some(msg) = Msg::from_push_info(push) else {
                return;
            };
            let channel = msg.get_channel_name().to_owned();
            if let Some(hook) = &s.config.on_shard_message
                && st.interest.channels.contains_key(&channel)
            {
                let slot = crate::batch::slot(channel.as_bytes());
                let shard = st
                    .shards
                    .iter()
                    .find(|(a, b, _)| *a <= slot && slot <= *b)
                    .map_or("unknown", |(_, _, addr)| addr.as_str());
                (hook.0)(shard);
            }
            if let Err(e) = gather_message(s, &mut st.interest, control, msg, out).await {
                tracing::warn!(%channel, error = %e, "filling a gap failed; will retry");
                st.repair.insert(channel);
            }
        }
        PushKind::SSubscribe => {
            flush(s, out);
            // Confirmed (ours or the library's resubscription): read what may have been
            // published while it was not in place.
            if let Some(channel) = first_channel(&push.data)
                && let Some(conv) = st.interest.channels.get(&channel).cloned()
                && catch_up(s, &mut st.interest, &conv, None).await.is_err()
            {
                st.repair.insert(channel);
            }
        }
        PushKind::SUnsubscribe => {
            if let Some(channel) = first_channel(&push.data)
                && st.interest.channels.contains_key(&channel)
            {
                tracing::info!(%channel, "the server dropped a shard subscription (slot moved); subscribing again");
                st.repair.insert(channel);
            }
        }
        PushKind::Disconnection => {
            st.repair.extend(st.interest.channels.keys().cloned());
        }
        _ => {}
    }
    if matches!(kind, PushKind::SUnsubscribe | PushKind::Disconnection) {
        // The topology may have changed: read where the slots are once it settled.
        st.shards_stale = true;
    }
}

/// Reads the slot ranges' masters (`CLUSTER SLOTS`), when messages are counted per shard:
/// at the start, and after a topology change once every subscription is repaired.
async fn refresh_shards(s: &Shared, st: &mut State) {
    if s.config.on_shard_message.is_none() {
        return;
    }
    let v: Result<Value, _> = s
        .redis
        .query(
            "reading the cluster's slots",
            redis::cmd("CLUSTER").arg("SLOTS"),
        )
        .await;
    let Ok(Value::Array(ranges)) = v else {
        return;
    };
    let mut shards = Vec::new();
    for r in ranges {
        let Value::Array(f) = r else { continue };
        let (Some(Value::Int(a)), Some(Value::Int(b)), Some(Value::Array(master))) =
            (f.first(), f.get(1), f.get(2))
        else {
            continue;
        };
        let host = match master.first() {
            Some(Value::BulkString(h)) => String::from_utf8_lossy(h).into_owned(),
            _ => continue,
        };
        let Some(Value::Int(port)) = master.get(1) else {
            continue;
        };
        let (Ok(a), Ok(b)) = (u16::try_from(*a), u16::try_from(*b)) else {
            continue;
        };
        shards.push((a, b, format!("{host}:{port}")));
    }
    if !shards.is_empty() {
        st.shards = shards;
    }
}

fn first_channel(data: &[Value]) -> Option<String> {
    match data.first()? {
        Value::BulkString(b) => String::from_utf8(b.clone()).ok(),
        Value::SimpleString(s) => Some(s.clone()),
        _ => None,
    }
}

/// Subscribes the marked channels again and reads what they missed.
async fn repair(s: &Shared, st: &mut State, conn: &mut ClusterConnection) {
    let t = s.redis.timeout();
    let channels: Vec<String> = st.repair.iter().take(REPAIR_BATCH).cloned().collect();
    let sent = channels.iter().map(|channel| {
        let mut c = conn.clone();
        async move { tokio::time::timeout(t, c.ssubscribe(channel)).await }
    });
    let results = futures_util::future::join_all(sent).await;
    for (channel, r) in channels.into_iter().zip(results) {
        let Some(conv) = st.interest.channels.get(&channel).cloned() else {
            st.repair.remove(&channel);
            continue;
        };
        if matches!(r, Ok(Ok(()))) && catch_up(s, &mut st.interest, &conv, None).await.is_ok() {
            st.repair.remove(&channel);
        }
    }
}
