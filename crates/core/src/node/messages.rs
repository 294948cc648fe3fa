//! Messages and presence: publish (with the DM copy and the offline trigger), history, and
//! who is online.

use super::*;
use crate::backend::Appended;
use std::future::Future;
use std::pin::Pin;

/// A publish whose append is queued: await it for the receipt (the message is then stored).
pub type PendingPublish = Pin<Box<dyn Future<Output = Result<Published>> + Send>>;

/// A stored publish: its receipt, and the messages it stored (the target's, then a direct
/// message's copy in the sender's stream; none for a repeat of an earlier `client_msg_id`). The
/// sender's session writes its own copy with the answer when it is next for the connection, so
/// both leave in one write.
pub struct Published {
    /// The `published` answer.
    pub receipt: Receipt,
    /// The stored messages, as the bus delivers them.
    pub stored: Vec<Arc<Message>>,
}

impl Node {
    // ----- messages -----

    /// Stores and publishes a message. For `user:<to>` from a user, this is a direct message:
    /// stored in `user:<to>` (the answer) and in the sender's `user:<from>`.
    pub async fn publish(
        self: &Arc<Self>,
        publisher: Publisher<'_>,
        conv: Conv,
        body: MessageBody,
        client_msg_id: Option<String>,
    ) -> Result<Receipt> {
        let published = self
            .queue_publish(publisher, conv, body, client_msg_id)
            .await?
            .await?;
        Ok(published.receipt)
    }

    /// Checks a publish (access, limits), then queues its append and returns the rest to await:
    /// the receipt, once the message is stored. When the broker queues in order
    /// ([`crate::backend::Broker::queues_in_order`]), publishes queued one after the other get
    /// their seqs in that order even while several are in flight (a pipelining connection).
    pub async fn queue_publish(
        self: &Arc<Self>,
        publisher: Publisher<'_>,
        conv: Conv,
        body: MessageBody,
        client_msg_id: Option<String>,
    ) -> Result<PendingPublish> {
        let started = Instant::now();
        let (request, sender) = self
            .prepare_publish(publisher, conv, body, client_msg_id)
            .await?;
        let appending = self.backend.broker.clone().append_queued(request);
        let node = self.clone();
        Ok(Box::pin(async move {
            let appended = appending.await?;
            Ok(node.published(appended, sender.as_deref(), started))
        }))
    }

    /// [`Node::queue_publish`], with the outcome handed to `done` where the commit completes
    /// (the embedded backend's writer thread, before the stored messages are published): a
    /// connection's session writes its answer there, with no task woken for it. `done` is
    /// called exactly once: with the refusal, here, for a publish refused before its append is
    /// queued.
    pub async fn queue_publish_then(
        self: &Arc<Self>,
        publisher: Publisher<'_>,
        conv: Conv,
        body: MessageBody,
        client_msg_id: Option<String>,
        done: Box<dyn FnOnce(Result<Published>) + Send>,
    ) {
        let started = Instant::now();
        let (request, sender) = match self
            .prepare_publish(publisher, conv, body, client_msg_id)
            .await
        {
            Ok(prepared) => prepared,
            Err(e) => return done(Err(e)),
        };
        let node = self.clone();
        self.backend.broker.clone().append_then(
            request,
            Box::new(move |r| {
                done(
                    r.map(|appended| node.published(appended, sender.as_deref(), started))
                        .map_err(Error::from),
                )
            }),
        );
    }

    /// Counts a stored publish and offers its direct messages to the offline webhook.
    fn published(&self, appended: Appended, sender: Option<&str>, started: Instant) -> Published {
        self.metrics
            .messages_published
            .inc_by(appended.stored.len() as u64);
        self.metrics
            .publish_latency
            .observe(started.elapsed().as_secs_f64());
        for m in &appended.stored {
            if m.conv.kind() == ConvKind::User && sender != Some(m.conv.id()) {
                self.notify_if_offline(m.clone());
            }
        }
        Published {
            receipt: appended.receipt,
            stored: appended.stored,
        }
    }

    /// The checks of a publish (access, limits), and its append request with its sender.
    async fn prepare_publish(
        self: &Arc<Self>,
        publisher: Publisher<'_>,
        conv: Conv,
        body: MessageBody,
        client_msg_id: Option<String>,
    ) -> Result<(AppendRequest, Option<String>)> {
        if let Some(c) = &client_msg_id
            && (c.is_empty() || c.len() > switchboard_proto::frame::MAX_CLIENT_MSG_ID_LEN)
        {
            return Err(Error::bad_request("client_msg_id must be 1 to 128 bytes"));
        }
        // Clients' JSON parsers have depth limits (serde_json's is 128): a body past them
        // would be stored and then jam every reader of the conversation.
        if switchboard_proto::depth::exceeds_depth(
            body.get().as_bytes(),
            self.limits.max_body_depth,
        ) {
            return Err(Error::bad_request(format!(
                "body nests deeper than {} levels",
                self.limits.max_body_depth
            )));
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
                        self.guards.direct_message(u)?;
                        (Some(recipient.to_owned()), Some(Conv::user(u)))
                    }
                    Publisher::User(_) => (Some(recipient.to_owned()), None),
                    Publisher::Server => (None, None),
                }
            }
        };
        if let Publisher::User(u) = publisher {
            self.guards.store(u)?;
        }
        let request = AppendRequest {
            conv,
            from,
            to,
            body,
            client_msg_id,
            idempotency_owner: owner,
            copy_to,
        };
        let sender = match publisher {
            Publisher::User(u) => Some(u.to_owned()),
            Publisher::Server => None,
        };
        Ok((request, sender))
    }

    /// Queues a message of `user:<id>` for the offline webhook (bounded: see
    /// [`crate::offline`]).
    fn notify_if_offline(&self, message: Arc<Message>) {
        if let Some(trigger) = &*self.offline.lock() {
            trigger.offer(message);
        }
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
