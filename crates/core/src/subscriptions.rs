//! Everything one connection holds outside itself, with one owner.
//!
//! A connection is known to the hub (its key, for shutdown and control events), once
//! authenticated to the registry (presence, `ConnEntry`), and per subscribed conversation to
//! the hub (fan-out), the node's bus interest (targeted routing) and, for rooms, the registry's
//! room presence; the connection's own [`Conn`] keeps the position. [`Subscriptions`] makes and
//! undoes all of these, in the one order that loses nothing:
//!
//! - **attach**: hub subscription and pending entry on the `Conn` first, then bus interest,
//!   then room presence, then the position is read. A message published after the position
//!   read arrives live; one before it is in history. On any failure everything is undone.
//! - **detach**: the `Conn` forgets the conversation, the hub drops the subscriber, the bus
//!   interest goes with the last local subscriber, the room presence entry goes.
//! - **close_all**: every subscription (pending ones too), then the registry entry (which also
//!   clears the connection's room presence), then the hub's record of the connection.
//!
//! Dropping it without `close_all` (the session's task panicked or was cancelled) does the same:
//! the synchronous part at once (no more deliveries to a dead connection), the part that
//! talks to the backend in a task of its own. So no path leaves a ghost in presence, a
//! subscriber in the hub or a bus subscription nobody wants.

use crate::backend::{ConnEntry, Position};
use crate::conn::Conn;
use crate::error::Error;
use crate::node::Node;
use std::sync::Arc;
use switchboard_proto::Conv;
use switchboard_proto::conv::ConvKind;

/// One connection's presence in the hub, the registry and the bus (see the module comment).
pub(crate) struct Subscriptions {
    /// The node (the session reads it here too).
    pub(crate) node: Arc<Node>,
    /// The connection's shared half (the session reads it here too).
    pub(crate) conn: Arc<Conn>,
    /// The connection's key in the hub.
    key: u64,
    /// Its registry entry, once authenticated.
    entry: Option<ConnEntry>,
    /// `close_all` ran: nothing is left to undo.
    closed: bool,
}

impl Subscriptions {
    /// Records a new connection in the hub; shutdown reaches it from here on.
    pub(crate) fn open(node: Arc<Node>, conn: Arc<Conn>) -> Subscriptions {
        let key = node.hub.open_connection(conn.clone());
        Subscriptions {
            node,
            conn,
            key,
            entry: None,
            closed: false,
        }
    }

    /// The connection's key in the hub (for logs).
    pub(crate) fn key(&self) -> u64 {
        self.key
    }

    /// The registry entry, once [`Subscriptions::register`] succeeded.
    pub(crate) fn entry(&self) -> Option<&ConnEntry> {
        self.entry.as_ref()
    }

    /// The connection authenticated: adds it to the registry (presence) and tells the hub whose
    /// it is (so logout and kick find it).
    pub(crate) async fn register(&mut self, entry: ConnEntry) -> Result<(), Error> {
        self.node.backend.registry.add_connection(&entry).await?;
        self.node
            .hub
            .register(self.key, entry.user_id.clone(), entry.session_id.clone());
        self.entry = Some(entry);
        Ok(())
    }

    /// Subscribes to `conv` everywhere it takes (see the module comment) and reads its
    /// position. Returns the hub's name of `conv` (give it to [`Conn::subscribe_with`]) and the
    /// position. The subscription is pending on the `Conn` until then. On failure nothing is
    /// left subscribed.
    pub(crate) async fn attach(&mut self, conv: &Conv) -> Result<(Conv, Position), Error> {
        let (name, _) = self.node.hub.subscribe(conv, self.key, self.conn.clone());
        self.conn.add_pending(&name);
        let result = async {
            let node = &self.node;
            node.interest.ensure(&*node.backend.broker, conv).await?;
            if conv.kind() == ConvKind::Room
                && let Some(entry) = &self.entry
            {
                node.backend
                    .registry
                    .add_room_subscriber(conv.id(), entry)
                    .await?;
            }
            Ok::<_, Error>(node.backend.broker.position(conv).await?)
        }
        .await;
        match result {
            Ok(pos) => Ok((name, pos)),
            Err(e) => {
                self.detach(conv).await;
                Err(e)
            }
        }
    }

    /// Ends the subscription to `conv` everywhere; later messages of it are dropped.
    pub(crate) async fn detach(&mut self, conv: &Conv) {
        self.conn.remove_sub(conv);
        let node = &self.node;
        if node.hub.unsubscribe(conv, self.key) {
            node.interest
                .release(&*node.backend.broker, &node.hub, conv)
                .await;
        }
        if conv.kind() == ConvKind::Room
            && let Some(entry) = &self.entry
            && let Err(e) = node
                .backend
                .registry
                .remove_room_subscriber(conv.id(), entry)
                .await
        {
            tracing::warn!(%conv, error = %e, "presence update failed");
        }
    }

    /// Ends every subscription and the connection's presence, and forgets it in the hub.
    pub(crate) async fn close_all(&mut self) {
        let released = self.release_local();
        let entry = self.entry.take();
        self.closed = true;
        release_remote(&self.node, released, entry).await;
    }

    /// The synchronous half of closing: the `Conn` and the hub let the connection go. Returns
    /// the conversations whose last local subscriber it was.
    fn release_local(&mut self) -> Vec<Conv> {
        let hub = &self.node.hub;
        let released = self
            .conn
            .take_subs()
            .into_iter()
            .filter(|conv| hub.unsubscribe(conv, self.key))
            .collect();
        hub.close_connection(self.key);
        released
    }
}

/// The half of closing that talks to the backend: bus interest of `released`, then the
/// registry entry (which also clears the connection's room presence).
async fn release_remote(node: &Node, released: Vec<Conv>, entry: Option<ConnEntry>) {
    for conv in released {
        node.interest
            .release(&*node.backend.broker, &node.hub, &conv)
            .await;
    }
    if let Some(entry) = entry
        && let Err(e) = node.backend.registry.remove_connection(&entry).await
    {
        tracing::warn!(error = %e, "presence removal failed");
    }
}

impl Drop for Subscriptions {
    /// The session never reached its end (a panic in its task, or the task was dropped): undo
    /// everything anyway, or the hub would keep the connection and its socket, the fan-out would
    /// go on writing to it, and presence would show a user who is gone.
    fn drop(&mut self) {
        if self.closed {
            return;
        }
        tracing::error!(
            key = self.key,
            "a session ended without finishing; forgetting it"
        );
        self.conn.close();
        self.conn.shutdown();
        let released = self.release_local();
        let entry = self.entry.take();
        if released.is_empty() && entry.is_none() {
            return;
        }
        let node = self.node.clone();
        match tokio::runtime::Handle::try_current() {
            Ok(rt) => {
                rt.spawn(async move { release_remote(&node, released, entry).await });
            }
            Err(_) => tracing::warn!("no runtime left to clear presence and bus interest"),
        }
    }
}
