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
    /// Bytes of the frames in `backlog` (a partly written one counts whole until it is gone).
    pub(super) backlog_bytes: usize,
    /// Bytes of the frames of the deliveries in `inbox`.
    pub(super) inbox_bytes: usize,
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
    /// Holds alive ([`super::Held`]): while any is (publishes in flight, an authentication),
    /// deliveries wait for the session, so that the `published` reply comes before the
    /// sender's own copy of the message, as a client expects. A count, so that two holders
    /// cannot let each other's hold go.
    pub(super) held: u32,
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

/// The bytes a frame holds while it waits.
fn out_bytes(o: &Out) -> usize {
    match o {
        Out::Text(b) | Out::Pong(b) => b.len(),
        Out::Ping | Out::Close(_) => 0,
    }
}

/// The bytes a hand-over holds while it waits.
fn outbound_bytes(o: &Outbound) -> usize {
    match o {
        Outbound::Message(d) => d.frame.len(),
        Outbound::Revoke(_) => 0,
    }
}

/// The queues change only through these, so their byte counts stay exact.
impl State {
    /// Frames and bytes waiting: unsent plus handed over.
    pub(super) fn queued(&self) -> (usize, usize) {
        (
            self.inbox.len() + self.backlog.len(),
            self.inbox_bytes + self.backlog_bytes,
        )
    }

    /// Queues `out` for the session's next flush (behind what waits); a backlog that starts
    /// here starts the write timeout's clock.
    pub(super) fn push_later(&mut self, out: Out) {
        if self.backlog.is_empty() {
            self.moved_at = Some(tokio::time::Instant::now());
        }
        self.push_backlog(out);
    }

    pub(super) fn push_backlog(&mut self, out: Out) {
        self.backlog_bytes += out_bytes(&out);
        self.backlog.push_back(out);
    }

    /// Forgets the first `n` frames of the backlog (written).
    pub(super) fn drain_backlog(&mut self, n: usize) {
        for out in self.backlog.drain(..n) {
            self.backlog_bytes -= out_bytes(&out);
        }
    }

    /// Keeps only the first `keep` frames of the backlog.
    pub(super) fn truncate_backlog(&mut self, keep: usize) {
        while self.backlog.len() > keep {
            if let Some(out) = self.backlog.pop_back() {
                self.backlog_bytes -= out_bytes(&out);
            }
        }
    }

    pub(super) fn push_inbox(&mut self, o: Outbound) {
        self.inbox_bytes += outbound_bytes(&o);
        self.inbox.push_back(o);
    }

    pub(super) fn pop_inbox(&mut self) -> Option<Outbound> {
        let o = self.inbox.pop_front()?;
        self.inbox_bytes -= outbound_bytes(&o);
        Some(o)
    }

    /// Drops everything handed over (and its memory).
    pub(super) fn clear_inbox(&mut self) {
        self.inbox = VecDeque::new();
        self.inbox_bytes = 0;
    }
}
