//! Bus interest: whether this node is subscribed on the bus to a conversation. A node
//! subscribes when its first local subscriber appears and unsubscribes after the last one
//! leaves, so the bus sends it only what its connections want (targeted routing). Changes per
//! conversation are serialized by an async lock per conversation, so a subscribe and an
//! unsubscribe racing on the bus cannot leave the node deaf to a conversation it wants.
//!
//! Only `crate::subscriptions::Subscriptions` changes it (after the hub subscription on
//! attach, after the last hub subscriber leaves on detach): that is what keeps the bus and the
//! hub in step.

use crate::backend::Broker;
use crate::error::Result;
use crate::hub::Hub;
use parking_lot::Mutex;
use std::collections::HashMap;
use std::sync::Arc;
use switchboard_proto::Conv;

/// conv -> "this node is subscribed on the bus", each behind the lock that serializes its changes.
#[derive(Default)]
pub struct BusInterest {
    slots: Mutex<HashMap<Conv, Arc<tokio::sync::Mutex<bool>>>>,
}

impl BusInterest {
    /// Makes sure this node receives `conv` from the bus. Called after adding a local
    /// subscriber and before reading history, so that nothing published in between is missed.
    pub(crate) async fn ensure(&self, broker: &dyn Broker, conv: &Conv) -> Result<()> {
        if !broker.needs_subscriptions() {
            return Ok(());
        }
        let slot = self.slots.lock().entry(conv.clone()).or_default().clone();
        let mut subscribed = slot.lock().await;
        if !*subscribed {
            broker.subscribe(conv).await?;
            *subscribed = true;
        }
        Ok(())
    }

    /// Drops the bus subscription of `conv` if no local subscriber is left in `hub`.
    pub(crate) async fn release(&self, broker: &dyn Broker, hub: &Hub, conv: &Conv) {
        if !broker.needs_subscriptions() {
            return;
        }
        let Some(slot) = self.slots.lock().get(conv).cloned() else {
            return;
        };
        let mut subscribed = slot.lock().await;
        if *subscribed && hub.subscriber_count(conv) == 0 {
            if let Err(e) = broker.unsubscribe(conv).await {
                tracing::warn!(%conv, error = %e, "bus unsubscribe failed");
                return;
            }
            *subscribed = false;
        }
        if !*subscribed {
            let mut map = self.slots.lock();
            // Only drop the slot if nobody else holds it (they cloned it under this lock).
            if map
                .get(conv)
                .is_some_and(|s| Arc::ptr_eq(s, &slot) && Arc::strong_count(s) == 2)
            {
                map.remove(conv);
            }
        }
    }

    /// Conversations this node is subscribed to on the bus, or being subscribed to or from
    /// (for tests and diagnostics: empty once every connection has gone).
    pub fn conversations(&self) -> Vec<Conv> {
        let mut convs: Vec<Conv> = self.slots.lock().keys().cloned().collect();
        convs.sort();
        convs
    }
}
