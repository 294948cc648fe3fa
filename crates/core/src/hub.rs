//! The fan-out hub: which local connections want which conversation, and the delivery of
//! messages to their bounded queues.
//!
//! A message reaching the node is encoded once into a `message` frame; every subscriber's
//! queue then gets an `Arc` of the same bytes, so an extra subscriber costs a reference count
//! and a queue slot. Queues are bounded: a full queue marks the connection as a slow consumer,
//! and its session ends it (the client resumes from history and loses nothing).

use crate::backend::{BusSink, ControlEvent};
use crate::metrics::Metrics;
use bytes::Bytes;
use parking_lot::{Mutex, RwLock};
use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU8, AtomicU64, AtomicUsize, Ordering};
use switchboard_proto::{Conv, DisconnectReason, Message};
use tokio::sync::{Notify, mpsc};

/// A message on its way to local subscribers: the message and its encoded frame, shared.
#[derive(Debug)]
pub struct Delivery {
    /// The message (its conv and seq drive ordering and deduplication in the session).
    pub message: Arc<Message>,
    /// The `{"type":"message",...}` frame, encoded once per node.
    pub frame: Bytes,
}

/// What reaches a connection through its outbound queue.
#[derive(Debug)]
pub enum Outbound {
    /// A message of a subscribed conversation.
    Message(Arc<Delivery>),
    /// Access to a conversation was withdrawn (removed from a private room): end that
    /// subscription. Sent through the same queue so it stays ordered with the messages.
    Revoke(Conv),
}

/// Sender half of a connection's outbound queue.
pub type OutboundTx = mpsc::Sender<Outbound>;
/// Receiver half of a connection's outbound queue.
pub type OutboundRx = mpsc::Receiver<Outbound>;

/// Ends one connection from outside its task: the first reason given wins.
#[derive(Debug, Default)]
pub struct KillSwitch {
    reason: AtomicU8,
    notify: Notify,
}

const REASONS: [DisconnectReason; 6] = [
    DisconnectReason::LoggedOut,
    DisconnectReason::Kicked,
    DisconnectReason::SlowConsumer,
    DisconnectReason::AuthExpired,
    DisconnectReason::ProtocolError,
    DisconnectReason::Shutdown,
];

impl KillSwitch {
    /// Asks the connection to end with `reason`. Returns false if it was already asked.
    pub fn kill(&self, reason: DisconnectReason) -> bool {
        let code = REASONS.iter().position(|r| *r == reason).unwrap_or(0) as u8 + 1;
        let first = self
            .reason
            .compare_exchange(0, code, Ordering::AcqRel, Ordering::Acquire)
            .is_ok();
        if first {
            // notify_one stores a permit when nobody waits yet, so the session cannot miss it.
            self.notify.notify_one();
        }
        first
    }

    /// The reason given, if any.
    pub fn reason(&self) -> Option<DisconnectReason> {
        match self.reason.load(Ordering::Acquire) {
            0 => None,
            n => REASONS.get(n as usize - 1).copied(),
        }
    }

    /// Completes once [`KillSwitch::kill`] was called.
    pub async fn killed(&self) -> DisconnectReason {
        loop {
            if let Some(r) = self.reason() {
                return r;
            }
            self.notify.notified().await;
        }
    }
}

/// A local subscriber of a conversation.
#[derive(Clone)]
struct Subscriber {
    tx: OutboundTx,
    kill: Arc<KillSwitch>,
}

/// A local connection, for control events (logout, kick, revoke, shutdown). `auth` is set
/// once it authenticated: (user id, auth session id).
struct ConnMeta {
    auth: Option<(Arc<str>, Arc<str>)>,
    kill: Arc<KillSwitch>,
    tx: OutboundTx,
}

#[derive(Default)]
struct Conns {
    by_key: HashMap<u64, ConnMeta>,
    by_user: HashMap<Arc<str>, Vec<u64>>,
}

const SHARDS: usize = 32;

/// One shard of the subscription map: conv -> (connection key -> subscriber).
type Shard = RwLock<HashMap<Conv, HashMap<u64, Subscriber>>>;

/// The node's local subscriptions and connections.
pub struct Hub {
    /// conv -> (connection key -> subscriber), sharded to keep lock hold times short.
    shards: Box<[Shard]>,
    conns: Mutex<Conns>,
    next_key: AtomicU64,
    open: AtomicUsize,
    metrics: Arc<Metrics>,
}

impl Hub {
    /// An empty hub reporting into `metrics`.
    pub fn new(metrics: Arc<Metrics>) -> Hub {
        Hub {
            shards: (0..SHARDS).map(|_| RwLock::new(HashMap::new())).collect(),
            conns: Mutex::new(Conns::default()),
            next_key: AtomicU64::new(1),
            open: AtomicUsize::new(0),
            metrics,
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
    pub fn open_connection(&self, kill: Arc<KillSwitch>, tx: OutboundTx) -> u64 {
        self.open.fetch_add(1, Ordering::AcqRel);
        self.metrics.connections.inc();
        self.metrics.connections_opened.inc();
        let key = self.next_key.fetch_add(1, Ordering::Relaxed);
        self.conns.lock().by_key.insert(
            key,
            ConnMeta {
                auth: None,
                kill,
                tx,
            },
        );
        key
    }

    /// Forgets a connection that ended.
    pub fn close_connection(&self, key: u64) {
        let mut c = self.conns.lock();
        if let Some(meta) = c.by_key.remove(&key)
            && let Some((user, _)) = meta.auth
            && let Some(keys) = c.by_user.get_mut(&user)
        {
            keys.retain(|k| *k != key);
            if keys.is_empty() {
                c.by_user.remove(&user);
            }
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
    pub fn register(&self, key: u64, user_id: &str, session_id: &str) {
        let user: Arc<str> = Arc::from(user_id);
        let mut c = self.conns.lock();
        if let Some(meta) = c.by_key.get_mut(&key) {
            meta.auth = Some((user.clone(), Arc::from(session_id)));
            c.by_user.entry(user).or_default().push(key);
        }
    }

    /// Adds a subscriber; true if it is the first local one for `conv`.
    pub fn subscribe(&self, conv: &Conv, key: u64, tx: OutboundTx, kill: Arc<KillSwitch>) -> bool {
        let mut shard = self.shard(conv).write();
        let subs = shard.entry(conv.clone()).or_default();
        let first = subs.is_empty();
        if subs.insert(key, Subscriber { tx, kill }).is_none() {
            self.metrics.subscriptions.inc();
        }
        first
    }

    /// Removes a subscriber; true if no local subscriber of `conv` is left.
    pub fn unsubscribe(&self, conv: &Conv, key: u64) -> bool {
        let mut shard = self.shard(conv).write();
        let Some(subs) = shard.get_mut(conv) else {
            return true;
        };
        if subs.remove(&key).is_some() {
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
            .filter(|m| m.kill.reason().is_none())
            .take(n)
            .filter(|m| m.kill.kill(reason))
            .count()
    }

    /// Ends every connection of this node with `reason` (shutdown).
    pub fn kill_all(&self, reason: DisconnectReason) -> usize {
        let c = self.conns.lock();
        c.by_key.values().filter(|m| m.kill.kill(reason)).count()
    }

    fn matching(&self, user_id: &str, session_id: Option<&str>, mut f: impl FnMut(&ConnMeta)) {
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
                f(meta);
            }
        }
    }
}

impl BusSink for Hub {
    fn deliver(&self, message: Arc<Message>) {
        self.metrics.bus_messages_received.inc();
        let shard = self.shard(&message.conv).read();
        let Some(subs) = shard.get(&message.conv) else {
            return;
        };
        let delivery = Arc::new(Delivery {
            frame: message.encode_frame(),
            message: message.clone(),
        });
        let mut delivered = 0u64;
        for sub in subs.values() {
            match sub.tx.try_send(Outbound::Message(delivery.clone())) {
                Ok(()) => delivered += 1,
                Err(mpsc::error::TrySendError::Full(_)) => {
                    if sub.kill.kill(DisconnectReason::SlowConsumer) {
                        tracing::debug!(conv = %message.conv, "slow consumer: outbound queue full");
                    }
                }
                // The session is ending; it removes its subscriptions on the way out.
                Err(mpsc::error::TrySendError::Closed(_)) => {}
            }
        }
        self.metrics.messages_delivered.inc_by(delivered);
    }

    fn control(&self, event: ControlEvent) {
        match event {
            ControlEvent::DisconnectSession {
                user_id,
                session_id,
                reason,
            } => self.matching(&user_id, Some(&session_id), |m| {
                m.kill.kill(reason);
            }),
            ControlEvent::DisconnectUser { user_id, reason } => {
                self.matching(&user_id, None, |m| {
                    m.kill.kill(reason);
                })
            }
            ControlEvent::Revoke { user_id, conv } => self.matching(&user_id, None, |m| {
                if m.tx.try_send(Outbound::Revoke(conv.clone())).is_err() {
                    // A full queue is a slow consumer anyway; ending it also ends the subscription.
                    m.kill.kill(DisconnectReason::SlowConsumer);
                }
            }),
        }
    }
}
