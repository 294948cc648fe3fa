//! The background task that owns the live connection: dispatch, connect, authenticate with
//! resume, route replies to waiting requests, feed messages through the tracker, and start over
//! on any failure.
//!
//! Every frame comes in typed ([`ServerFrame`]); one that cannot be decoded is logged and, when
//! its `id` could be read, fails the request it answers. Events go out through a bounded
//! channel: while the application does not read them, the driver waits (and so stops reading
//! the connection), which is backpressure rather than an unbounded buffer.

use crate::connect::{RoundError, Welcome, attempt_round};
use crate::dispatch::{Backoff, jitter};
use crate::link::{Incoming, Link};
use crate::net::Net;
use crate::{ClientConfig, ClientError, Cmd, Event, Request, Shared, Transport, lock};
use serde_json::{Value, json};
use std::collections::{BTreeMap, VecDeque};
use std::sync::Arc;
use std::time::Duration;
use switchboard_proto::ServerFrame;
use tokio::sync::{mpsc, oneshot};
use tokio::time::Instant;

/// Who waits for a request's answer.
enum Waiter {
    /// The application.
    App(oneshot::Sender<Result<ServerFrame, ClientError>>),
    /// The first connection's subscription of the own stream (`connect` returns after it).
    Setup,
    /// A gap fill of this conversation.
    Fill(String),
    /// Nobody (an internal request whose answer does not matter).
    Nobody,
}

struct Pending {
    req: Request,
    waiter: Waiter,
}

impl Pending {
    fn abandoned(&self) -> bool {
        matches!(&self.waiter, Waiter::App(tx) if tx.is_closed())
    }
}

/// Why a live connection ended.
enum After {
    /// Reconnect after this delay.
    Reconnect { delay: Duration, reason: String },
    /// The server ended the session for good.
    Final(String),
    /// The application closed the client.
    Closed,
}

/// Why no connection could be made.
enum Stop {
    Closed,
    Fatal(ClientError),
}

pub(crate) struct Driver {
    cfg: Arc<ClientConfig>,
    net: Net,
    cmds: mpsc::Receiver<Cmd>,
    events: mpsc::Sender<Event>,
    shared: Shared,
    next_id: u64,
    /// Requests waiting for a connection.
    queue: VecDeque<Pending>,
    /// Requests sent on the current connection, by id.
    inflight: BTreeMap<u64, Pending>,
    backoff: Backoff,
    /// Whether the user's own stream is wanted (until the application unsubscribes it).
    own_wanted: bool,
    own_conv: Option<String>,
    ready: Option<oneshot::Sender<Result<(), ClientError>>>,
    closing: Option<oneshot::Sender<()>>,
    /// Messages whose body could not be read, by `(conv, seq)`, with the reason: they go
    /// through the tracker like any message (so no gap stalls on them) and come out as
    /// [`Event::Unreadable`]. Bounded: see [`Driver::readable`].
    unreadable: BTreeMap<(String, u64), String>,
    /// Set when this connection must end so that the resume fetches what it could not (a gap
    /// fill refused for a passing reason); the reason.
    resync: Option<String>,
}

/// Unreadable messages remembered at once; past it some are forgotten (held behind a gap that
/// a reconnect dropped, they come again and are remembered again).
const MAX_UNREADABLE: usize = 256;

impl Driver {
    pub fn new(
        cfg: ClientConfig,
        net: Net,
        cmds: mpsc::Receiver<Cmd>,
        events: mpsc::Sender<Event>,
        shared: Shared,
        ready: oneshot::Sender<Result<(), ClientError>>,
    ) -> Driver {
        let backoff = Backoff::new(cfg.backoff_base, cfg.backoff_max);
        Driver {
            cfg: Arc::new(cfg),
            net,
            cmds,
            events,
            shared,
            next_id: 0,
            queue: VecDeque::new(),
            inflight: BTreeMap::new(),
            backoff,
            own_wanted: true,
            own_conv: None,
            ready: Some(ready),
            closing: None,
            unreadable: BTreeMap::new(),
            resync: None,
        }
    }

    fn next_id(&mut self) -> u64 {
        self.next_id += 1;
        self.next_id
    }

    /// Hands an event to the application, waiting while its buffer is full (an application
    /// that dropped [`crate::Events`] gets nothing, at no cost).
    async fn emit(&self, e: Event) {
        let _ = self.events.send(e).await;
    }

    /// Runs until the client is closed or the server ends the session.
    pub async fn run(mut self) {
        let mut delay = Duration::ZERO;
        loop {
            if !delay.is_zero() && !self.wait(delay).await {
                break;
            }
            let (mut link, welcome, auth_id) = match self.establish().await {
                Ok(x) => x,
                Err(Stop::Closed) => break,
                Err(Stop::Fatal(e)) => {
                    match self.ready.take() {
                        Some(ready) => {
                            let _ = ready.send(Err(e));
                        }
                        None => {
                            self.emit(Event::ServerDisconnect {
                                reason: match &e {
                                    ClientError::Server { code, .. } => code.clone(),
                                    other => other.to_string(),
                                },
                            })
                            .await
                        }
                    }
                    break;
                }
            };
            self.backoff.reset();
            let after = self.live(&mut link, welcome, auth_id).await;
            link.close().await;
            self.dropped();
            match after {
                After::Reconnect { delay: d, reason } => {
                    tracing::info!(%reason, delay_ms = d.as_millis() as u64, "disconnected; reconnecting");
                    self.emit(Event::Disconnected { reason }).await;
                    delay = d;
                }
                After::Final(reason) => {
                    tracing::info!(%reason, "the server ended the session");
                    self.emit(Event::ServerDisconnect { reason }).await;
                    break;
                }
                After::Closed => break,
            }
        }
        for p in self
            .queue
            .drain(..)
            .chain(std::mem::take(&mut self.inflight).into_values())
        {
            if let Waiter::App(tx) = p.waiter {
                let _ = tx.send(Err(ClientError::Closed));
            }
        }
        let done = self.closing.take();
        drop(self);
        if let Some(done) = done {
            let _ = done.send(());
        }
    }

    /// A command while no connection is up: requests wait for the next one. False when the
    /// client is closing.
    fn offline(&mut self, cmd: Option<Cmd>) -> bool {
        match cmd {
            None => false,
            Some(Cmd::Close { done }) => {
                self.closing = Some(done);
                false
            }
            Some(Cmd::Request { req, reply }) => {
                self.queue.retain(|p| !p.abandoned());
                self.queue.push_back(Pending {
                    req,
                    waiter: Waiter::App(reply),
                });
                true
            }
        }
    }

    /// Sleeps `d`, taking commands meanwhile. False when the client is closing.
    async fn wait(&mut self, d: Duration) -> bool {
        let until = Instant::now() + d;
        loop {
            tokio::select! {
                _ = tokio::time::sleep_until(until) => return true,
                cmd = self.cmds.recv() => if !self.offline(cmd) { return false },
            }
        }
    }

    /// `{conv: {seq, epoch}}` for every tracked conversation.
    fn resume(&self) -> Value {
        let positions = lock(&self.shared).tracker.positions();
        let mut map = serde_json::Map::new();
        for (conv, (epoch, seq)) in positions {
            map.insert(conv, json!({"seq": seq, "epoch": epoch}));
        }
        Value::Object(map)
    }

    /// Dispatch and connect, in rounds separated by backoff, until a node welcomes us.
    async fn establish(&mut self) -> Result<(Link, Welcome, u64), Stop> {
        loop {
            let auth_id = self.next_id();
            let round = attempt_round(self.cfg.clone(), self.net.clone(), self.resume(), auth_id);
            tokio::pin!(round);
            let (hint, outcome) = loop {
                tokio::select! {
                    r = &mut round => break r,
                    cmd = self.cmds.recv() => if !self.offline(cmd) { return Err(Stop::Closed) },
                }
            };
            if let Some(h) = hint {
                self.backoff.hint(h);
            }
            let delay = match outcome {
                Ok((link, welcome)) => return Ok((link, welcome, auth_id)),
                Err(RoundError::Fatal(e)) => return Err(Stop::Fatal(e)),
                Err(RoundError::Overloaded(retry_after)) => {
                    self.note_error("dispatcher: every node is full or draining".into());
                    self.backoff.next_delay();
                    retry_after + jitter(self.backoff.base)
                }
                Err(RoundError::Failed(e)) => {
                    self.note_error(e);
                    self.backoff.next_delay()
                }
            };
            tracing::debug!(
                delay_ms = delay.as_millis() as u64,
                "no connection; retrying"
            );
            if !self.wait(delay).await {
                return Err(Stop::Closed);
            }
        }
    }

    fn note_error(&self, e: String) {
        tracing::debug!(error = %e, "connection attempt failed");
        lock(&self.shared).last_error = Some(e);
    }

    /// After a connection ended: held messages go, retried requests wait for the next
    /// connection, the others fail.
    fn dropped(&mut self) {
        {
            let mut s = lock(&self.shared);
            s.tracker.on_disconnect();
            s.node_id = None;
        }
        for (_, p) in std::mem::take(&mut self.inflight) {
            match p.waiter {
                Waiter::App(tx) if !p.req.retried() => {
                    let _ = tx.send(Err(ClientError::Disconnected));
                }
                Waiter::App(_) => self.queue.push_back(p),
                Waiter::Setup | Waiter::Fill(_) | Waiter::Nobody => {}
            }
        }
    }

    async fn send_request(&mut self, link: &Link, p: Pending) {
        if p.abandoned() {
            return;
        }
        // The server subscribes every connection to the own stream at auth, so a `subscribed`
        // answer for it would not be a fresh start: unsubscribe first so that `head_seq` is
        // exactly where live messages begin. (Anything missed between is fetched as a gap.)
        if let Request::Subscribe { conv } = &p.req
            && self.own_conv.as_deref() == Some(conv.as_str())
            && !lock(&self.shared).tracker.is_tracked(conv)
        {
            let id = self.next_id();
            let req = Request::Unsubscribe { conv: conv.clone() };
            link.send(&req.frame(id)).await;
            self.inflight.insert(
                id,
                Pending {
                    req,
                    waiter: Waiter::Nobody,
                },
            );
        }
        let id = self.next_id();
        link.send(&p.req.frame(id)).await;
        self.inflight.insert(id, p);
    }

    /// Serves one connection until it ends.
    async fn live(&mut self, link: &mut Link, welcome: Welcome, auth_id: u64) -> After {
        let own = format!("user:{}", welcome.user_id);
        self.own_conv = Some(own.clone());
        {
            let mut s = lock(&self.shared);
            s.node_id = Some(welcome.node_id.clone());
            s.user_id = Some(welcome.user_id.clone());
            s.last_error = None;
        }
        tracing::info!(node_id = %welcome.node_id, transport = %link.transport, "connected");
        self.emit(Event::Connected {
            node_id: welcome.node_id.clone(),
            transport: link.transport,
        })
        .await;
        for (conv, r) in &welcome.resumed {
            lock(&self.shared)
                .tracker
                .on_resumed(conv.as_str(), r.recovered, r.from_seq, &r.epoch);
            self.emit(Event::Resumed {
                conv: conv.to_string(),
                recovered: r.recovered,
                from_seq: r.from_seq,
            })
            .await;
        }
        let own_tracked = lock(&self.shared).tracker.is_tracked(&own);
        if self.own_wanted && !own_tracked {
            let waiter = if self.ready.is_some() {
                Waiter::Setup
            } else {
                Waiter::Nobody
            };
            let req = Request::Subscribe { conv: own };
            self.send_request(link, Pending { req, waiter }).await;
        } else if let Some(ready) = self.ready.take() {
            let _ = ready.send(Ok(()));
        }
        while let Some(p) = self.queue.pop_front() {
            self.send_request(link, p).await;
        }

        let silence = match link.transport {
            Transport::LongPoll => None,
            _ if welcome.heartbeat_ms == 0 => None,
            _ => Some(Duration::from_millis(
                welcome.heartbeat_ms.saturating_mul(5) / 2,
            )),
        };
        let far = Duration::from_secs(3600 * 24 * 365);
        let mut dead_at = Instant::now() + silence.unwrap_or(far);
        loop {
            tokio::select! {
                cmd = self.cmds.recv() => match cmd {
                    None => return After::Closed,
                    Some(Cmd::Close { done }) => {
                        self.closing = Some(done);
                        return After::Closed;
                    }
                    Some(Cmd::Request { req, reply }) => {
                        self.send_request(link, Pending { req, waiter: Waiter::App(reply) }).await;
                    }
                },
                inc = link.inc.recv() => {
                    dead_at = Instant::now() + silence.unwrap_or(far);
                    match inc {
                        None => return self.reconnect("connection closed".into()),
                        Some(Incoming::Closed(reason)) => return self.reconnect(reason),
                        Some(Incoming::Alive) => {}
                        Some(Incoming::Frame(f)) => {
                            if let Some(after) = self.on_frame(link, f, auth_id).await {
                                return after;
                            }
                        }
                        Some(Incoming::Unreadable(e)) => self.on_unreadable(link, e).await,
                    }
                }
                _ = tokio::time::sleep_until(dead_at), if silence.is_some() => {
                    // Frames waiting means the driver was held up (by a full event stream),
                    // not that the server went silent.
                    if link.inc.is_empty() {
                        return self.reconnect("heartbeat timeout: the server went silent".into());
                    }
                    dead_at = Instant::now() + silence.unwrap_or(far);
                }
            }
        }
    }

    fn reconnect(&mut self, reason: String) -> After {
        After::Reconnect {
            delay: self.backoff.next_delay(),
            reason,
        }
    }
}

#[path = "driver_incoming.rs"]
mod incoming;

#[cfg(test)]
#[path = "driver_tests.rs"]
mod tests;
