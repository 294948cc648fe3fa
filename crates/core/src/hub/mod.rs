//! The fan-out hub: which local connections want which conversation, and the delivery of
//! messages to them.
//!
//! A message reaching the node is encoded once into a `message` frame; every subscriber then
//! gets the same shared bytes. The frame is kept with the message ([`Message::encode_frame`](switchboard_proto::Message::encode_frame)),
//! so a sender's session writing its own copy of what it published shares those bytes too. A subscriber for which the message is simply next is written to
//! right where the fan-out runs, without waking its task (see [`crate::conn`]); the rest is
//! handed to its session. Nothing waits without bound: a connection with too much waiting is
//! cut as a slow consumer, and the client resumes from history and loses nothing.
//!
//! Where the fan-out runs: a conversation with few local subscribers is written to on the
//! thread that delivers the message (the embedded bus thread, or the embedded writer for a
//! small commit; the Redis pub/sub task). A larger one is split over the fan-out threads, one
//! part each, by connection key: a connection always gets its messages from the same thread,
//! in the order they were delivered, and the sockets of one large room are written from every
//! core at once.

mod keys;
mod runs;
mod subscribers;

use crate::backend::{BusSink, ControlEvent};
use crate::conn::Conn;
use crate::delivery::Delivery;
use crate::metrics::Metrics;
use keys::Keys;
use parking_lot::{Mutex, RwLock};
use runs::gather_runs;
use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::mpsc;
use subscribers::Subscribers;
use switchboard_proto::{Conv, DisconnectReason, Message};

/// A local connection, for control events (logout, kick, revoke, shutdown). `auth` is set
/// once it authenticated: (user id, auth session id).
struct ConnMeta {
    auth: Option<(Arc<str>, Arc<str>)>,
    conn: Arc<Conn>,
}

#[derive(Default)]
struct Conns {
    by_key: HashMap<u64, ConnMeta>,
    by_user: HashMap<Arc<str>, Keys>,
}

const SHARDS: usize = 32;

/// One shard of the subscription map: conv -> its local subscribers.
type Shard = RwLock<HashMap<Conv, Subscribers>>;

/// Subscribers up to which a message is written to on the delivering thread itself; past it,
/// the fan-out threads share the work. Below this, handing over costs more than it saves.
const INLINE_SUBSCRIBERS: usize = 32;

/// Messages queued per fan-out thread before the delivering thread waits (back-pressure on
/// the bus instead of unbounded memory).
const FANOUT_QUEUE: usize = 4096;

/// One part of a large fan-out: the subscribers whose key falls in `part` of `parts`, offered
/// a run of messages of one conversation.
struct Job {
    run: Arc<[Arc<Delivery>]>,
    subs: Subscribers,
    part: usize,
    parts: usize,
}

/// The node's local subscriptions and connections.
pub struct Hub {
    /// conv -> subscribers, sharded to keep lock hold times short.
    shards: Box<[Shard]>,
    conns: Mutex<Conns>,
    next_key: AtomicU64,
    open: AtomicUsize,
    metrics: Arc<Metrics>,
    /// The fan-out threads' queues (they end when the hub is dropped).
    fanout: Vec<mpsc::SyncSender<Job>>,
}

impl Hub {
    /// An empty hub reporting into `metrics`, with `fanout_threads` threads writing large
    /// fan-outs (0: everything is written on the delivering thread).
    pub fn new(metrics: Arc<Metrics>, fanout_threads: usize) -> Hub {
        let fanout = (0..fanout_threads)
            .map(|i| {
                let (tx, rx) = mpsc::sync_channel::<Job>(FANOUT_QUEUE);
                let metrics = metrics.clone();
                std::thread::Builder::new()
                    .name(format!("fanout-{i}"))
                    .spawn(move || {
                        while let Ok(job) = rx.recv() {
                            // A panic must not end the thread: its share of every large room
                            // would silently get nothing more.
                            let r = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                                offer_all(&job.run, &job.subs, job.part, job.parts)
                            }));
                            match r {
                                Ok(n) => {
                                    metrics.messages_delivered.inc_by(n);
                                }
                                Err(_) => tracing::error!("a fan-out job panicked"),
                            }
                        }
                    })
                    .expect("spawning a fan-out thread");
                tx
            })
            .collect();
        Hub {
            shards: (0..SHARDS).map(|_| RwLock::new(HashMap::new())).collect(),
            conns: Mutex::new(Conns::default()),
            next_key: AtomicU64::new(1),
            open: AtomicUsize::new(0),
            metrics,
            fanout,
        }
    }

    fn shard(&self, conv: &Conv) -> &Shard {
        // FNV-1a: stable and cheap; the distribution only needs to spread conversations.
        let mut h: u64 = 0xcbf29ce484222325;
        for b in conv.as_str().bytes() {
            h = (h ^ b as u64).wrapping_mul(0x100000001b3);
        }
        &self.shards[(h as usize) % SHARDS]
    }

    /// Records a new transport connection (authenticated or not) and gives it a local key.
    /// Every connection is known from here on, so shutdown reaches even unauthenticated ones.
    pub fn open_connection(&self, conn: Arc<Conn>) -> u64 {
        self.open.fetch_add(1, Ordering::AcqRel);
        self.metrics.connections.inc();
        self.metrics.connections_opened.inc();
        let key = self.next_key.fetch_add(1, Ordering::Relaxed);
        self.conns
            .lock()
            .by_key
            .insert(key, ConnMeta { auth: None, conn });
        key
    }

    /// Forgets a connection that ended.
    pub fn close_connection(&self, key: u64) {
        let mut c = self.conns.lock();
        if let Some(meta) = c.by_key.remove(&key)
            && let Some((user, _)) = meta.auth
            && let Some(keys) = c.by_user.get_mut(&user)
            && keys.remove(key)
        {
            c.by_user.remove(&user);
        }
        drop(c);
        self.open.fetch_sub(1, Ordering::AcqRel);
        self.metrics.connections.dec();
    }

    /// Open transport connections on this node.
    pub fn open_connections(&self) -> usize {
        self.open.load(Ordering::Acquire)
    }

    /// Marks a connection authenticated so control events about its user can find it.
    /// The ids are the connection's own (shared with its registry entry), not copies.
    pub fn register(&self, key: u64, user_id: Arc<str>, session_id: Arc<str>) {
        let mut c = self.conns.lock();
        if let Some(meta) = c.by_key.get_mut(&key) {
            meta.auth = Some((user_id.clone(), session_id));
            c.by_user
                .entry(user_id)
                .and_modify(|keys| keys.push(key))
                .or_insert(Keys::One(key));
        }
    }

    /// Adds a subscriber. Returns the hub's own name for `conv` (equal to it; the one
    /// deliveries carry: use it for the connection's subscription) and whether this is the first
    /// local subscriber.
    pub fn subscribe(&self, conv: &Conv, key: u64, conn: Arc<Conn>) -> (Conv, bool) {
        use std::collections::hash_map::Entry;
        let mut shard = self.shard(conv).write();
        let (name, subs) = match shard.entry(conv.clone()) {
            Entry::Occupied(e) => (e.key().clone(), e.into_mut()),
            Entry::Vacant(e) => (e.key().clone(), e.insert(Subscribers::default())),
        };
        let first = subs.is_empty();
        if subs.add(key, conn) {
            self.metrics.subscriptions.inc();
        }
        (name, first)
    }

    /// Removes a subscriber; true if no local subscriber of `conv` is left.
    pub fn unsubscribe(&self, conv: &Conv, key: u64) -> bool {
        let mut shard = self.shard(conv).write();
        let Some(subs) = shard.get_mut(conv) else {
            return true;
        };
        if subs.remove(key) {
            self.metrics.subscriptions.dec();
        }
        if subs.is_empty() {
            shard.remove(conv);
            true
        } else {
            false
        }
    }

    /// Local subscribers of `conv`.
    pub fn subscriber_count(&self, conv: &Conv) -> usize {
        self.shard(conv).read().get(conv).map_or(0, |s| s.len())
    }

    /// Ends up to `n` connections not yet told to end, with `reason` (paced drain). Returns how
    /// many were told.
    pub fn kill_some(&self, n: usize, reason: DisconnectReason) -> usize {
        let c = self.conns.lock();
        c.by_key
            .values()
            .filter(|m| m.conn.reason().is_none())
            .take(n)
            .filter(|m| m.conn.kill(reason))
            .count()
    }

    /// Ends every connection of this node with `reason` (shutdown).
    pub fn kill_all(&self, reason: DisconnectReason) -> usize {
        let c = self.conns.lock();
        c.by_key.values().filter(|m| m.conn.kill(reason)).count()
    }

    fn matching(&self, user_id: &str, session_id: Option<&str>, mut f: impl FnMut(&Conn)) {
        let c = self.conns.lock();
        let Some(keys) = c.by_user.get(user_id) else {
            return;
        };
        for meta in keys.iter().filter_map(|k| c.by_key.get(k)) {
            let session_ok = match (&meta.auth, session_id) {
                (_, None) => true,
                (Some((_, s)), Some(want)) => **s == *want,
                (None, Some(_)) => false,
            };
            if session_ok {
                f(&meta.conn);
            }
        }
    }
}

/// Queues a job for a fan-out thread. A full queue makes the delivering thread wait (the bus
/// slows down rather than memory growing); on a tokio worker (the Redis backend delivers from a
/// task) that wait is announced to the runtime, so the worker's other tasks move elsewhere.
fn send_job(tx: &mpsc::SyncSender<Job>, job: Job) -> Result<(), ()> {
    let job = match tx.try_send(job) {
        Ok(()) => return Ok(()),
        Err(mpsc::TrySendError::Disconnected(_)) => return Err(()),
        Err(mpsc::TrySendError::Full(job)) => job,
    };
    let on_worker = tokio::runtime::Handle::try_current()
        .is_ok_and(|h| h.runtime_flavor() == tokio::runtime::RuntimeFlavor::MultiThread);
    let r = if on_worker {
        tokio::task::block_in_place(|| tx.send(job))
    } else {
        tx.send(job)
    };
    r.map_err(|_| ())
}

/// Offers `run` (messages of one conversation, in seq order) to the subscribers in `part` of
/// `parts`; returns how many deliveries they took. A panic while offering to one subscriber is
/// caught there: the others still get the run (found in review: caught per run, it cost every
/// subscriber after that one the whole run).
fn offer_all(run: &[Arc<Delivery>], subs: &Subscribers, part: usize, parts: usize) -> u64 {
    let mut delivered = 0;
    for (key, conn) in subs.iter() {
        if (*key as usize) % parts == part {
            let offered = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| match run {
                [one] => u64::from(conn.offer(one)),
                _ => conn.offer_run(run),
            }));
            match offered {
                Ok(n) => delivered += n,
                Err(_) => tracing::error!("offering messages to a connection panicked"),
            }
        }
    }
    delivered
}

impl Hub {
    /// Delivers `messages` (one conversation's, in seq order) to its local subscribers: each
    /// takes what is simply next for it in one write.
    fn deliver_run(&self, messages: &[Arc<Message>]) {
        let Some(first) = messages.first() else {
            return;
        };
        self.metrics
            .bus_messages_received
            .inc_by(messages.len() as u64);
        let Some((conv, subs)) = self
            .shard(&first.conv)
            .read()
            .get_key_value(&first.conv)
            .map(|(c, s)| (c.clone(), s.clone()))
        else {
            return;
        };
        let delivery = |message: &Arc<Message>| {
            Arc::new(Delivery {
                conv: conv.clone(),
                frame: message.encode_frame(),
                message: message.clone(),
            })
        };
        // Most runs are one message (a DM's copy): no list for it.
        let (one, many): (Option<Arc<Delivery>>, Vec<Arc<Delivery>>) = match messages {
            [m] => (Some(delivery(m)), Vec::new()),
            _ => (None, messages.iter().map(delivery).collect()),
        };
        let run = match &one {
            Some(d) => std::slice::from_ref(d),
            None => &many[..],
        };
        if subs.len() <= INLINE_SUBSCRIBERS || self.fanout.is_empty() {
            let n = offer_all(run, &subs, 0, 1);
            self.metrics.messages_delivered.inc_by(n);
            return;
        }
        let run: Arc<[Arc<Delivery>]> = run.into();
        let parts = self.fanout.len();
        for (part, tx) in self.fanout.iter().enumerate() {
            let job = Job {
                run: run.clone(),
                subs: subs.clone(),
                part,
                parts,
            };
            if send_job(tx, job).is_err() {
                tracing::error!("a fan-out thread is gone");
            }
        }
    }

    /// [`Hub::deliver_run`] for each run, one panic not stopping the others.
    fn deliver_runs<'a>(&self, runs: impl Iterator<Item = &'a [Arc<Message>]>) {
        for run in runs {
            let r =
                std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| self.deliver_run(run)));
            if r.is_err() {
                tracing::error!("delivering a conversation's messages panicked");
            }
        }
    }
}

impl BusSink for Hub {
    fn deliver(&self, message: Arc<Message>) {
        self.deliver_run(std::slice::from_ref(&message));
    }

    /// A commit's messages, gathered by conversation (each keeping its seq order; the order
    /// between conversations is not promised): a subscriber gets a conversation's new messages
    /// in one write. A panic while delivering one conversation's does not stop the others'.
    fn deliver_all(&self, mut messages: Vec<Arc<Message>>) {
        match gather_runs(&mut messages) {
            None => self.deliver_runs(messages.chunks(1)),
            Some(ends) => {
                let starts = std::iter::once(0).chain(ends.iter().copied());
                self.deliver_runs(starts.zip(ends.iter()).map(|(a, &b)| &messages[a..b]));
            }
        }
    }

    fn subscribers(&self, conv: &Conv) -> usize {
        self.shard(conv)
            .read()
            .get(conv)
            .map_or(0, Subscribers::len)
    }

    fn control(&self, event: ControlEvent) {
        match event {
            ControlEvent::DisconnectSession {
                user_id,
                session_id,
                reason,
            } => self.matching(&user_id, Some(&session_id), |c| {
                c.kill(reason);
            }),
            ControlEvent::DisconnectUser { user_id, reason } => {
                self.matching(&user_id, None, |c| {
                    c.kill(reason);
                })
            }
            ControlEvent::Revoke { user_id, conv } => {
                self.matching(&user_id, None, |c| c.revoke(conv.clone()))
            }
        }
    }
}

#[cfg(test)]
mod tests;
