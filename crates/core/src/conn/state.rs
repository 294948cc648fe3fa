//! The state behind a connection's lock, and its small helpers: the subscription list with its
//! positions, the backlog, the inbox handed to the session, and the flags.

use super::Outbound;
use crate::transport::Out;
use std::collections::VecDeque;
use std::task::Waker;
use switchboard_proto::{Conv, DisconnectReason};
use tokio::time::Instant;

/// The position of a subscription whose reply is not written yet (rule 1): the fan-out hands
/// its deliveries over instead of writing them, and the session's writes see no subscription.
pub(super) const PENDING: u64 = u64::MAX;

#[derive(Default)]
pub(super) struct State {
    /// Subscribed conversations, sorted, each with the last seq written for it ([`PENDING`]
    /// until the subscription's reply is written).
    pub(super) subs: Vec<(Conv, u64)>,
    /// Frames accepted but not yet (fully) written, in order; the first is `offset` bytes in.
    pub(super) backlog: VecDeque<Out>,
    pub(super) offset: usize,
    /// When the backlog last moved (set while it is not empty): the write timeout's clock.
    pub(super) moved_at: Option<Instant>,
    /// Deliveries and revocations for the session task, in arrival order.
    pub(super) inbox: VecDeque<Outbound>,
    /// The session task, woken when `attention` is raised.
    pub(super) waker: Option<Waker>,
    pub(super) attention: bool,
    /// Asked to end, and why (the first reason wins).
    pub(super) kill: Option<DisconnectReason>,
    /// A write failed: nothing more can be sent.
    pub(super) failed: bool,
    /// The session is ending: the fan-out leaves the connection alone.
    pub(super) closed: bool,
    /// The session is answering a publish: deliveries wait for it, so that the `published`
    /// reply comes before the sender's own copy of the message, as a client expects.
    pub(super) held: bool,
}

impl State {
    /// The position of a subscription whose reply was written (not a pending one).
    pub(super) fn live_sub(&mut self, conv: &Conv) -> Option<&mut u64> {
        self.sub(conv).filter(|last| **last != PENDING)
    }

    pub(super) fn sub(&mut self, conv: &Conv) -> Option<&mut u64> {
        // The fan-out's name is usually the very one stored here: a pointer compare (a few of
        // them) spares reading the text of this connection's copy.
        if self.subs.len() <= 4
            && let Some(i) = self.subs.iter().position(|(c, _)| c.same(conv))
        {
            return Some(&mut self.subs[i].1);
        }
        match self.subs.binary_search_by(|(c, _)| c.cmp(conv)) {
            Ok(i) => Some(&mut self.subs[i].1),
            Err(_) => None,
        }
    }

    pub(super) fn set_sub(&mut self, conv: &Conv, last: u64) {
        match self.subs.binary_search_by(|(c, _)| c.cmp(conv)) {
            Ok(i) => self.subs[i].1 = last,
            Err(i) => {
                // Most connections hold one or two subscriptions: grow one at a time.
                self.subs.reserve_exact(1);
                self.subs.insert(i, (conv.clone(), last))
            }
        }
    }

    /// Raises attention; the waker to wake once the lock is released.
    pub(super) fn attend(&mut self) -> Option<Waker> {
        self.attention = true;
        self.waker.take()
    }
}

pub(super) fn wake(w: Option<Waker>) {
    if let Some(w) = w {
        w.wake();
    }
}
