//! The shared half of one client connection: its outgoing frames and the last seq sent per
//! subscribed conversation, behind one short lock that both the fan-out and the connection's
//! session take.
//!
//! A delivery that is next in order for a connection with nothing waiting is written to the
//! socket right where the fan-out runs: one `writev`, no queue, no task wake-up. Anything else
//! (a gap to fill from history, a subscription still being set up, a socket that did not take
//! all the bytes) is left to the connection's session task, which owns the ordering rules (see
//! [`crate::session`]). "Is this seq next? Then write it and remember it" is one step under the
//! lock, whoever takes it, so no frame of a conversation can overtake another, and none is sent
//! twice.
//!
//! Everything here is bounded: frames the fan-out hands over (written-but-unsent bytes and
//! deliveries left to the session) count against `max_queued` frames and `max_queued_bytes`
//! bytes, and a connection past either is a slow consumer. The session's own writes (replies, history replays) wait for room instead.
//!
//! # The rules between the session and `Conn`
//! Each rule is kept here, where it can be, so the session cannot get it wrong:
//! 1. **A subscription is pending until its reply is written.** `Conn::add_pending` (called by
//!    `crate::subscriptions::Subscriptions::attach` right after the hub subscription) records
//!    the conversation with no position: the fan-out hands every delivery of it to the session
//!    instead of writing it. `Conn::subscribe_with` then sets the client's position and writes
//!    the `subscribed`/`welcome` reply in one step under the lock, so no message of the
//!    conversation can precede that reply; what was handed over meanwhile is then written or
//!    dropped by seq. The pending entry is also what makes teardown total: a subscription is in
//!    this list from the moment the hub has it.
//! 2. **Work handed over is never stranded.** `Conn::attention` is ready while anything waits
//!    in the inbox (not only when a new hand-over raised the flag), so a session that takes a
//!    bounded batch per turn comes back for the rest by itself.
//! 3. **A reply is not overtaken by what it answers.** While the session answers a publish (or
//!    authenticates), it holds a `Held` guard: the fan-out hands everything over, so the
//!    `published` reply reaches the sender before its own copy of the message. The guard lets
//!    go when dropped, on every path out, errors and panics included.
//! 4. **One writer at a time, in order.** Whoever writes (fan-out or session) does it under the
//!    lock and behind any backlog: only `Conn::flush` (the session) moves the backlog.

mod answer;
mod fanout;
mod state;

use crate::delivery::Delivery;
use crate::transport::{Out, Wire};
use bytes::Bytes;
use parking_lot::{Mutex, MutexGuard};
use state::{PENDING, State, wake};
use std::collections::VecDeque;
use std::future::Future;
use std::sync::Arc;
use std::task::Poll;
use switchboard_proto::{Conv, DisconnectReason};
use tokio::time::Instant;

/// What the fan-out leaves to a connection's session instead of writing it.
#[derive(Debug)]
pub enum Outbound {
    /// A message that is not simply next in order (or arrived while other work was queued).
    Message(Arc<Delivery>),
    /// Access to a conversation was withdrawn (removed from a private room): end that
    /// subscription. Queued with the messages so it stays ordered with them.
    Revoke(Conv),
}

/// How a frame is written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum How {
    /// Now: behind what waits, or straight to the wire.
    Now,
    /// In a batch the session flushes itself (history replays): always queued.
    Later,
}

/// The connection can no longer be written to (the peer is gone or the socket failed).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Broken;

/// What became of a message the session asked to write.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Sent {
    /// Written (or queued behind earlier bytes, in order).
    Written,
    /// At or below what the client already has: dropped.
    Duplicate,
    /// Messages are missing between the last one sent (this seq) and this one.
    Gap(u64),
    /// The conversation is not (or no longer) subscribed.
    NotSubscribed,
}

/// One connection's shared state.
pub struct Conn {
    state: Mutex<State>,
    /// Shared with the transport's reader (a socket wire holds the socket itself: one
    /// allocation, one cache line fewer per delivery than a box around a shared socket).
    wire: Arc<dyn Wire>,
    /// Frames the fan-out may leave waiting (unsent plus handed to the session) before the
    /// connection is cut as a slow consumer.
    max_queued: usize,
    /// The same bound in bytes.
    max_queued_bytes: usize,
}

impl Conn {
    /// A connection writing through `wire`, cut as a slow consumer past `max_queued` frames or
    /// `max_queued_bytes` bytes waiting.
    pub fn new(wire: Arc<dyn Wire>, max_queued: usize, max_queued_bytes: usize) -> Arc<Conn> {
        Arc::new(Conn {
            state: Mutex::new(State::default()),
            wire,
            max_queued: max_queued.max(1),
            max_queued_bytes: max_queued_bytes.max(1),
        })
    }

    // ----- from anywhere -----

    /// Asks the connection to end with `reason`. False if it was already asked.
    pub fn kill(&self, reason: DisconnectReason) -> bool {
        let mut st = self.state.lock();
        if st.kill.is_some() {
            return false;
        }
        st.kill = Some(reason);
        let w = st.attend();
        drop(st);
        wake(w);
        true
    }

    /// The reason it was asked to end, if it was.
    pub fn reason(&self) -> Option<DisconnectReason> {
        self.state.lock().kill
    }

    /// Writes `out` behind whatever is waiting, or straight to the wire when nothing is. False
    /// if the wire failed. (The fan-out checks its bound before it calls this.)
    fn push(&self, mut st: MutexGuard<'_, State>, out: Out, how: How) -> bool {
        if st.failed {
            return false;
        }
        if !st.backlog.is_empty() || how == How::Later {
            // Whoever started the backlog raised attention; the session flushes it.
            st.push_later(out);
            return true;
        }
        self.write_through(st, std::slice::from_ref(&out))
    }

    /// Writes `outs` straight to the wire (nothing waits before them); what the socket does not
    /// take waits in the backlog, in order, for the session's flush. False if the wire failed.
    fn write_through(&self, mut st: MutexGuard<'_, State>, outs: &[Out]) -> bool {
        let mut done = 0;
        let w = loop {
            match self.wire.try_write(&mut outs[done..].iter(), 0) {
                Ok(p) if done + p.frames == outs.len() => return true,
                // A wire writes a bounded number of frames per call: go on while it takes them.
                Ok(p) if p.frames > 0 && p.offset == 0 && !p.blocked => done += p.frames,
                Ok(p) => {
                    for out in &outs[done + p.frames..] {
                        st.push_backlog(out.clone());
                    }
                    st.offset = p.offset;
                    st.moved_at = Some(Instant::now());
                    break st.attend();
                }
                Err(e) => {
                    tracing::debug!(error = %e, "write failed");
                    st.failed = true;
                    break st.attend();
                }
            }
        };
        let ok = !st.failed;
        drop(st);
        wake(w);
        ok
    }

    // ----- from the session task -----

    /// Completes when something waits in the inbox, the connection was asked to end, a write
    /// failed, or the backlog started. Clears the signal (rule 2: a non-empty inbox keeps it
    /// ready, so what a session leaves for its next turn is not stranded).
    pub(crate) fn attention(&self) -> impl Future<Output = ()> + '_ {
        std::future::poll_fn(move |cx| {
            let mut st = self.state.lock();
            if st.attention || !st.inbox.is_empty() {
                st.attention = false;
                return Poll::Ready(());
            }
            if !st.waker.as_ref().is_some_and(|w| w.will_wake(cx.waker())) {
                st.waker = Some(cx.waker().clone());
            }
            Poll::Pending
        })
    }

    /// Holds deliveries back for the session until the guard is dropped (rule 3).
    pub(crate) fn hold(self: &Arc<Self>) -> Held {
        self.state.lock().held += 1;
        Held(self.clone())
    }

    /// Whether a write failed.
    pub(crate) fn failed(&self) -> bool {
        self.state.lock().failed
    }

    /// The oldest thing handed over to the session.
    pub(crate) fn next_handed_over(&self) -> Option<Outbound> {
        self.state.lock().pop_inbox()
    }

    /// Writes a frame of the session's own (a reply, a heartbeat, the last frames), in order
    /// with everything else. Not bounded: the session waits for room with [`Conn::flush`].
    pub(crate) fn write(&self, out: Out) -> Result<(), Broken> {
        self.write_as(out, How::Now)
    }

    /// [`Conn::write`], or with [`How::Later`] queued for the session's next [`Conn::flush`]
    /// (so that frames written together leave in one system call).
    pub(crate) fn write_as(&self, out: Out, how: How) -> Result<(), Broken> {
        let st = self.state.lock();
        if self.push(st, out, how) {
            Ok(())
        } else {
            Err(Broken)
        }
    }

    /// Writes a message for the session (handed over, or read from history) if it is new
    /// for the client. With `jump`, a seq past the next one is fine (history is the
    /// authority on what exists); otherwise the gap is reported and nothing is written.
    pub(crate) fn write_message(
        &self,
        conv: &Conv,
        seq: u64,
        frame: &Bytes,
        jump: bool,
        how: How,
    ) -> Result<Sent, Broken> {
        let mut st = self.state.lock();
        if st.failed {
            return Err(Broken);
        }
        let Some(last) = st.live_sub(conv) else {
            return Ok(Sent::NotSubscribed);
        };
        if seq <= *last {
            return Ok(Sent::Duplicate);
        }
        if seq > *last + 1 && !jump {
            return Ok(Sent::Gap(*last));
        }
        *last = seq;
        if self.push(st, Out::Text(frame.clone()), how) {
            Ok(Sent::Written)
        } else {
            Err(Broken)
        }
    }

    /// Sets where the subscriptions in `subs` stand (conv, last seq the client has) and
    /// writes `reply` in the same step, so that no message of them can precede the reply.
    pub(crate) fn subscribe_with(&self, subs: &[(Conv, u64)], reply: Bytes) -> Result<(), Broken> {
        let mut st = self.state.lock();
        for (conv, last) in subs {
            st.set_sub(conv, *last);
        }
        if self.push(st, Out::Text(reply), How::Now) {
            Ok(())
        } else {
            Err(Broken)
        }
    }

    /// Records a subscription being set up (rule 1): known for teardown and for the count,
    /// but every delivery of it goes to the session until [`Conn::subscribe_with`].
    pub(crate) fn add_pending(&self, conv: &Conv) {
        let mut st = self.state.lock();
        if st.sub(conv).is_none() {
            st.set_sub(conv, PENDING);
        }
    }

    /// The last seq the client has of `conv`, if subscribed (and not pending).
    pub(crate) fn last_seq(&self, conv: &Conv) -> Option<u64> {
        self.state.lock().live_sub(conv).copied()
    }

    /// Whether `conv` is subscribed.
    pub(crate) fn is_subscribed(&self, conv: &Conv) -> bool {
        self.last_seq(conv).is_some()
    }

    /// Subscriptions held.
    pub(crate) fn subscription_count(&self) -> usize {
        self.state.lock().subs.len()
    }

    /// Forgets a subscription; later messages of it are dropped.
    pub(crate) fn remove_sub(&self, conv: &Conv) {
        let mut st = self.state.lock();
        if let Ok(i) = st.subs.binary_search_by(|(c, _)| c.cmp(conv)) {
            st.subs.remove(i);
        }
    }

    /// Forgets every subscription, pending ones too, returning them.
    pub(crate) fn take_subs(&self) -> Vec<Conv> {
        let mut st = self.state.lock();
        std::mem::take(&mut st.subs)
            .into_iter()
            .map(|(c, _)| c)
            .collect()
    }

    /// Frames accepted but not yet written.
    pub(crate) fn backlog(&self) -> usize {
        self.state.lock().backlog.len()
    }

    /// Whether more than `frames` frames or `bytes` bytes are unsent.
    pub(crate) fn backlog_over(&self, frames: usize, bytes: usize) -> bool {
        let st = self.state.lock();
        st.backlog.len() > frames || st.backlog_bytes > bytes
    }

    /// When the backlog last moved, while there is one.
    pub(crate) fn backlog_moved_at(&self) -> Option<Instant> {
        self.state.lock().moved_at
    }

    /// Writes as much of the backlog as the wire takes now. `Ok(true)` once it is empty.
    pub(crate) fn flush(&self) -> Result<bool, Broken> {
        let mut st = self.state.lock();
        if st.failed {
            return Err(Broken);
        }
        let mut moved = false;
        while !st.backlog.is_empty() {
            let offset = st.offset;
            match self.wire.try_write(&mut st.backlog.iter(), offset) {
                Ok(p) => {
                    moved |= p.frames > 0 || p.offset > offset;
                    st.drain_backlog(p.frames);
                    st.offset = p.offset;
                    if p.blocked {
                        break;
                    }
                }
                Err(e) => {
                    tracing::debug!(error = %e, "write failed");
                    st.failed = true;
                    return Err(Broken);
                }
            }
        }
        if st.backlog.is_empty() {
            st.moved_at = None;
            // A burst should not pin its queue's memory for the connection's life.
            if st.backlog.capacity() > 64 {
                st.backlog = VecDeque::new();
            }
            Ok(true)
        } else {
            if moved {
                st.moved_at = Some(Instant::now());
            }
            Ok(false)
        }
    }

    /// Drops the frames not yet started (a slow consumer's: the protocol does not send them),
    /// keeping a partly written one so the stream stays well formed.
    pub(crate) fn discard_unsent(&self) {
        let mut st = self.state.lock();
        let keep = usize::from(st.offset > 0);
        st.truncate_backlog(keep);
        if st.backlog.is_empty() {
            st.moved_at = None;
        }
    }

    /// Ready when the wire may take more of the backlog.
    pub(crate) fn writable(&self) -> impl Future<Output = ()> + '_ {
        std::future::poll_fn(move |cx| match self.wire.poll_writable(cx) {
            // An error shows at the next write.
            Poll::Ready(_) => Poll::Ready(()),
            Poll::Pending => Poll::Pending,
        })
    }

    /// The session is ending: the fan-out stops writing, and what it handed over is dropped.
    pub(crate) fn close(&self) {
        let mut st = self.state.lock();
        st.closed = true;
        st.clear_inbox();
    }

    /// Ends the write side (after the last frames were flushed).
    pub(crate) fn shutdown(&self) {
        self.wire.shutdown();
    }
}

/// Deliveries are held back for the session while this lives (see [`Conn::hold`]).
pub(crate) struct Held(Arc<Conn>);

impl Drop for Held {
    fn drop(&mut self) {
        let mut st = self.0.state.lock();
        st.held = st.held.saturating_sub(1);
    }
}

#[cfg(test)]
mod run_tests;
#[cfg(test)]
mod tests;
