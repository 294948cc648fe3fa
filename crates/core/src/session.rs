//! One client connection, whatever its transport: authentication, subscriptions, publishing,
//! and the ordering rules of delivery.
//!
//! Ordering and resume: a subscription is added to the hub (and the bus) *before* history is
//! read, so every message is either in that history read or arrives live afterwards. The
//! connection remembers the last seq sent per conversation and drops anything at or below it
//! (no duplicates); a live message that skips ahead makes the session fetch the missing ones
//! from history first (no gaps). The fan-out writes a message itself only when it is exactly
//! the next one and nothing else waits; the check and the write are one step under the
//! connection's lock (see [`crate::conn`]), so it and the session never reorder each other.

use crate::auth::{Principal, now_ms};
use crate::backend::{ConnEntry, HistoryQuery, Position};
use crate::conn::{Broken, Conn, How, Out, Outbound, Sent, Wire};
use crate::error::Error;
use crate::hub::Delivery;
use crate::node::{MAX_HISTORY_LIMIT, Node, Publisher, clamp_limit};
use crate::ratelimit::TokenBucket;
use crate::transport::{Inbound, Transport};
use bytes::Bytes;
use std::collections::BTreeMap;
use std::future::Future;
use std::sync::Arc;
use std::time::{Duration, Instant};
use switchboard_proto::conv::ConvKind;
use switchboard_proto::frame::{
    ClientFrame, RequestId, ResumePosition, Resumed, parse_client_frame,
};
use switchboard_proto::{Conv, DisconnectReason, ErrorCode, ServerFrame};
use tokio::time::timeout;

/// Invalid frames tolerated per [`BAD_FRAME_WINDOW`] before the connection is closed.
pub const MAX_BAD_FRAMES: u32 = 20;
/// Window for [`MAX_BAD_FRAMES`].
pub const BAD_FRAME_WINDOW: Duration = Duration::from_secs(10);
/// Heartbeats a peer may leave unanswered; at the next one it is considered dead.
const MISSED_PINGS_ALLOWED: u32 = 2;
/// Handed-over messages handled per turn of the session loop.
const DELIVERY_BATCH: usize = 256;
/// Unsent frames past which the session's own writes wait for the client to read.
const SESSION_HIGH_WATER: usize = 64;
/// While waiting for room, how often the session looks whether it was asked to end.
const ROOM_CHECK: Duration = Duration::from_millis(100);
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
impl From<Broken> for End {
    fn from(_: Broken) -> End {
        End::Gone
    }
}
impl From<Broken> for Fail {
    fn from(_: Broken) -> Fail {
        Fail::End(End::Gone)
    }
}

/// Who the connection is, once authenticated. The registry entry names the user and the
/// auth session (kept once: every idle connection holds this).
struct Authed {
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

/// Runs one connection to its end: reads through `transport`, writes through `wire`. With
/// `pre_auth`, `welcome` is sent unasked first. The connection is known to the node (counted,
/// reachable by shutdown) from this call on, before the returned future first runs.
pub fn run_session<T: Transport>(
    node: Arc<Node>,
    transport: T,
    wire: Arc<dyn Wire>,
    pre_auth: Option<PreAuth>,
) -> impl Future<Output = ()> + Send {
    let conn = Conn::new(wire, node.limits.outbound_queue);
    let key = node.hub.open_connection(conn.clone());
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
        conn,
        auth: None,
        bad_frames: 0,
        bad_window: now,
        last_seen: now,
        started: now,
        last_ping: None,
        missed_pings: 0,
    };
    let pre_auth = pre_auth.map(Box::new);
    // The future every connection holds for its life: only the session and what its loop
    // needs. (An async fn would keep its arguments twice in its future, hence the block.)
    let mut unfinished = Unfinished {
        node: session.node.clone(),
        conn: session.conn.clone(),
        key,
        armed: true,
    };
    async move {
        let end = session.serve(pre_auth).await;
        // Cold paths are boxed: their state is allocated only while they run, which keeps the
        // per-connection future small (it is what every idle connection holds).
        Box::pin(session.finish(end)).await;
        unfinished.disarm();
    }
}

/// Forgets a connection whose session never reached its end (a panic in the task): the hub
/// would otherwise keep it, its socket, and the fan-out would go on writing to it.
struct Unfinished {
    node: Arc<Node>,
    conn: Arc<Conn>,
    key: u64,
    armed: bool,
}

impl Unfinished {
    /// The session finished normally (a method, so the block captures the whole guard).
    fn disarm(&mut self) {
        self.armed = false;
    }
}

impl Drop for Unfinished {
    fn drop(&mut self) {
        if !self.armed {
            return;
        }
        tracing::error!(
            key = self.key,
            "a session ended without finishing; forgetting it"
        );
        self.conn.close();
        self.conn.shutdown();
        for conv in self.conn.take_subs() {
            self.node.hub.unsubscribe(&conv, self.key);
        }
        self.node.hub.close_connection(self.key);
    }
}

struct Session<T: Transport> {
    node: Arc<Node>,
    t: T,
    key: u64,
    /// The shared half: subscriptions with their last seq, unsent frames, handed-over work.
    conn: Arc<Conn>,
    auth: Option<Authed>,
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
    async fn serve(&mut self, pre_auth: Option<Box<PreAuth>>) -> End {
        if let Some(p) = pre_auth {
            let p = *p;
            match Box::pin(self.authenticate(None, p.principal, p.resume)).await {
                Ok(()) => {}
                Err(Fail::End(e)) => return e,
                Err(Fail::Reply(e)) => {
                    let _ = Box::pin(self.reply_error(None, e)).await;
                    return End::Close;
                }
            }
        }
        let mut timer_at = self.next_deadline();
        let timer = tokio::time::sleep_until(timer_at.into());
        tokio::pin!(timer);
        loop {
            let unsent = self.conn.backlog() > 0;
            if unsent {
                // Checked here too, not only by the timer: a client that keeps its socket busy
                // could keep the timer from ever being polled.
                if let Err(e) = self.check_stall(Instant::now()) {
                    return e;
                }
                // A backlog that does not move is a slow consumer: wake up for that too.
                let deadline = self.next_deadline();
                if deadline < timer_at {
                    timer_at = deadline;
                    timer.as_mut().reset(timer_at.into());
                }
            }
            let r = tokio::select! {
                biased;
                () = self.conn.attention() => Box::pin(self.on_attention()).await,
                () = self.conn.writable(), if unsent => self.conn.flush().map(|_| ()).map_err(End::from),
                ev = self.t.recv() => match ev {
                    None => Err(End::Gone),
                    Some(Inbound::Alive) => { self.last_seen = Instant::now(); Ok(()) }
                    Some(Inbound::Ping(payload)) => {
                        self.last_seen = Instant::now();
                        // Pings count as frames, and a client that is not reading gets no pong
                        // (RFC 6455 lets an endpoint answer only the latest): pongs cannot pile up.
                        if self.frame_bucket.try_take() && self.conn.backlog() == 0 {
                            self.conn.write(Out::Pong(payload)).map_err(End::from)
                        } else {
                            Ok(())
                        }
                    }
                    Some(Inbound::Frame(b)) => { self.last_seen = Instant::now(); Box::pin(self.on_frame(b)).await }
                    Some(Inbound::TooLarge(n)) => Box::pin(self.on_too_large(n)).await,
                },
                () = &mut timer => {
                    let r = Box::pin(self.on_timer()).await;
                    timer_at = self.next_deadline();
                    timer.as_mut().reset(timer_at.into());
                    r
                }
            };
            if let Err(e) = r {
                return e;
            }
        }
    }

    fn next_deadline(&self) -> Instant {
        let mut at = match &self.auth {
            None => self
                .next_ping
                .min(self.started + self.node.limits.auth_timeout),
            Some(a) => self.next_ping.min(a.expires_at),
        };
        if let Some(moved) = self.conn.backlog_moved_at() {
            at = at.min(moved + self.node.limits.write_timeout);
        }
        at
    }

    async fn on_attention(&mut self) -> Result<(), End> {
        if let Some(reason) = self.conn.reason() {
            return Err(End::Disconnect(reason));
        }
        if self.conn.failed() {
            return Err(End::Gone);
        }
        for _ in 0..DELIVERY_BATCH {
            match self.conn.next_handed_over() {
                Some(o) => self.on_outbound(o).await?,
                None => return Ok(()),
            }
        }
        // More is waiting: take it at the next turn (a bounded inbox keeps this finite).
        self.conn.poke();
        Ok(())
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
        // A client that does not read for the write timeout is a slow consumer.
        self.check_stall(now)?;
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
            self.conn.write(Out::Ping)?;
            self.last_ping = Some(now);
            self.next_ping = now + self.node.limits.heartbeat;
        }
        Ok(())
    }

    // ----- writing -----

    /// Waits while more than `limit` frames are unsent; a client that takes nothing for the
    /// write timeout is a slow consumer. Gives up at once when the connection is asked to end
    /// (it is looked at at least every [`ROOM_CHECK`]).
    async fn make_room(&mut self, limit: usize) -> Result<(), End> {
        while self.conn.backlog() > limit {
            if let Some(reason) = self.conn.reason() {
                return Err(End::Disconnect(reason));
            }
            if self.conn.flush()? || self.conn.backlog() <= limit {
                return Ok(());
            }
            self.check_stall(Instant::now())?;
            let _ = timeout(ROOM_CHECK, self.conn.writable()).await;
        }
        Ok(())
    }

    /// A backlog that has not moved for the write timeout is a slow consumer.
    fn check_stall(&self, now: Instant) -> Result<(), End> {
        match self.conn.backlog_moved_at() {
            Some(moved) if now >= moved + self.node.limits.write_timeout => {
                Err(End::Disconnect(DisconnectReason::SlowConsumer))
            }
            _ => Ok(()),
        }
    }

    /// Writes out everything unsent (the last frames; the caller bounds the time).
    async fn drain(&mut self) -> Result<(), End> {
        while !self.conn.flush()? {
            self.conn.writable().await;
        }
        Ok(())
    }

    async fn reply(&mut self, frame: ServerFrame) -> Result<(), End> {
        self.conn.write(Out::Text(frame.encode()))?;
        self.make_room(SESSION_HIGH_WATER).await
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
            (Some(a), _) => a.entry.user_id.clone(),
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
                if self.conn.is_subscribed(&conv) {
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
                // The sender's own copy must not overtake the reply.
                self.conn.hold(true);
                let r = self
                    .node
                    .publish(Publisher::User(&user_id), conv, body, client_msg_id)
                    .await;
                let r = match r {
                    Ok(r) => {
                        let reply = ServerFrame::Published {
                            id,
                            conv: r.conv,
                            seq: r.seq,
                            message_id: r.message_id,
                            ts: r.ts,
                        };
                        self.conn
                            .write(Out::Text(reply.encode()))
                            .map_err(Fail::from)
                    }
                    Err(e) => Err(Fail::Reply(e)),
                };
                self.conn.hold(false);
                r?;
                Ok(self.make_room(SESSION_HIGH_WATER).await?)
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

    /// Authenticates, sets up the resumed subscriptions and replays what they missed. Live
    /// messages wait meanwhile (held), so the order is `welcome`, refusals, missed messages,
    /// then live ones.
    async fn authenticate(
        &mut self,
        id: Option<RequestId>,
        principal: Principal,
        resume: BTreeMap<Conv, ResumePosition>,
    ) -> Result<(), Fail> {
        self.conn.hold(true);
        let r = self.authenticate_held(id, principal, resume).await;
        self.conn.hold(false);
        r
    }

    async fn authenticate_held(
        &mut self,
        id: Option<RequestId>,
        principal: Principal,
        resume: BTreeMap<Conv, ResumePosition>,
    ) -> Result<(), Fail> {
        let user_id = principal.user_id;
        let entry = ConnEntry {
            conn_id: switchboard_proto::ids::new_id("c"),
            user_id: user_id.clone(),
            session_id: principal.session_id,
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
        let conn_id = entry.conn_id.clone();
        self.auth = Some(Authed { entry, expires_at });

        let own = Conv::user(&user_id);
        let mut resume = resume;
        let own_since = resume.remove(&own);
        let mut resumed = BTreeMap::new();
        // (conv, last seq the client has): set in the same step as `welcome` is written.
        let mut subs: Vec<(Conv, u64)> = Vec::new();
        let mut replays = Vec::new();
        let mut refused = Vec::new();

        let (own, pos) = self.attach(&own).await?;
        match own_since {
            Some(p) => {
                let r = decide(&p, &pos);
                subs.push((own.clone(), r.from_seq - 1));
                resumed.insert(own.clone(), r);
                replays.push(own);
            }
            None => subs.push((own, pos.head_seq)),
        }
        for (conv, p) in resume {
            if subs.len() >= self.node.limits.max_subscriptions {
                refused.push((conv, Error::bad_request("too many subscriptions")));
                continue;
            }
            if let Err(e) = self.node.check_read(&user_id, &conv).await {
                refused.push((conv, e));
                continue;
            }
            let (conv, pos) = match self.attach(&conv).await {
                Ok(attached) => attached,
                Err(e) => {
                    refused.push((conv, e));
                    continue;
                }
            };
            let r = decide(&p, &pos);
            subs.push((conv.clone(), r.from_seq - 1));
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
        self.conn.subscribe_with(&subs, welcome.encode())?;
        self.make_room(SESSION_HIGH_WATER).await?;
        for (conv, e) in refused {
            let e = Error::new(e.code, format!("{conv}: {}", e.message));
            self.reply_error(id.clone(), e).await?;
        }
        for conv in replays {
            let last = subs
                .iter()
                .find(|(c, _)| *c == conv)
                .map_or(0, |(_, last)| *last);
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
        let already = self.conn.is_subscribed(&conv);
        if !already && self.conn.subscription_count() >= self.node.limits.max_subscriptions {
            let max = self.node.limits.max_subscriptions;
            return Err(Error::bad_request(format!(
                "a connection may hold at most {max} subscriptions"
            ))
            .into());
        }
        self.node.check_read(user_id, &conv).await?;
        let (conv, pos) = if already {
            let pos = self.node.backend.broker.position(&conv).await;
            (conv, pos.map_err(Error::from)?)
        } else {
            self.attach(&conv).await?
        };
        // Where the client stands; `None` keeps an existing subscription where it is.
        let (last, recovered, from_seq) = match since {
            None => ((!already).then_some(pos.head_seq), None, None),
            Some(since) => {
                let r = decide(&ResumePosition::WithEpoch { seq: since, epoch }, &pos);
                (Some(r.from_seq - 1), Some(r.recovered), Some(r.from_seq))
            }
        };
        let reply = ServerFrame::Subscribed {
            id,
            conv: conv.clone(),
            head_seq: pos.head_seq,
            epoch: pos.epoch,
            recovered,
            from_seq,
        }
        .encode();
        match last {
            Some(last) => self.conn.subscribe_with(&[(conv.clone(), last)], reply)?,
            None => self.conn.write(Out::Text(reply))?,
        }
        self.make_room(SESSION_HIGH_WATER).await?;
        if let Some(from) = from_seq {
            self.replay(&conv, from - 1, None).await?;
        }
        Ok(())
    }

    /// Adds a local subscription and bus interest, then reads the position. Returns the hub's
    /// name of `conv` (to record the subscription under) and the position. On failure the
    /// subscription is taken back.
    async fn attach(&mut self, conv: &Conv) -> Result<(Conv, Position), Error> {
        let (name, _) = self.node.hub.subscribe(conv, self.key, self.conn.clone());
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
            Ok::<_, Error>((name, self.node.backend.broker.position(conv).await?))
        }
        .await;
        if result.is_err() {
            self.detach(conv).await;
        }
        result
    }

    async fn detach(&mut self, conv: &Conv) {
        self.conn.remove_sub(conv);
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

    async fn on_outbound(&mut self, o: Outbound) -> Result<(), End> {
        match o {
            Outbound::Message(d) => self.deliver(d).await,
            Outbound::Revoke(conv) => {
                if !self.conn.is_subscribed(&conv) {
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

    /// A message the fan-out could not simply write: a repeat, a gap to fill from history
    /// first, or one that waited behind other work.
    async fn deliver(&mut self, d: Arc<Delivery>) -> Result<(), End> {
        let (conv, seq) = (&d.conv, d.message.seq);
        if let Sent::Gap(last) = self
            .conn
            .write_message(conv, seq, &d.frame, false, How::Now)?
        {
            Box::pin(self.replay(conv, last, Some(seq))).await?;
            self.conn
                .write_message(conv, seq, &d.frame, true, How::Now)?;
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
            for (i, m) in page.into_iter().enumerate() {
                if m.seq <= cursor {
                    continue;
                }
                cursor = m.seq;
                // Queued and written in batches; anything the client already got (live,
                // meanwhile) is skipped. Batches stay small so that a replay does not use up
                // the room live messages may take (`--outbound-queue`).
                let sent =
                    self.conn
                        .write_message(conv, m.seq, &m.encode_frame(), true, How::Later)?;
                if sent == Sent::NotSubscribed {
                    return Ok(());
                }
                if (i + 1) % SESSION_HIGH_WATER == 0 {
                    self.conn.flush()?;
                    self.make_room(SESSION_HIGH_WATER).await?;
                }
            }
            self.conn.flush()?;
            self.make_room(SESSION_HIGH_WATER).await?;
            if n < MAX_HISTORY_LIMIT as usize {
                return Ok(());
            }
        }
    }

    // ----- the end -----

    async fn finish(&mut self, end: End) {
        // From here on the fan-out leaves this connection alone.
        self.conn.close();
        let code = self.t.close_code();
        let end_reason = match end {
            End::Disconnect(reason) => Some(reason),
            _ => None,
        };
        let jitter_ms = self.node.limits.reconnect_jitter.as_millis() as u64;
        let _ = timeout(CLOSE_GRACE, async {
            let mut last = Vec::new();
            if let End::Disconnect(reason) = end {
                self.node.metrics.disconnect(reason);
                if reason == DisconnectReason::Shutdown {
                    let delay_ms = switchboard_proto::ids::random_u64() % jitter_ms.max(1);
                    last.push(
                        ServerFrame::Reconnect {
                            reason: "shutdown".into(),
                            delay_ms,
                        }
                        .encode(),
                    );
                }
                last.push(ServerFrame::Disconnect { reason }.encode());
            }
            if end_reason == Some(DisconnectReason::SlowConsumer) {
                // What waited is not sent (the client resumes from history): the disconnect
                // goes out now, not behind a backlog the client is not reading.
                self.conn.discard_unsent();
            }
            for frame in last {
                self.conn.write(Out::Text(frame))?;
            }
            self.conn.write(Out::Close(code))?;
            self.drain().await
        })
        .await;
        self.conn.shutdown();
        if let Some(a) = self.auth.take() {
            for conv in self.conn.take_subs() {
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

    struct Nothing;
    impl Transport for Nothing {
        async fn recv(&mut self) -> Option<Inbound> {
            None
        }
    }

    /// The session's future is allocated once per connection: keep an eye on its size.
    #[test]
    fn the_session_future_stays_small() {
        fn returned_size<F: FnOnce() -> Fut, Fut>(_: F) -> usize {
            std::mem::size_of::<Fut>()
        }
        #[allow(unreachable_code)]
        let size = returned_size(|| run_session(unreachable!(), Nothing, unreachable!(), None));
        println!(
            "run_session future: {size} bytes; Session: {} bytes",
            std::mem::size_of::<Session<Nothing>>()
        );
        // Every idle connection holds this future: a regression here is memory per connection.
        assert!(size <= 800, "the session future grew to {size} bytes");
    }
}
