//! The node's services, shared by the HTTP API and every transport: accounts and tokens,
//! access rules, publishing, history, presence and rooms.
//!
//! Access rules (from the contract): public rooms are open to every signed-in user; private
//! rooms to members only (`not_member`), and only the owner adds or removes others;
//! `user:<id>` is readable by that user alone and writable by anyone signed in (a direct
//! message), whose copy also lands in the sender's own stream.

use crate::admission::Admission;
use crate::auth::{PasswordHasherPool, Principal, now_ms, token_hash};
use crate::backend::{
    AppendRequest, AuthSession, Backend, ControlEvent, HistoryQuery, Receipt, Room,
    SERVER_IDEMPOTENCY_OWNER, User, Visibility,
};
use crate::config::Limits;
use crate::error::{Error, Result};
use crate::hub::Hub;
use crate::interest::BusInterest;
use crate::metrics::Metrics;
use crate::offline::OfflineTrigger;
use parking_lot::Mutex;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};
use switchboard_proto::conv::ConvKind;
use switchboard_proto::frame::PresenceEntry;
use switchboard_proto::{Conv, DisconnectReason, ErrorCode, Message, MessageBody};

/// Largest history page.
pub const MAX_HISTORY_LIMIT: u32 = 500;
/// History page when none is asked for.
pub const DEFAULT_HISTORY_LIMIT: u32 = 50;
/// Most user ids in one presence query.
pub const MAX_PRESENCE_IDS: usize = 500;

/// Told when a message lands in the personal stream of a user with no live connection anywhere.
pub trait OfflineNotifier: Send + Sync + 'static {
    /// Queues the notification; must not block.
    fn offline_message(&self, user_id: &str, message: Arc<Message>);
}

/// Who publishes: a signed-in user, or the application's back end (server API).
#[derive(Debug, Clone, Copy)]
pub enum Publisher<'a> {
    /// A user; `from` is set and private-room rules apply.
    User(&'a str),
    /// The server API; `from` is null and no membership is needed.
    Server,
}

/// A token just issued.
#[derive(Debug, Clone, serde::Serialize)]
pub struct IssuedToken {
    /// The bearer token (shown once; only its hash is stored).
    pub token: String,
    /// Its user.
    pub user_id: String,
    /// Expiry, ms since the Unix epoch.
    pub expires_at: u64,
}

/// One node's services and state.
pub struct Node {
    /// This node's id.
    pub id: String,
    /// Limits and timings.
    pub limits: Limits,
    /// Where data lives.
    pub backend: Backend,
    /// Local subscriptions and fan-out.
    pub hub: Arc<Hub>,
    /// Prometheus metrics.
    pub metrics: Arc<Metrics>,
    /// Password hashing off the runtime.
    pub passwords: PasswordHasherPool,
    /// Session slots (`max_connections`) and the tracker of session tasks the drain waits on.
    pub admission: Admission,
    /// Which conversations this node is subscribed to on the bus.
    pub interest: BusInterest,
    /// The bounded queue to the offline webhook's presence check, once a notifier is set.
    offline: Mutex<Option<OfflineTrigger>>,
    draining: AtomicBool,
    /// Set when a drain is asked for (SIGTERM or the server API). A watch, not a Notify: several
    /// tasks wait for it (the drain sequence and the binary's main loop), and all must wake.
    drain_requested: tokio::sync::watch::Sender<bool>,
    /// A hash that never matches, verified for unknown users so a login takes the same time
    /// whether or not the name exists.
    dummy_hash: tokio::sync::OnceCell<String>,
}

impl Node {
    /// A node over `backend`, delivering into `hub`.
    pub fn new(
        id: String,
        limits: Limits,
        backend: Backend,
        hub: Arc<Hub>,
        metrics: Arc<Metrics>,
    ) -> Node {
        let cores = std::thread::available_parallelism().map_or(2, |n| n.get());
        let admission = Admission::new(limits.max_connections);
        Node {
            id,
            limits,
            backend,
            hub,
            metrics,
            passwords: PasswordHasherPool::new(cores),
            admission,
            offline: Mutex::new(None),
            interest: BusInterest::default(),
            draining: AtomicBool::new(false),
            drain_requested: tokio::sync::watch::Sender::new(false),
            dummy_hash: tokio::sync::OnceCell::new(),
        }
    }

    /// Sets who is told about messages for offline users (the webhook), and starts the worker
    /// that checks their presence (so it needs a tokio runtime).
    pub fn set_offline_notifier(&self, notifier: Arc<dyn OfflineNotifier>) {
        let registry = self.backend.registry.clone();
        let trigger = OfflineTrigger::start(notifier, registry, self.metrics.clone());
        *self.offline.lock() = Some(trigger);
    }

    /// Whether the node is draining (no new clients; existing ones are told to reconnect).
    pub fn is_draining(&self) -> bool {
        self.draining.load(Ordering::Acquire)
    }

    /// Marks the node draining.
    pub fn set_draining(&self) {
        self.draining.store(true, Ordering::Release);
    }

    /// Asks the process to drain and exit (what `POST /v1/server/nodes/self/drain` does).
    pub fn request_drain(&self) {
        self.set_draining();
        self.drain_requested.send_replace(true);
    }

    /// Completes once a drain was asked for.
    pub async fn drain_requested(&self) {
        let mut rx = self.drain_requested.subscribe();
        let _ = rx.wait_for(|asked| *asked).await;
    }

    // ----- accounts and tokens -----

    /// Registers a user with a password.
    pub async fn register(&self, username: &str, password: &str) -> Result<User> {
        validate_username(username)?;
        validate_password(password)?;
        let hash = self.passwords.hash(password.to_owned()).await?;
        Ok(self.backend.store.create_user(username, &hash).await?)
    }

    /// Checks a password and issues a login token.
    pub async fn login(&self, username: &str, password: &str) -> Result<IssuedToken> {
        let creds = self.backend.store.user_by_username(username).await?;
        let (user_id, hash) = match creds {
            Some(c) if c.password_hash.is_some() => {
                (Some(c.user.user_id), c.password_hash.unwrap_or_default())
            }
            _ => (None, self.dummy_hash().await?),
        };
        let ok = self.passwords.verify(password.to_owned(), hash).await?;
        match user_id {
            Some(user_id) if ok => self.issue_token(&user_id, self.limits.session_ttl).await,
            _ => Err(Error::unauthorized("wrong username or password")),
        }
    }

    async fn dummy_hash(&self) -> Result<String> {
        self.dummy_hash
            .get_or_try_init(|| self.passwords.hash("not a real password".into()))
            .await
            .cloned()
    }

    /// Issues a token for a user (creating the user if unknown): the server API's
    /// bring-your-own-auth.
    pub async fn issue_server_token(
        &self,
        user_id: &str,
        ttl: Option<Duration>,
    ) -> Result<IssuedToken> {
        validate_external_id(user_id)?;
        self.backend.store.ensure_user(user_id).await?;
        self.issue_token(user_id, ttl.unwrap_or(self.limits.server_token_ttl))
            .await
    }

    async fn issue_token(&self, user_id: &str, ttl: Duration) -> Result<IssuedToken> {
        let token = switchboard_proto::ids::new_token();
        let expires_at = now_ms().saturating_add(ttl.as_millis() as u64);
        let session = AuthSession {
            session_id: switchboard_proto::ids::new_id("s"),
            user_id: user_id.to_owned(),
            expires_at_ms: expires_at,
        };
        self.backend
            .store
            .create_session(token_hash(&token), &session)
            .await?;
        Ok(IssuedToken {
            token,
            user_id: user_id.to_owned(),
            expires_at,
        })
    }

    /// Resolves a bearer token.
    pub async fn authenticate(&self, token: &str) -> Result<Principal> {
        if token.is_empty() || token.len() > 256 {
            return Err(Error::unauthorized("invalid token"));
        }
        let session = self.backend.store.session(token_hash(token)).await?;
        match session {
            Some(s) if s.expires_at_ms > now_ms() => Ok(Principal {
                user_id: s.user_id,
                session_id: s.session_id,
                expires_at_ms: s.expires_at_ms,
            }),
            Some(_) => Err(Error::unauthorized("token expired")),
            None => Err(Error::unauthorized("invalid token")),
        }
    }

    /// Revokes a token and ends every connection opened with it, on every node.
    pub async fn logout(&self, token: &str) -> Result<()> {
        if let Some(s) = self.backend.store.delete_session(token_hash(token)).await? {
            self.backend
                .broker
                .broadcast(ControlEvent::DisconnectSession {
                    user_id: s.user_id,
                    session_id: s.session_id,
                    reason: DisconnectReason::LoggedOut,
                })
                .await?;
        }
        Ok(())
    }

    /// Ends every connection of a user, on every node.
    pub async fn disconnect_user(&self, user_id: &str, reason: DisconnectReason) -> Result<()> {
        Ok(self
            .backend
            .broker
            .broadcast(ControlEvent::DisconnectUser {
                user_id: user_id.to_owned(),
                reason,
            })
            .await?)
    }

    /// A user by id.
    pub async fn user(&self, user_id: &str) -> Result<User> {
        self.backend
            .store
            .user(user_id)
            .await?
            .ok_or_else(|| Error::not_found("no such user"))
    }

    // ----- rooms -----

    /// Creates a room owned by `owner`.
    pub async fn create_room(
        &self,
        owner: &str,
        name: &str,
        visibility: Visibility,
    ) -> Result<Room> {
        let name = name.trim();
        if name.is_empty() || name.len() > 200 || name.chars().any(char::is_control) {
            return Err(Error::bad_request(
                "name must be 1 to 200 printable characters",
            ));
        }
        Ok(self
            .backend
            .store
            .create_room(name, visibility, owner)
            .await?)
    }

    /// A room `user_id` may see: any public room, or a private one it belongs to.
    pub async fn visible_room(&self, user_id: &str, room_id: &str) -> Result<Room> {
        let room = self.room(room_id).await?;
        if room.visibility == Visibility::Private
            && !self.backend.store.is_member(room_id, user_id).await?
        {
            return Err(Error::new(
                ErrorCode::NotMember,
                "this private room is for members only",
            ));
        }
        Ok(room)
    }

    async fn room(&self, room_id: &str) -> Result<Room> {
        self.backend
            .store
            .room(room_id)
            .await?
            .ok_or_else(|| Error::not_found("no such room"))
    }

    /// Public rooms and the rooms `user_id` belongs to.
    pub async fn rooms(&self, user_id: &str) -> Result<Vec<Room>> {
        Ok(self.backend.store.rooms_visible_to(user_id).await?)
    }

    /// `actor` adds `user_id` to a room: a self-join of a public room, or the owner adding anyone.
    pub async fn add_member(&self, actor: &str, room_id: &str, user_id: &str) -> Result<()> {
        let room = self.room(room_id).await?;
        let allowed =
            actor == room.owner || (actor == user_id && room.visibility == Visibility::Public);
        if !allowed {
            return Err(
                if room.visibility == Visibility::Private && actor == user_id {
                    Error::new(
                        ErrorCode::NotMember,
                        "only the owner adds members to a private room",
                    )
                } else {
                    Error::forbidden("only the owner adds other users")
                },
            );
        }
        if actor != user_id {
            self.user(user_id).await?;
        }
        Ok(self.backend.store.add_member(room_id, user_id).await?)
    }

    /// `actor` removes `user_id`: leaving, or the owner removing someone. The owner cannot leave.
    pub async fn remove_member(&self, actor: &str, room_id: &str, user_id: &str) -> Result<()> {
        let room = self.room(room_id).await?;
        if user_id == room.owner {
            return Err(Error::forbidden("the owner cannot leave or be removed"));
        }
        if actor != user_id && actor != room.owner {
            return Err(Error::forbidden("only the owner removes other users"));
        }
        self.backend.store.remove_member(room_id, user_id).await?;
        if room.visibility == Visibility::Private {
            // Live subscriptions of a removed member end at once, on every node.
            let conv = Conv::room(room_id);
            let event = ControlEvent::Revoke {
                user_id: user_id.to_owned(),
                conv,
            };
            self.backend.broker.broadcast(event).await?;
        }
        Ok(())
    }

    /// Members of a room `actor` may see.
    pub async fn members(&self, actor: &str, room_id: &str) -> Result<Vec<String>> {
        self.visible_room(actor, room_id).await?;
        Ok(self.backend.store.members(room_id).await?)
    }

    // ----- access -----

    /// Whether `user_id` may subscribe to and read `conv`.
    pub async fn check_read(&self, user_id: &str, conv: &Conv) -> Result<()> {
        match conv.kind() {
            ConvKind::Room => self.visible_room(user_id, conv.id()).await.map(drop),
            ConvKind::User if conv.id() == user_id => Ok(()),
            ConvKind::User => Err(Error::forbidden("only its owner reads a personal stream")),
        }
    }

    // ----- messages -----

    /// Stores and publishes a message. For `user:<to>` from a user, this is a direct message:
    /// stored in `user:<to>` (the answer) and in the sender's `user:<from>`.
    pub async fn publish(
        &self,
        publisher: Publisher<'_>,
        conv: Conv,
        body: MessageBody,
        client_msg_id: Option<String>,
    ) -> Result<Receipt> {
        let started = Instant::now();
        if let Some(c) = &client_msg_id
            && (c.is_empty() || c.len() > switchboard_proto::frame::MAX_CLIENT_MSG_ID_LEN)
        {
            return Err(Error::bad_request("client_msg_id must be 1 to 128 bytes"));
        }
        let (from, owner) = match publisher {
            Publisher::User(u) => (Some(u.to_owned()), u.to_owned()),
            Publisher::Server => (None, SERVER_IDEMPOTENCY_OWNER.to_owned()),
        };
        let (to, copy_to) = match conv.kind() {
            ConvKind::Room => {
                match publisher {
                    Publisher::User(u) => {
                        self.visible_room(u, conv.id()).await?;
                    }
                    Publisher::Server => {
                        self.room(conv.id()).await?;
                    }
                }
                (None, None)
            }
            ConvKind::User => {
                let recipient = conv.id();
                self.user(recipient).await?;
                match publisher {
                    Publisher::User(u) if u != recipient => {
                        (Some(recipient.to_owned()), Some(Conv::user(u)))
                    }
                    Publisher::User(_) => (Some(recipient.to_owned()), None),
                    Publisher::Server => (None, None),
                }
            }
        };
        let request = AppendRequest {
            conv,
            from,
            to,
            body,
            client_msg_id,
            idempotency_owner: owner,
            copy_to,
        };
        let appended = self.backend.broker.append(request).await?;
        self.metrics
            .messages_published
            .inc_by(appended.stored.len() as u64);
        self.metrics
            .publish_latency
            .observe(started.elapsed().as_secs_f64());
        let sender = match publisher {
            Publisher::User(u) => Some(u),
            Publisher::Server => None,
        };
        for m in &appended.stored {
            if m.conv.kind() == ConvKind::User && sender != Some(m.conv.id()) {
                self.notify_if_offline(m.clone());
            }
        }
        Ok(appended.receipt)
    }

    /// Queues a message of `user:<id>` for the offline webhook (bounded: see
    /// [`crate::offline`]).
    fn notify_if_offline(&self, message: Arc<Message>) {
        if let Some(trigger) = &*self.offline.lock() {
            trigger.offer(message);
        }
    }

    /// A page of history `user_id` may read.
    pub async fn history(
        &self,
        user_id: &str,
        conv: &Conv,
        mut query: HistoryQuery,
    ) -> Result<Vec<Arc<Message>>> {
        self.check_read(user_id, conv).await?;
        query.limit = clamp_limit(Some(query.limit))?;
        Ok(self.backend.broker.history(conv, query).await?)
    }

    // ----- presence -----

    /// Live connection counts of users.
    pub async fn user_presence(&self, ids: &[String]) -> Result<Vec<u32>> {
        if ids.len() > MAX_PRESENCE_IDS {
            return Err(Error::bad_request(format!(
                "at most {MAX_PRESENCE_IDS} ids"
            )));
        }
        Ok(self.backend.registry.user_connections(ids).await?)
    }

    /// Online subscribers of a conversation `user_id` may read (for `user:<id>`: its owner's
    /// connection count).
    pub async fn presence(&self, user_id: &str, conv: &Conv) -> Result<Vec<PresenceEntry>> {
        self.check_read(user_id, conv).await?;
        match conv.kind() {
            ConvKind::Room => Ok(self.backend.registry.room_presence(conv.id()).await?),
            ConvKind::User => {
                let ids = [conv.id().to_owned()];
                let n = self.backend.registry.user_connections(&ids).await?;
                let [id] = ids;
                Ok(match n.first().copied().unwrap_or(0) {
                    0 => vec![],
                    connections => vec![PresenceEntry {
                        user_id: id,
                        connections,
                    }],
                })
            }
        }
    }
}

/// Validates a requested page size: default 50, clamped to 500, at least 1.
pub fn clamp_limit(limit: Option<u32>) -> Result<u32> {
    match limit {
        None => Ok(DEFAULT_HISTORY_LIMIT),
        Some(0) => Err(Error::bad_request("limit must be at least 1")),
        Some(n) => Ok(n.min(MAX_HISTORY_LIMIT)),
    }
}

fn validate_username(u: &str) -> Result<()> {
    if u.is_empty() || u.len() > 64 || u.chars().any(|c| c.is_control() || c.is_whitespace()) {
        return Err(Error::bad_request(
            "username must be 1 to 64 characters without spaces",
        ));
    }
    Ok(())
}

fn validate_password(p: &str) -> Result<()> {
    if p.len() < 8 || p.len() > 1024 {
        return Err(Error::bad_request("password must be 8 to 1024 bytes"));
    }
    Ok(())
}

fn validate_external_id(id: &str) -> Result<()> {
    if id.is_empty()
        || id.len() > 128
        || id == SERVER_IDEMPOTENCY_OWNER
        || id == "me"
        || id
            .chars()
            .any(|c| c.is_control() || c.is_whitespace() || c == ':')
    {
        return Err(Error::bad_request(
            "user_id must be 1 to 128 characters without spaces or ':', and not the reserved `me` or `@server`",
        ));
    }
    Ok(())
}
