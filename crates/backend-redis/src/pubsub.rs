//! The bus: one task owns the pub/sub connection and everything about it.
//!
//! It subscribes to the control channel and to the channel of each conversation this node has an
//! interest in (requests come over a channel; `subscribe` returns only after Redis confirmed the
//! SUBSCRIBE; a burst of requests shares one head read and one SUBSCRIBE). It forwards messages
//! to [`BusSink::deliver`](switchboard_core::backend::BusSink) and control events to `control`.
//!
//! Redis pub/sub does not keep what is published while a subscriber is disconnected. So for each
//! conversation the task remembers the last seq it delivered (starting from the head read just
//! before subscribing), and:
//! - when the connection drops, it reconnects with backoff, subscribes again, then reads each
//!   conversation's stream after that seq and delivers what was missed, in order;
//! - when a message arrives with a seq beyond the next one, it reads the missing ones first;
//! - a message at or below that seq (already delivered from the stream) is dropped.
//!
//! Duplicates across a reconnect are possible in principle and harmless (sessions drop repeats by
//! seq); gaps are not possible while the stream still holds the messages.

use crate::batch::Batch;
use crate::error::{self, is_transient};
use crate::{Shared, broker};
use futures_util::StreamExt;
use redis::Msg;
use redis::aio::{PubSubSink, PubSubStream};
use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};
use switchboard_core::backend::{BackendError, ControlEvent};
use switchboard_proto::backoff::Backoff;
use switchboard_proto::{Conv, Message};
use tokio::sync::{mpsc, oneshot};

/// Ceiling of the first reconnect delay; doubles up to [`MAX_BACKOFF`] (full jitter, never
/// under half of this, so that nodes do not reconnect in step nor spin).
const MIN_BACKOFF: Duration = Duration::from_millis(100);
/// Longest reconnect delay.
const MAX_BACKOFF: Duration = Duration::from_secs(2);
/// Channels per SUBSCRIBE when subscribing again after a reconnect.
const SUBSCRIBE_CHUNK: usize = 500;
/// Messages per XRANGE when filling a gap.
const FILL_BATCH: usize = 500;
/// Requests handled together (one pipelined head read and one SUBSCRIBE for a burst).
pub(crate) const COMMAND_BATCH: usize = 500;
/// Conversations whose gaps are read in one pipeline after a reconnect.
const RESUME_CHUNK: usize = 100;

/// A request to the task.
pub(crate) enum Command {
    /// Start receiving a conversation; answered once Redis confirmed.
    Subscribe {
        conv: Conv,
        /// After this the caller has given up: do nothing.
        deadline: Instant,
        ack: oneshot::Sender<Result<(), BackendError>>,
    },
    /// Stop receiving it; answered at once (later messages of it are dropped).
    Unsubscribe {
        conv: Conv,
        ack: oneshot::Sender<Result<(), BackendError>>,
    },
}

/// Asks the task to subscribe to or unsubscribe from `conv` and waits for its answer.
pub(crate) async fn request(s: &Shared, conv: &Conv, subscribe: bool) -> Result<(), BackendError> {
    let (ack, answer) = oneshot::channel();
    // Room for the head read and the SUBSCRIBE, each bounded by the response timeout.
    let wait = s.redis.timeout() * 2 + Duration::from_millis(200);
    let cmd = if subscribe {
        Command::Subscribe {
            conv: conv.clone(),
            deadline: Instant::now() + wait,
            ack,
        }
    } else {
        Command::Unsubscribe {
            conv: conv.clone(),
            ack,
        }
    };
    s.pubsub.send(cmd).map_err(|_| error::closed())?;
    match tokio::time::timeout(wait, answer).await {
        Ok(Ok(r)) => r,
        Ok(Err(_)) => Err(error::closed()),
        Err(_) => Err(error::timed_out(s.redis.url(), "subscribe", wait)),
    }
}

/// The conversations this node receives.
#[derive(Default)]
pub(crate) struct Interest {
    /// Conversation -> the last seq delivered to the sink.
    pub(crate) last: HashMap<Conv, u64>,
    /// Channel name -> conversation.
    pub(crate) channels: HashMap<String, Conv>,
}

impl Interest {
    pub(crate) fn add(&mut self, conv: Conv, channel: String, last: u64) {
        self.last.insert(conv.clone(), last);
        self.channels.insert(channel, conv);
    }

    /// Forgets `conv`; returns its channel if it was there.
    pub(crate) fn remove(&mut self, s: &Shared, conv: &Conv) -> Option<String> {
        self.last.remove(conv)?;
        let channel = s.keys.channel(conv);
        self.channels.remove(&channel);
        Some(channel)
    }
}

/// Why [`serve`] returned.
enum Ended {
    Shutdown,
    Lost(String),
}

/// The task: connect, serve, and on loss reconnect with backoff, until cancelled. `up` is
/// answered after the first connection attempt (the backend's `connect` waits for it).
pub(crate) async fn run(
    s: Arc<Shared>,
    mut rx: mpsc::UnboundedReceiver<Command>,
    up: oneshot::Sender<Result<(), BackendError>>,
) {
    let mut interest = Interest::default();
    let mut up = Some(up);
    let mut backoff = Backoff::new(MIN_BACKOFF, MAX_BACKOFF).with_floor(MIN_BACKOFF / 2);
    loop {
        let opened = tokio::select! {
            _ = s.cancel.cancelled() => return,
            r = open(&s, &mut interest) => r,
        };
        match opened {
            Ok((sink, stream)) => {
                s.health.pubsub_up.store(true, Ordering::SeqCst);
                if let Some(up) = up.take() {
                    let _ = up.send(Ok(()));
                } else {
                    tracing::info!(url = %s.redis.url(), "Redis pub/sub connection restored");
                }
                backoff.reset();
                let ended = serve(&s, &mut interest, &mut rx, sink, stream).await;
                s.health.pubsub_up.store(false, Ordering::SeqCst);
                match ended {
                    Ended::Shutdown => return,
                    Ended::Lost(why) => {
                        tracing::warn!(url = %s.redis.url(), reason = %why, "Redis pub/sub connection lost; reconnecting");
                    }
                }
            }
            Err(e) => {
                if let Some(up) = up.take() {
                    let _ = up.send(Err(e));
                    return;
                }
                tracing::debug!(error = %e, "Redis pub/sub reconnect failed");
            }
        }
        if !wait(&s, &mut interest, &mut rx, backoff.next_delay()).await {
            return;
        }
    }
}

/// Opens the connection, subscribes to the control channel and every channel of interest, then
/// delivers what was published while disconnected.
async fn open(
    s: &Shared,
    interest: &mut Interest,
) -> Result<(PubSubSink, PubSubStream), BackendError> {
    let t = s.redis.timeout();
    let url = s.redis.url();
    let client = s.redis.client().ok_or_else(|| {
        BackendError::Internal("the one-server pub/sub task runs on a cluster".into())
    })?;
    let pubsub = tokio::time::timeout(t, client.get_async_pubsub())
        .await
        .map_err(|_| error::timed_out(url, "opening the pub/sub connection", t))?
        .map_err(|e| error::map(url, "opening the pub/sub connection", e))?;
    let (mut sink, stream) = pubsub.split();
    let mut channels = vec![s.keys.control()];
    channels.extend(interest.channels.keys().cloned());
    for chunk in channels.chunks(SUBSCRIBE_CHUNK) {
        tokio::time::timeout(t, sink.subscribe(chunk))
            .await
            .map_err(|_| error::timed_out(url, "SUBSCRIBE", t))?
            .map_err(|e| error::map(url, "SUBSCRIBE", e))?;
    }
    resume_all(s, interest).await?;
    Ok((sink, stream))
}

/// After a reconnect: for every conversation of interest, delivers what was stored after the
/// last seq delivered. The first page of every conversation is read in pipelines of
/// [`RESUME_CHUNK`] conversations, so a node with many conversations resumes in few round trips.
async fn resume_all(s: &Shared, interest: &mut Interest) -> Result<(), BackendError> {
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

/// Delivers the messages of `page` that come after the last one delivered, in order.
fn deliver_after(s: &Shared, interest: &mut Interest, conv: &Conv, page: Vec<Arc<Message>>) {
    let Some(last) = interest.last.get_mut(conv) else {
        return;
    };
    for m in page {
        if m.seq > *last {
            *last = m.seq;
            s.sink.deliver(m);
        }
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

/// Serves one connection until it is lost or the backend stops.
async fn serve(
    s: &Shared,
    interest: &mut Interest,
    rx: &mut mpsc::UnboundedReceiver<Command>,
    mut sink: PubSubSink,
    mut stream: PubSubStream,
) -> Ended {
    let t = s.redis.timeout();
    let control = s.keys.control();
    // A connection to a server that vanished without closing it is found by a ping.
    let period = (s.config.lease / 3).clamp(Duration::from_millis(200), Duration::from_secs(5));
    let mut ping = tokio::time::interval_at(tokio::time::Instant::now() + period, period);
    ping.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = s.cancel.cancelled() => return Ended::Shutdown,
            cmd = rx.recv() => {
                let Some(cmd) = cmd else { return Ended::Shutdown };
                // A burst of requests (many connections arriving at once) is served together.
                let mut batch = vec![cmd];
                while batch.len() < COMMAND_BATCH {
                    match rx.try_recv() {
                        Ok(cmd) => batch.push(cmd),
                        Err(_) => break,
                    }
                }
                if let Err(why) = commands(s, interest, &mut sink, batch).await {
                    return Ended::Lost(why);
                }
            }
            msg = stream.next() => {
                let Some(msg) = msg else {
                    return Ended::Lost("the connection closed".into());
                };
                if let Err(e) = on_message(s, interest, &control, msg).await {
                    return Ended::Lost(format!("filling a gap failed: {e}"));
                }
            }
            _ = ping.tick() => {
                match tokio::time::timeout(t, sink.ping::<redis::Value>()).await {
                    Ok(Ok(_)) => {}
                    Ok(Err(e)) => return Ended::Lost(format!("PING failed: {e}")),
                    Err(_) => return Ended::Lost(format!("no answer to PING within {t:?}")),
                }
            }
        }
    }
}

/// Handles requests while connected, in order; consecutive subscribes (and consecutive
/// unsubscribes) share their round trips. `Err` means the connection is in doubt: reconnect.
async fn commands(
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

/// Forwards one pub/sub message. `Err` when a gap could not be filled (the caller reconnects,
/// which fills it from the last delivered seq).
pub(crate) async fn on_message(
    s: &Shared,
    interest: &mut Interest,
    control: &str,
    msg: Msg,
) -> Result<(), BackendError> {
    let channel = msg.get_channel_name();
    if channel == control {
        match serde_json::from_slice::<ControlEvent>(msg.get_payload_bytes()) {
            Ok(event) => s.sink.control(event),
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
        catch_up(s, interest, &conv, Some(m.seq)).await?;
    }
    interest.last.insert(conv, m.seq);
    s.sink.deliver(Arc::new(m));
    Ok(())
}

/// Waits `delay` before the next connection attempt, answering requests meanwhile: subscribes
/// fail (`Unavailable`), unsubscribes succeed. `false` when the backend stops.
async fn wait(
    s: &Shared,
    interest: &mut Interest,
    rx: &mut mpsc::UnboundedReceiver<Command>,
    delay: Duration,
) -> bool {
    let sleep = tokio::time::sleep(delay);
    tokio::pin!(sleep);
    loop {
        tokio::select! {
            _ = s.cancel.cancelled() => return false,
            _ = &mut sleep => return true,
            cmd = rx.recv() => match cmd {
                None => return false,
                Some(Command::Subscribe { ack, .. }) => {
                    let _ = ack.send(Err(BackendError::Unavailable(format!(
                        "Redis at {}: the pub/sub connection is down",
                        s.redis.url()
                    ))));
                }
                Some(Command::Unsubscribe { conv, ack }) => {
                    interest.remove(s, &conv);
                    let _ = ack.send(Ok(()));
                }
            },
        }
    }
}
