//! The backend interfaces: where users, sessions, rooms and messages live, how a stored message
//! reaches the nodes that want it, and which connections are live where.
//!
//! The core depends only on these traits. The embedded backend (one node, SQLite) and the Redis
//! backend (a cluster) implement them, and `switchboard-conformance` checks that they agree.
//! Every method is async and fallible: a networked backend can be slow or down, and callers
//! map [`BackendError::Unavailable`] to the `unavailable` error code.

use async_trait::async_trait;
use std::sync::Arc;
use std::time::Duration;
use switchboard_proto::frame::PresenceEntry;

pub use crate::recovery::{RecoveryGuard, RecoveryRecord};
use switchboard_proto::{Conv, DisconnectReason, Message, MessageBody};

/// What [`Broker::append_then`] calls with an append's result.
pub type AppendDone = Box<dyn FnOnce(Result<Appended, BackendError>) + Send>;

/// What can go wrong in a backend.
#[derive(Debug, Clone, thiserror::Error, PartialEq, Eq)]
pub enum BackendError {
    /// `create_user` with a username that exists.
    #[error("username is taken")]
    UsernameTaken,
    /// The named room or user does not exist.
    #[error("not found")]
    NotFound,
    /// The backend cannot be reached or is shutting down; the request may be retried.
    #[error("backend unavailable: {0}")]
    Unavailable(String),
    /// Anything else (corruption, a bug); logged with detail.
    #[error("backend failure: {0}")]
    Internal(String),
}

/// A user as the API shows it.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct User {
    /// Server-made id (or the application's id, for users made by the server API).
    pub user_id: String,
    /// Login name; `None` for users made by the server API (bring-your-own-auth).
    pub username: Option<String>,
}

/// A user with the password hash, for logins.
#[derive(Debug, Clone)]
pub struct UserCredentials {
    /// The user.
    pub user: User,
    /// PHC-format argon2 hash; `None` for users who cannot log in with a password.
    pub password_hash: Option<String>,
}

/// An auth session: what a bearer token stands for. The token itself is never stored, only its
/// SHA-256 ([`TokenHash`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuthSession {
    /// Stable id of this session, used to find the connections opened with it (logout).
    pub session_id: String,
    /// Its user.
    pub user_id: String,
    /// Expiry, milliseconds since the Unix epoch.
    pub expires_at_ms: u64,
}

/// SHA-256 of a bearer token.
pub type TokenHash = [u8; 32];

/// Who may see and join a room.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Visibility {
    /// Any signed-in user may subscribe, publish and read history.
    Public,
    /// Members only; the owner adds members.
    Private,
}

impl Visibility {
    /// `public` or `private`.
    pub fn as_str(self) -> &'static str {
        match self {
            Visibility::Public => "public",
            Visibility::Private => "private",
        }
    }
}

/// A room.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Room {
    /// Server-made id.
    pub room_id: String,
    /// Display name (not unique).
    pub name: String,
    /// Public or private.
    pub visibility: Visibility,
    /// The user who made it; always a member.
    pub owner: String,
    /// Creation time, ms since the Unix epoch.
    pub created_at_ms: u64,
}

/// Users, auth sessions, rooms and members.
#[async_trait]
pub trait Store: Send + Sync + 'static {
    /// Creates a user with a fresh id; [`BackendError::UsernameTaken`] if the name exists.
    /// Names compare by [`crate::names::username_key`] (NFKC, ignoring case): `Alice` and
    /// `ａｌｉｃｅ` are taken once `alice` is. The name is stored as given (callers pass it
    /// already validated and NFKC-normalized).
    async fn create_user(&self, username: &str, password_hash: &str) -> Result<User, BackendError>;
    /// Finds a user by login name (compared as [`Store::create_user`] does), with the password
    /// hash.
    async fn user_by_username(
        &self,
        username: &str,
    ) -> Result<Option<UserCredentials>, BackendError>;
    /// Finds a user by id.
    async fn user(&self, user_id: &str) -> Result<Option<User>, BackendError>;
    /// Returns the user with this id, creating it (without username or password) if unknown.
    /// Used by the server API's bring-your-own-auth tokens.
    async fn ensure_user(&self, user_id: &str) -> Result<User, BackendError>;

    /// Stores a new auth session for `token_hash`.
    async fn create_session(
        &self,
        token_hash: TokenHash,
        session: &AuthSession,
    ) -> Result<(), BackendError>;
    /// Looks up a session by token hash. Expired sessions may be returned; callers check expiry.
    async fn session(&self, token_hash: TokenHash) -> Result<Option<AuthSession>, BackendError>;
    /// Deletes a session; returns it if it existed.
    async fn delete_session(
        &self,
        token_hash: TokenHash,
    ) -> Result<Option<AuthSession>, BackendError>;

    /// Deletes every auth session of `user_id` except the one whose session id is `except`
    /// (a password change keeps the caller's own), and returns the deleted sessions' ids. A
    /// deleted session is no longer returned by [`Store::session`] on any node once this returns.
    async fn delete_user_sessions(
        &self,
        user_id: &str,
        except: Option<&str>,
    ) -> Result<Vec<String>, BackendError>;
    /// Replaces a user's password hash; [`BackendError::NotFound`] for an unknown user.
    async fn set_password(&self, user_id: &str, password_hash: &str) -> Result<(), BackendError>;

    /// Creates a room with a fresh id; the owner becomes its first member.
    async fn create_room(
        &self,
        name: &str,
        visibility: Visibility,
        owner: &str,
    ) -> Result<Room, BackendError>;
    /// Finds a room.
    async fn room(&self, room_id: &str) -> Result<Option<Room>, BackendError>;
    /// Public rooms and rooms `user_id` belongs to, oldest first.
    async fn rooms_visible_to(&self, user_id: &str) -> Result<Vec<Room>, BackendError>;
    /// Adds a member (no error if already one). [`BackendError::NotFound`] for an unknown room.
    async fn add_member(&self, room_id: &str, user_id: &str) -> Result<(), BackendError>;
    /// Removes a member (no error if not one).
    async fn remove_member(&self, room_id: &str, user_id: &str) -> Result<(), BackendError>;
    /// Whether `user_id` is a member of `room_id`.
    async fn is_member(&self, room_id: &str, user_id: &str) -> Result<bool, BackendError>;
    /// All members, in the order they joined.
    async fn members(&self, room_id: &str) -> Result<Vec<String>, BackendError>;
}

/// A message to store and publish.
#[derive(Debug, Clone)]
pub struct AppendRequest {
    /// Where it is stored first; its seq in this conversation is the answer.
    pub conv: Conv,
    /// Sender, or `None` for server publishes.
    pub from: Option<String>,
    /// Recipient of a direct message.
    pub to: Option<String>,
    /// Payload.
    pub body: MessageBody,
    /// Idempotency key: `(idempotency_owner, client_msg_id)` is stored once.
    pub client_msg_id: Option<String>,
    /// Whose key `client_msg_id` is: the sender's user id, or [`SERVER_IDEMPOTENCY_OWNER`].
    pub idempotency_owner: String,
    /// A second conversation that gets its own copy (with its own seq), atomically with the
    /// first: the sender's `user:<from>` stream for direct messages.
    pub copy_to: Option<Conv>,
}

/// The idempotency owner of server-API publishes.
pub const SERVER_IDEMPOTENCY_OWNER: &str = "@server";

/// The answer to an append.
#[derive(Debug, Clone)]
pub struct Appended {
    /// The conversation, seq, id and time of the (first) stored message.
    pub receipt: Receipt,
    /// The stored messages (the primary, then the copy), or empty when this was a repeat of an
    /// earlier append with the same idempotency key (nothing new was stored or published).
    pub stored: Vec<Arc<Message>>,
}

/// Where a message was stored: the `published` reply.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Receipt {
    /// Conversation.
    pub conv: Conv,
    /// Seq in it.
    pub seq: u64,
    /// Message id.
    pub message_id: String,
    /// Storage time, ms since the Unix epoch.
    pub ts: u64,
}

/// A conversation's position: what a subscriber needs to know to resume.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Position {
    /// Changes only when the stored history was lost and seq restarted.
    pub epoch: String,
    /// The latest seq (0 when nothing was ever stored).
    pub head_seq: u64,
    /// The oldest seq still in history; `head_seq + 1` when history is empty (all trimmed or
    /// nothing stored).
    pub oldest_seq: u64,
}

/// A page of history: `after` (ascending from it) or `before` (the `limit` just before it,
/// ascending). With neither, the latest `limit` messages.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct HistoryQuery {
    /// Messages with seq > after.
    pub after: Option<u64>,
    /// Messages with seq < before.
    pub before: Option<u64>,
    /// At most this many (callers clamp to 1..=500).
    pub limit: u32,
}

/// Node-to-node control events, broadcast to every node.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum ControlEvent {
    /// End the connections opened with this auth session (logout).
    DisconnectSession {
        /// The session's user (to find its connections without a scan).
        user_id: String,
        /// The session.
        session_id: String,
        /// Told to the clients.
        reason: DisconnectReason,
    },
    /// End this user's subscriptions to `conv` (removed from a private room).
    Revoke {
        /// The user.
        user_id: String,
        /// The conversation they may no longer read.
        conv: Conv,
    },
    /// End every connection of this user (server API disconnect).
    DisconnectUser {
        /// The user.
        user_id: String,
        /// Told to the clients.
        reason: DisconnectReason,
    },
}

/// Where a node's broker delivers what it receives: the node's hub.
pub trait BusSink: Send + Sync + 'static {
    /// A stored message for a conversation this node declared interest in. Called in seq order
    /// per conversation. Must not block.
    fn deliver(&self, message: Arc<Message>);
    /// Messages stored together (a commit's, or what waited for the embedded bus), in seq
    /// order per conversation: [`deliver`](BusSink::deliver) for each, unless the sink has a
    /// cheaper way for a group (the hub writes a conversation's run to each subscriber at once;
    /// the embedded backend's relay writes a small commit's on the committing thread). A panic
    /// while delivering one message must not lose the others: the default catches it per
    /// message.
    fn deliver_all(&self, messages: Vec<Arc<Message>>) {
        for m in messages {
            let r = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| self.deliver(m)));
            if r.is_err() {
                tracing::error!("delivering a message panicked; going on with the next");
            }
        }
    }
    /// How many local connections a message of `conv` would be offered to: what delivering it
    /// costs, for a caller choosing where to deliver. One unless the sink knows better.
    fn subscribers(&self, _conv: &switchboard_proto::Conv) -> usize {
        1
    }
    /// A control event from any node (including this one).
    fn control(&self, event: ControlEvent);
}

/// Message storage and publication.
///
/// Contract: for each conversation, `append` does the idempotency check, assigns the next seq,
/// stores the message durably and publishes it, as one atomic step; publication order equals
/// seq order. When `append` returns `Ok`, the message survives a crash of the process.
///
/// Replicated backends (Redis with replicas to wait for, Redis Cluster) add: `append` returns
/// `Ok`, and the message is published, only once the required replicas hold it, so a failover
/// never takes back a message a subscriber saw nor gives its seq to another. Publication still
/// follows seq order: publishing seq N publishes every unpublished message below it first (a
/// replica holding N holds them too). If replication is not confirmed in time, `append` fails
/// with [`BackendError::Unavailable`]; the message may stay stored, unpublished, and a retry with
/// the same `client_msg_id` returns it (once) and publishes it.
#[async_trait]
pub trait Broker: Send + Sync + 'static {
    /// Stores and publishes one message (and its copy, see [`AppendRequest::copy_to`]).
    async fn append(&self, request: AppendRequest) -> Result<Appended, BackendError>;
    /// Queues `request` and returns its result to await later. Where
    /// [`Broker::queues_in_order`] is true, the append is ordered at this call: appends queued
    /// one after the other by one caller get their seqs in that order even while several are
    /// in flight. Otherwise the append starts when the returned future is first polled, and a
    /// caller that needs an order waits for each before queuing the next.
    fn append_queued(
        self: Arc<Self>,
        request: AppendRequest,
    ) -> std::pin::Pin<Box<dyn std::future::Future<Output = Result<Appended, BackendError>> + Send>>
    {
        Box::pin(async move { self.append(request).await })
    }
    /// [`Broker::append_queued`], with the result handed to `done` instead of a future: a
    /// backend that completes appends on a thread of its own runs `done` there, right after the
    /// commit and before the stored messages are published (so a publishing connection's answer
    /// can be written there, with no task woken for it). The default awaits on a task.
    fn append_then(self: Arc<Self>, request: AppendRequest, done: AppendDone) {
        let appending = self.append_queued(request);
        tokio::spawn(async move { done(appending.await) });
    }
    /// Whether [`Broker::append_queued`] orders appends at the call (so a connection may
    /// pipeline its publishes).
    fn queues_in_order(&self) -> bool {
        false
    }
    /// Stores many; each answer is independent. Implementations may group them into one write.
    async fn append_many(
        &self,
        requests: Vec<AppendRequest>,
    ) -> Vec<Result<Appended, BackendError>> {
        let mut out = Vec::with_capacity(requests.len());
        for r in requests {
            out.push(self.append(r).await);
        }
        out
    }
    /// Reads history, ascending seq.
    async fn history(
        &self,
        conv: &Conv,
        query: HistoryQuery,
    ) -> Result<Vec<Arc<Message>>, BackendError>;
    /// The conversation's epoch, head and oldest available seq.
    async fn position(&self, conv: &Conv) -> Result<Position, BackendError>;
    /// Starts delivering this conversation's publications to this node's [`BusSink`]. Once it
    /// returns, every message published later is delivered.
    async fn subscribe(&self, conv: &Conv) -> Result<(), BackendError>;
    /// Stops delivering them.
    async fn unsubscribe(&self, conv: &Conv) -> Result<(), BackendError>;
    /// Whether [`Broker::subscribe`] matters. A bus that hands every publication to the node's
    /// sink anyway (one process) answers false, and the node keeps no per-conversation
    /// interest state (memory every connection would pay for its own stream).
    fn needs_subscriptions(&self) -> bool {
        true
    }
    /// Sends a control event to every node.
    async fn broadcast(&self, event: ControlEvent) -> Result<(), BackendError>;
}

/// One live connection, as the registry knows it. The node holding it is the registry's own
/// (each node registers its own connections); the session future holds this, so it names no
/// more than it must.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConnEntry {
    /// Connection id.
    pub conn_id: Arc<str>,
    /// Its user.
    pub user_id: Arc<str>,
    /// The auth session it was opened with.
    pub session_id: Arc<str>,
}

/// Which users and rooms have live connections, where.
#[async_trait]
pub trait Registry: Send + Sync + 'static {
    /// A connection authenticated.
    async fn add_connection(&self, conn: &ConnEntry) -> Result<(), BackendError>;
    /// A connection ended.
    async fn remove_connection(&self, conn: &ConnEntry) -> Result<(), BackendError>;
    /// A connection subscribed to a room.
    async fn add_room_subscriber(
        &self,
        room_id: &str,
        conn: &ConnEntry,
    ) -> Result<(), BackendError>;
    /// A connection left a room (unsubscribe or end).
    async fn remove_room_subscriber(
        &self,
        room_id: &str,
        conn: &ConnEntry,
    ) -> Result<(), BackendError>;
    /// Live connection counts of these users, in the same order.
    async fn user_connections(&self, user_ids: &[String]) -> Result<Vec<u32>, BackendError>;
    /// Online subscribers of a room with their connection counts, sorted by user id.
    async fn room_presence(&self, room_id: &str) -> Result<Vec<PresenceEntry>, BackendError>;
    /// Nodes whose lease is alive, with what each announced (its `public_url`, endpoints...),
    /// so dispatchers discover gateways. Single-node backends know no other node: empty.
    async fn live_nodes(&self) -> Result<Vec<NodeAnnouncement>, BackendError> {
        Ok(Vec::new())
    }

    /// Connection-state recovery records (a Socket.IO session's `pid` and what it held): stores
    /// `value` under `key`, held by `owner`, replacing what was there if `guard` allows it
    /// (checked and written atomically), readable from every node of the cluster until `ttl` has
    /// passed since this call (or a later [`touch_recoveries`]). Answers whether it stored. A
    /// record is opaque to the backend; its size is bounded by the caller.
    ///
    /// [`touch_recoveries`]: Registry::touch_recoveries
    async fn put_recovery(
        &self,
        key: &str,
        owner: &str,
        value: &str,
        ttl: Duration,
        guard: RecoveryGuard<'_>,
    ) -> Result<bool, BackendError>;
    /// The record under `key` with its owner, unless it expired or was deleted.
    async fn recovery(&self, key: &str) -> Result<Option<RecoveryRecord>, BackendError>;
    /// Sets the time to live of the records that still exist among `keys` to `ttl` from now
    /// (one round trip for all of them; a node renews its live sessions' records this way).
    async fn touch_recoveries(&self, keys: &[String], ttl: Duration) -> Result<(), BackendError>;
    /// Deletes the record under `key` if `owner` holds it (checked and deleted atomically).
    /// Answers whether it deleted.
    async fn delete_recovery(&self, key: &str, owner: &str) -> Result<bool, BackendError>;
    /// Whether recovery records outlive this node's process: stored where another node, or
    /// this node restarted, still reads them after the process dies (default `true`, as a
    /// cluster registry must answer). A registry that keeps them in the process's memory answers
    /// `false`: a running session's record could then never serve anyone (its clients can
    /// only come back to this process, which still has the session), so callers write a
    /// session's record only when it ends and keep nothing for it while it runs.
    fn recoveries_outlive_process(&self) -> bool {
        true
    }
}

/// What a node announces with its lease (stored as this struct's JSON), so that dispatchers
/// find the gateways and poll sessions can be followed to their node. Every field but
/// `node_id` may be absent from what is stored (it then reads as its default), so older and
/// newer nodes read each other's announcements.
#[derive(Debug, Clone, PartialEq, Eq, Default, serde::Serialize, serde::Deserialize)]
pub struct NodeAnnouncement {
    /// The node.
    pub node_id: String,
    /// Its base URL, e.g. `http://10.0.0.5:7700` (set for every node that serves HTTP).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub public_url: Option<String>,
    /// Where clients connect to it.
    #[serde(default)]
    pub endpoints: switchboard_proto::Endpoints,
    /// Placement weight relative to other nodes.
    #[serde(default)]
    pub weight: u32,
    /// Its connection limit.
    #[serde(default)]
    pub max_connections: u64,
    /// Whether it takes client connections (api or dispatcher-only nodes announce too).
    #[serde(default)]
    pub gateway: bool,
}

impl NodeAnnouncement {
    /// An announcement that names the node only (no URL: dispatchers will not use it).
    pub fn new(node_id: impl Into<String>) -> NodeAnnouncement {
        NodeAnnouncement {
            node_id: node_id.into(),
            ..NodeAnnouncement::default()
        }
    }
}

/// Start and end of a backend.
#[async_trait]
pub trait Lifecycle: Send + Sync + 'static {
    /// Whether the backend can take requests now (`/readyz`).
    async fn ready(&self) -> bool;
    /// Flushes pending writes and closes; later calls fail with `Unavailable`.
    async fn close(&self);
}

/// One backend: the four interfaces, usually served by one object.
#[derive(Clone)]
pub struct Backend {
    /// Users, sessions, rooms, members.
    pub store: Arc<dyn Store>,
    /// Messages: append, publish, history.
    pub broker: Arc<dyn Broker>,
    /// Live connections and presence.
    pub registry: Arc<dyn Registry>,
    /// Readiness and shutdown.
    pub lifecycle: Arc<dyn Lifecycle>,
}
