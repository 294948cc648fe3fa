//! One client connection, whatever its transport: authentication, subscriptions, publishing,
//! and the ordering rules of delivery.
//!
//! Ordering and resume: a subscription is added to the hub (and the bus) *before* history is
//! read, so every message is either in that history read or arrives live afterwards. The
//! session remembers the last seq it sent per conversation and drops anything at or below it
//! (no duplicates); a live message that skips ahead makes it fetch the missing ones from
//! history first (no gaps). All of it runs in the connection's one task, so there is no lock.

use crate::auth::{Principal, now_ms};
use crate::backend::{ConnEntry, HistoryQuery, Position};
use crate::error::Error;
use crate::hub::{Delivery, KillSwitch, Outbound, OutboundRx, OutboundTx};
use crate::node::{MAX_HISTORY_LIMIT, Node, Publisher, clamp_limit};
use crate::ratelimit::TokenBucket;
use crate::transport::{Inbound, Transport};
use bytes::Bytes;
use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::{Duration, Instant};
use switchboard_proto::conv::ConvKind;
use switchboard_proto::frame::{
    ClientFrame, RequestId, ResumePosition, Resumed, parse_client_frame,
};
use switchboard_proto::{Conv, DisconnectReason, ErrorCode, ServerFrame};
use tokio::sync::mpsc;
use tokio::time::timeout;

/// Invalid frames tolerated per [`BAD_FRAME_WINDOW`] before the connection is closed.
pub const MAX_BAD_FRAMES: u32 = 20;
/// Window for [`MAX_BAD_FRAMES`].
pub const BAD_FRAME_WINDOW: Duration = Duration::from_secs(10);
/// Heartbeats a peer may leave unanswered; at the next one it is considered dead.
const MISSED_PINGS_ALLOWED: u32 = 2;
/// Live messages handled per wake-up before flushing.
const DELIVERY_BATCH: usize = 256;
/// Time allowed for the last frames when a connection is being closed.
const CLOSE_GRACE: Duration = Duration::from_secs(1);

/// How a session ends.
#[derive(Debug)]
enum End {
    /// The peer went away or the socket failed: nothing more to write.
    Gone,
    /// The server ends it: a `disconnect` frame (preceded by `reconnect` on shutdown).
    Disconnect(DisconnectReason),
    /// The last reply was already written (e.g. an auth error): just close.
    Close,
}

/// A request that failed: either an error reply (the connection goes on) or the end.
enum Fail {
    Reply(Error),
    End(End),
}

impl From<Error> for Fail {
    fn from(e: Error) -> Fail {
        Fail::Reply(e)
    }
}
impl From<End> for Fail {
    fn from(e: End) -> Fail {
        Fail::End(e)
    }
}

struct Authed {
    principal: Principal,
    entry: ConnEntry,
    expires_at: Instant,
}

/// A client the transport already authenticated (a token on the WebSocket upgrade request, or a
/// long-poll session opened with a bearer token), with the conversations it resumes.
#[derive(Debug, Clone)]
pub struct PreAuth {
    /// Who.
    pub principal: Principal,
    /// Conversations to resume (and subscribe to), as in the `auth` frame.
    pub resume: BTreeMap<Conv, ResumePosition>,
}

impl From<Principal> for PreAuth {
    fn from(principal: Principal) -> PreAuth {
        PreAuth {
            principal,
            resume: BTreeMap::new(),
        }
    }
}

/// Runs one connection to its end. With `pre_auth`, `welcome` is sent unasked first.
pub async fn run_session<T: Transport>(node: Arc<Node>, transport: T, pre_auth: Option<PreAuth>) {
    let (tx, rx) = mpsc::channel(node.limits.outbound_queue.max(1));
    let kill = Arc::new(KillSwitch::default());
    let key = node.hub.open_connection(kill.clone(), tx.clone());
    let now = Instant::now();
    let mut session = Session {
        publish_bucket: TokenBucket::new(node.limits.publish_rate, node.limits.publish_burst),
        frame_bucket: TokenBucket::new(
            node.limits.frame_rate,
            node.limits.frame_rate.saturating_mul(2),
        ),
        next_ping: now + node.limits.heartbeat,
        node,
        t: transport,
        key,
        kill,
        tx,
        rx,
        auth: None,
        subs: HashMap::new(),
        bad_frames: 0,
        bad_window: now,
        last_seen: now,
        started: now,
        last_ping: None,
        missed_pings: 0,
    };
    let end = session.serve(pre_auth).await;
    // Cold paths are boxed: their state is allocated only while they run, which keeps the
    // per-connection future small (it is what every idle connection holds).
    Box::pin(session.finish(end)).await;
}

struct Session<T: Transport> {
    node: Arc<Node>,
    t: T,
    key: u64,
    kill: Arc<KillSwitch>,
    tx: OutboundTx,
    rx: OutboundRx,
    auth: Option<Authed>,
    /// conv -> last seq sent to the client.
    subs: HashMap<Conv, u64>,
    publish_bucket: TokenBucket,
    frame_bucket: TokenBucket,
    bad_frames: u32,
    bad_window: Instant,
    last_seen: Instant,
    started: Instant,
    next_ping: Instant,
    /// When the last heartbeat was sent, and how many in a row went unanswered.
    last_ping: Option<Instant>,
    missed_pings: u32,
}

impl<T: Transport> Session<T> {
    async fn serve(&mut self, pre_auth: Option<PreAuth>) -> End {
        if let Some(p) = pre_auth {
            match Box::pin(self.authenticate(None, p.principal, p.resume)).await {
                Ok(()) => {}
                Err(Fail::End(e)) => return e,
                Err(Fail::Reply(e)) => {
                    let _ = self.reply_error(None, e).await;
                    return End::Close;
                }
            }
            if let Err(e) = self.flush().await {
                return e;
            }
        }
        let kill = self.kill.clone();
        // Created once: a fresh `killed()` per iteration would register and drop a Notify waiter
        // (a mutex each way) for every batch of deliveries.
        let killed = kill.killed();
        tokio::pin!(killed);
        let timer = tokio::time::sleep_until(self.next_deadline().into());
        tokio::pin!(timer);
        loop {
            let authed = self.auth.is_some();
            tokio::select! {
                biased;
                reason = &mut killed => return End::Disconnect(reason),
                Some(d) = self.rx.recv(), if authed => {
                    if let Err(e) = self.on_deliveries(d).await {
                        return e;
                    }
                }
                ev = self.t.recv() => {
                    let r = match ev {
                        None => return End::Gone,
                        Some(Inbound::Alive) => { self.last_seen = Instant::now(); Ok(()) }
                        Some(Inbound::Frame(b)) => { self.last_seen = Instant::now(); Box::pin(self.on_frame(b)).await }
                        Some(Inbound::TooLarge(n)) => Box::pin(self.on_too_large(n)).await,
                    };
                    if let Err(e) = r.and(self.flush().await) {
                        return e;
                    }
                }
                () = &mut timer => {
                    if let Err(e) = Box::pin(self.on_timer()).await {
                        return e;
                    }
                    timer.as_mut().reset(self.next_deadline().into());
                }
            }
        }
    }

    fn next_deadline(&self) -> Instant {
        match &self.auth {
            None => self
                .next_ping
                .min(self.started + self.node.limits.auth_timeout),
            Some(a) => self.next_ping.min(a.expires_at),
        }
    }

    async fn on_timer(&mut self) -> Result<(), End> {
        let now = Instant::now();
        match &self.auth {
            None if now >= self.started + self.node.limits.auth_timeout => {
                let ms = self.node.limits.auth_timeout.as_millis();
                self.reply_error(
                    None,
                    Error::unauthorized(format!("no auth frame within {ms} ms")),
                )
                .await?;
                return Err(End::Close);
            }
            Some(a) if now >= a.expires_at => {
                return Err(End::Disconnect(DisconnectReason::AuthExpired));
            }
            _ => {}
        }
        if now >= self.next_ping {
            // A ping is missed when nothing at all arrived between it and the next one.
            match self.last_ping {
                Some(sent) if self.last_seen < sent => self.missed_pings += 1,
                _ => self.missed_pings = 0,
            }
            if self.missed_pings >= MISSED_PINGS_ALLOWED {
                tracing::debug!(key = self.key, "peer missed two heartbeats");
                self.node
                    .metrics
                    .disconnect(DisconnectReason::ProtocolError);
                return Err(End::Gone);
            }
            let r = timeout(self.node.limits.write_timeout, self.t.ping()).await;
            self.outcome(r)?;
            self.flush().await?;
            self.last_ping = Some(now);
            self.next_ping = now + self.node.limits.heartbeat;
        }
        Ok(())
    }

    // ----- writing -----

    fn outcome(
        &self,
        r: Result<Result<(), crate::transport::TransportError>, tokio::time::error::Elapsed>,
    ) -> Result<(), End> {
        match r {
            Ok(Ok(())) => Ok(()),
            Ok(Err(e)) => {
                tracing::debug!(key = self.key, error = %e, "write failed");
                Err(End::Gone)
            }
            // A client that does not read for this long is a slow consumer.
            Err(_) => Err(End::Disconnect(DisconnectReason::SlowConsumer)),
        }
    }

    async fn write(&mut self, frame: Bytes) -> Result<(), End> {
        let r = timeout(self.node.limits.write_timeout, self.t.send(frame)).await;
        self.outcome(r)
    }

    async fn flush(&mut self) -> Result<(), End> {
        let r = timeout(self.node.limits.write_timeout, self.t.flush()).await;
        self.outcome(r)
    }

    async fn reply(&mut self, frame: ServerFrame) -> Result<(), End> {
        self.write(frame.encode()).await
    }

    async fn reply_error(&mut self, id: Option<RequestId>, e: Error) -> Result<(), End> {
        self.node.metrics.error(e.code);
        self.reply(ServerFrame::error(id, e.code, e.message)).await
    }

    // ----- inbound -----

    async fn on_too_large(&mut self, size: usize) -> Result<(), End> {
        let max = self.node.limits.max_frame_bytes;
        self.reply_error(
            None,
            Error::new(
                ErrorCode::TooLarge,
                format!("frame of {size} bytes is over the {max}-byte limit"),
            ),
        )
        .await?;
        self.count_bad_frame()
    }

    fn count_bad_frame(&mut self) -> Result<(), End> {
        let now = Instant::now();
        if now.duration_since(self.bad_window) > BAD_FRAME_WINDOW {
            self.bad_window = now;
            self.bad_frames = 0;
        }
        self.bad_frames += 1;
        if self.bad_frames > MAX_BAD_FRAMES {
            return Err(End::Disconnect(DisconnectReason::ProtocolError));
        }
        Ok(())
    }

    async fn on_frame(&mut self, bytes: Bytes) -> Result<(), End> {
        if bytes.len() > self.node.limits.max_frame_bytes {
            return self.on_too_large(bytes.len()).await;
        }
        let (id, frame) = match parse_client_frame(&bytes) {
            Ok(parsed) => parsed,
            Err(fe) => {
                self.reply_error(fe.id, Error::bad_request(fe.message))
                    .await?;
                return self.count_bad_frame();
            }
        };
        if !self.frame_bucket.try_take() {
            return self
                .reply_error(id, Error::new(ErrorCode::RateLimited, "too many frames"))
                .await;
        }
        match self.handle(id.clone(), frame).await {
            Ok(()) => Ok(()),
            Err(Fail::Reply(e)) => self.reply_error(id, e).await,
            Err(Fail::End(e)) => Err(e),
        }
    }

    async fn handle(&mut self, id: Option<RequestId>, frame: ClientFrame) -> Result<(), Fail> {
        let user_id = match (&self.auth, &frame) {
            (_, ClientFrame::Ping) => return Ok(self.reply(ServerFrame::Pong { id }).await?),
            (_, ClientFrame::Pong) => return Ok(()),
            (None, ClientFrame::Auth { .. }) => String::new(),
            (Some(_), ClientFrame::Auth { .. }) => {
                return Err(Error::bad_request("already authenticated").into());
            }
            (None, _) => return Err(Error::unauthorized("send an auth frame first").into()),
            (Some(a), _) => a.principal.user_id.clone(),
        };
        match frame {
            ClientFrame::Auth { token, resume } => {
                let principal = match self.node.authenticate(&token).await {
                    Ok(p) => p,
                    Err(e) => {
                        self.reply_error(id, e).await?;
                        return Err(End::Close.into());
                    }
                };
                self.authenticate(id, principal, resume).await
            }
            ClientFrame::Subscribe { conv, since, epoch } => {
                self.subscribe(id, &user_id, conv, since, epoch).await
            }
            ClientFrame::Unsubscribe { conv } => {
                if self.subs.contains_key(&conv) {
                    self.detach(&conv).await;
                }
                Ok(self
                    .reply(ServerFrame::Unsubscribed {
                        id,
                        conv,
                        reason: None,
                    })
                    .await?)
            }
            ClientFrame::Publish {
                conv,
                body,
                client_msg_id,
            } => {
                if !self.publish_bucket.try_take() {
                    return Err(
                        Error::new(ErrorCode::RateLimited, "publish rate limit exceeded").into(),
                    );
                }
                let r = self
                    .node
                    .publish(Publisher::User(&user_id), conv, body, client_msg_id)
                    .await?;
                Ok(self
                    .reply(ServerFrame::Published {
                        id,
                        conv: r.conv,
                        seq: r.seq,
                        message_id: r.message_id,
                        ts: r.ts,
                    })
                    .await?)
            }
            ClientFrame::History {
                conv,
                after,
                before,
                limit,
            } => {
                let limit = clamp_limit(limit)?;
                let messages = self
                    .node
                    .history(
                        &user_id,
                        &conv,
                        HistoryQuery {
                            after,
                            before,
                            limit,
                        },
                    )
                    .await?;
                Ok(self
                    .reply(ServerFrame::History { id, conv, messages })
                    .await?)
            }
            ClientFrame::Presence { conv } => {
                let users = self.node.presence(&user_id, &conv).await?;
                Ok(self
                    .reply(ServerFrame::Presence { id, conv, users })
                    .await?)
            }
            ClientFrame::Ping | ClientFrame::Pong => Ok(()),
        }
    }

    // ----- auth and subscriptions -----

    async fn authenticate(
        &mut self,
        id: Option<RequestId>,
        principal: Principal,
        resume: BTreeMap<Conv, ResumePosition>,
    ) -> Result<(), Fail> {
        let entry = ConnEntry {
            conn_id: switchboard_proto::ids::new_id("c"),
            user_id: principal.user_id.clone(),
            session_id: principal.session_id.clone(),
            node_id: self.node.id.clone(),
        };
        self.node
            .backend
            .registry
            .add_connection(&entry)
            .await
            .map_err(Error::from)?;
        self.node
            .hub
            .register(self.key, &entry.user_id, &entry.session_id);
        let left_ms = principal.expires_at_ms.saturating_sub(now_ms());
        let expires_at =
            Instant::now() + Duration::from_millis(left_ms.min(365 * 24 * 3600 * 1000));
        let user_id = principal.user_id.clone();
        let conn_id = entry.conn_id.clone();
        self.auth = Some(Authed {
            principal,
            entry,
            expires_at,
        });

        let own = Conv::user(&user_id);
        let mut resume = resume;
        let own_since = resume.remove(&own);
        let mut resumed = BTreeMap::new();
        let mut replays = Vec::new();
        let mut refused = Vec::new();

        let pos = self.attach(&own).await?;
        match own_since {
            Some(p) => {
                let r = decide(&p, &pos);
                self.subs.insert(own.clone(), r.from_seq - 1);
                resumed.insert(own.clone(), r);
                replays.push(own.clone());
            }
            None => {
                self.subs.insert(own.clone(), pos.head_seq);
            }
        }
        for (conv, p) in resume {
            if self.subs.len() >= self.node.limits.max_subscriptions {
                refused.push((conv, Error::bad_request("too many subscriptions")));
                continue;
            }
            if let Err(e) = self.node.check_read(&user_id, &conv).await {
                refused.push((conv, e));
                continue;
            }
            let pos = match self.attach(&conv).await {
                Ok(pos) => pos,
                Err(e) => {
                    refused.push((conv, e));
                    continue;
                }
            };
            let r = decide(&p, &pos);
            self.subs.insert(conv.clone(), r.from_seq - 1);
            resumed.insert(conv.clone(), r);
            replays.push(conv);
        }
        let heartbeat_ms = self.node.limits.heartbeat.as_millis() as u64;
        let welcome = ServerFrame::Welcome {
            id: id.clone(),
            user_id,
            node_id: self.node.id.clone(),
            conn_id,
            heartbeat_ms,
            resumed,
        };
        self.reply(welcome).await?;
        for (conv, e) in refused {
            let e = Error::new(e.code, format!("{conv}: {}", e.message));
            self.reply_error(id.clone(), e).await?;
        }
        for conv in replays {
            let last = self.subs.get(&conv).copied().unwrap_or(0);
            self.replay(&conv, last, None).await?;
        }
        Ok(())
    }

    async fn subscribe(
        &mut self,
        id: Option<RequestId>,
        user_id: &str,
        conv: Conv,
        since: Option<u64>,
        epoch: Option<String>,
    ) -> Result<(), Fail> {
        let already = self.subs.contains_key(&conv);
        if !already && self.subs.len() >= self.node.limits.max_subscriptions {
            let max = self.node.limits.max_subscriptions;
            return Err(Error::bad_request(format!(
                "a connection may hold at most {max} subscriptions"
            ))
            .into());
        }
        self.node.check_read(user_id, &conv).await?;
        let pos = if already {
            self.node
                .backend
                .broker
                .position(&conv)
                .await
                .map_err(Error::from)?
        } else {
            self.attach(&conv).await?
        };
        let (recovered, from_seq) = match since {
            None => {
                if !already {
                    self.subs.insert(conv.clone(), pos.head_seq);
                }
                (None, None)
            }
            Some(since) => {
                let r = decide(&ResumePosition::WithEpoch { seq: since, epoch }, &pos);
                self.subs.insert(conv.clone(), r.from_seq - 1);
                (Some(r.recovered), Some(r.from_seq))
            }
        };
        let reply = ServerFrame::Subscribed {
            id,
            conv: conv.clone(),
            head_seq: pos.head_seq,
            epoch: pos.epoch,
            recovered,
            from_seq,
        };
        self.reply(reply).await?;
        if let Some(from) = from_seq {
            self.replay(&conv, from - 1, None).await?;
        }
        Ok(())
    }

    /// Adds a local subscription and bus interest, then reads the position. On failure the
    /// subscription is taken back.
    async fn attach(&mut self, conv: &Conv) -> Result<Position, Error> {
        self.node
            .hub
            .subscribe(conv, self.key, self.tx.clone(), self.kill.clone());
        let result = async {
            self.node.ensure_interest(conv).await?;
            if conv.kind() == ConvKind::Room
                && let Some(a) = &self.auth
            {
                self.node
                    .backend
                    .registry
                    .add_room_subscriber(conv.id(), &a.entry)
                    .await?;
            }
            Ok::<_, Error>(self.node.backend.broker.position(conv).await?)
        }
        .await;
        if result.is_err() {
            self.detach(conv).await;
        }
        result
    }

    async fn detach(&mut self, conv: &Conv) {
        self.subs.remove(conv);
        if self.node.hub.unsubscribe(conv, self.key) {
            self.node.release_interest(conv).await;
        }
        if conv.kind() == ConvKind::Room
            && let Some(a) = &self.auth
            && let Err(e) = self
                .node
                .backend
                .registry
                .remove_room_subscriber(conv.id(), &a.entry)
                .await
        {
            tracing::warn!(%conv, error = %e, "presence update failed");
        }
    }

    // ----- delivery -----

    async fn on_deliveries(&mut self, first: Outbound) -> Result<(), End> {
        self.on_outbound(first).await?;
        for _ in 1..DELIVERY_BATCH {
            match self.rx.try_recv() {
                Ok(o) => self.on_outbound(o).await?,
                Err(_) => break,
            }
        }
        self.flush().await
    }

    async fn on_outbound(&mut self, o: Outbound) -> Result<(), End> {
        match o {
            Outbound::Message(d) => self.deliver(d).await,
            Outbound::Revoke(conv) => {
                if !self.subs.contains_key(&conv) {
                    return Ok(());
                }
                self.detach(&conv).await;
                let reason = Some("not_member".to_owned());
                self.reply(ServerFrame::Unsubscribed {
                    id: None,
                    conv,
                    reason,
                })
                .await
            }
        }
    }

    async fn deliver(&mut self, d: Arc<Delivery>) -> Result<(), End> {
        let conv = &d.message.conv;
        let seq = d.message.seq;
        let Some(&last) = self.subs.get(conv) else {
            return Ok(());
        };
        if seq <= last {
            return Ok(());
        }
        if seq > last + 1 {
            Box::pin(self.replay(conv, last, Some(seq))).await?;
        }
        self.write(d.frame.clone()).await?;
        if let Some(l) = self.subs.get_mut(conv) {
            *l = (*l).max(seq);
        }
        Ok(())
    }

    /// Sends stored messages of `conv` after `after` (and before `before`), in pages.
    async fn replay(&mut self, conv: &Conv, after: u64, before: Option<u64>) -> Result<(), End> {
        let mut cursor = after;
        loop {
            let q = HistoryQuery {
                after: Some(cursor),
                before,
                limit: MAX_HISTORY_LIMIT,
            };
            let page = match self.node.backend.broker.history(conv, q).await {
                Ok(p) => p,
                Err(e) => {
                    // The client sees the jump in seq and fills it from history itself.
                    tracing::warn!(%conv, error = %e, "replay failed; leaving the gap to the client");
                    return Ok(());
                }
            };
            let n = page.len();
            for m in page {
                if m.seq <= cursor {
                    continue;
                }
                cursor = m.seq;
                self.write(m.encode_frame()).await?;
            }
            if let Some(l) = self.subs.get_mut(conv) {
                *l = (*l).max(cursor);
            }
            if n < MAX_HISTORY_LIMIT as usize {
                return Ok(());
            }
        }
    }

    // ----- the end -----

    async fn finish(&mut self, end: End) {
        let jitter_ms = self.node.limits.reconnect_jitter.as_millis() as u64;
        let _ = timeout(CLOSE_GRACE, async {
            match end {
                End::Disconnect(reason) => {
                    self.node.metrics.disconnect(reason);
                    if reason == DisconnectReason::Shutdown {
                        let delay_ms = switchboard_proto::ids::random_u64() % jitter_ms.max(1);
                        let _ = self
                            .t
                            .send(
                                ServerFrame::Reconnect {
                                    reason: "shutdown".into(),
                                    delay_ms,
                                }
                                .encode(),
                            )
                            .await;
                    }
                    let _ = self
                        .t
                        .send(ServerFrame::Disconnect { reason }.encode())
                        .await;
                    let _ = self.t.flush().await;
                    self.t.close().await;
                }
                End::Close => {
                    let _ = self.t.flush().await;
                    self.t.close().await;
                }
                End::Gone => self.t.close().await,
            }
        })
        .await;
        if let Some(a) = self.auth.take() {
            let convs: Vec<Conv> = self.subs.drain().map(|(c, _)| c).collect();
            for conv in convs {
                if self.node.hub.unsubscribe(&conv, self.key) {
                    self.node.release_interest(&conv).await;
                }
            }
            // Also clears the connection's room subscriptions.
            if let Err(e) = self.node.backend.registry.remove_connection(&a.entry).await {
                tracing::warn!(error = %e, "presence removal failed");
            }
        }
        self.node.hub.close_connection(self.key);
    }
}

/// Where a resume starts: after the client's seq when history still reaches it and the epoch
/// matches; otherwise from the oldest stored message, with `recovered: false`.
fn decide(p: &ResumePosition, pos: &Position) -> Resumed {
    let since = p.seq();
    let epoch_ok = p.epoch().is_none_or(|e| e == pos.epoch);
    let (recovered, from_seq) = if epoch_ok && since <= pos.head_seq && since + 1 >= pos.oldest_seq
    {
        (true, since + 1)
    } else {
        (false, pos.oldest_seq)
    };
    Resumed {
        recovered,
        from_seq,
        epoch: pos.epoch.clone(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pos(head: u64, oldest: u64) -> Position {
        Position {
            epoch: "e1".into(),
            head_seq: head,
            oldest_seq: oldest,
        }
    }

    #[test]
    fn resume_decisions() {
        let r = decide(&ResumePosition::Seq(5), &pos(10, 1));
        assert_eq!((r.recovered, r.from_seq), (true, 6));
        let r = decide(&ResumePosition::Seq(0), &pos(0, 1));
        assert_eq!((r.recovered, r.from_seq), (true, 1));
        let r = decide(&ResumePosition::Seq(10), &pos(10, 1));
        assert_eq!((r.recovered, r.from_seq), (true, 11));
        // History trimmed past the client's position.
        let r = decide(&ResumePosition::Seq(2), &pos(10, 5));
        assert_eq!((r.recovered, r.from_seq), (false, 5));
        let r = decide(&ResumePosition::Seq(4), &pos(10, 5));
        assert_eq!((r.recovered, r.from_seq), (true, 5));
        // Other epoch, or a seq from the future: history was lost.
        let r = decide(
            &ResumePosition::WithEpoch {
                seq: 3,
                epoch: Some("e0".into()),
            },
            &pos(10, 1),
        );
        assert_eq!((r.recovered, r.from_seq), (false, 1));
        let r = decide(&ResumePosition::Seq(20), &pos(10, 1));
        assert_eq!((r.recovered, r.from_seq), (false, 1));
    }
}

#[cfg(test)]
mod size_tests {
    use super::*;
    use crate::transport::TransportError;

    struct Nothing;
    impl Transport for Nothing {
        async fn recv(&mut self) -> Option<Inbound> {
            None
        }
        async fn send(&mut self, _: Bytes) -> Result<(), TransportError> {
            Ok(())
        }
        async fn flush(&mut self) -> Result<(), TransportError> {
            Ok(())
        }
        async fn ping(&mut self) -> Result<(), TransportError> {
            Ok(())
        }
        async fn close(&mut self) {}
    }

    /// The session's future is allocated once per connection: keep an eye on its size.
    #[test]
    fn the_session_future_stays_small() {
        fn returned_size<F: FnOnce() -> Fut, Fut>(_: F) -> usize {
            std::mem::size_of::<Fut>()
        }
        #[allow(unreachable_code)]
        let size = returned_size(|| run_session(unreachable!(), Nothing, None));
        println!(
            "run_session future: {size} bytes; Session: {} bytes",
            std::mem::size_of::<Session<Nothing>>()
        );
    }
}
