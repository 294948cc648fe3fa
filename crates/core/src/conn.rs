//! The shared half of one client connection: its outgoing frames and the last seq sent per
//! subscribed conversation, behind one short lock that both the fan-out and the connection's
//! session take.
//!
//! A delivery that is next in order for a connection with nothing waiting is written to the
//! socket right where the fan-out runs: one `writev`, no queue, no task wake-up. Anything else
//! (a gap to fill from history, a subscription still being set up, a socket that did not take
//! all the bytes) is left to the connection's session task, which owns the ordering rules (see
//! `session.rs`). "Is this seq next? Then write it and remember it" is one step under the lock,
//! whoever takes it, so no frame of a conversation can overtake another, and none is sent twice.
//!
//! Everything here is bounded: frames the fan-out hands over (written-but-unsent bytes and
//! deliveries left to the session) count against `max_queued`, and a connection past it is a
//! slow consumer. The session's own writes (replies, history replays) wait for room instead.

use crate::hub::Delivery;
use bytes::Bytes;
use parking_lot::{Mutex, MutexGuard};
use std::collections::VecDeque;
use std::future::Future;
use std::io;
use std::sync::Arc;
use std::task::{Context, Poll, Waker};
use std::time::Instant;
use switchboard_proto::{Conv, DisconnectReason};

/// A frame on its way out, before the transport's framing.
#[derive(Debug, Clone)]
pub enum Out {
    /// A JSON frame (a WebSocket text frame, a TCP length-prefixed frame, a long-poll entry).
    Text(Bytes),
    /// A heartbeat: a WebSocket ping frame, or `{"type":"ping"}` where there is none.
    Ping,
    /// The answer to a client's WebSocket ping, with its payload.
    Pong(Bytes),
    /// The very last frame: a WebSocket close frame with this code (nothing elsewhere).
    Close(u16),
}

/// How far a [`Wire::try_write`] got.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Progress {
    /// Frames written completely, from the first one given.
    pub frames: usize,
    /// Bytes of the framed form of the next frame written so far.
    pub offset: usize,
    /// The peer took less than was offered: wait for [`Wire::poll_writable`] before trying again.
    pub blocked: bool,
}

/// The write side of a transport, usable from any thread without waiting.
pub trait Wire: Send + Sync + 'static {
    /// Writes frames in order, the first starting `offset` bytes into its framed form, as far
    /// as the peer takes without waiting. A wire may take only some of the frames offered (a
    /// batch); `blocked` says whether it stopped because the peer would not take more.
    fn try_write(
        &self,
        frames: &mut dyn Iterator<Item = &Out>,
        offset: usize,
    ) -> io::Result<Progress>;
    /// Ready when `try_write` may make progress again.
    fn poll_writable(&self, cx: &mut Context<'_>) -> Poll<io::Result<()>>;
    /// Ends the write side after the last frame (best effort).
    fn shutdown(&self);
}

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
}

#[derive(Default)]
struct State {
    /// Subscribed conversations, sorted, each with the last seq written for it.
    subs: Vec<(Conv, u64)>,
    /// Frames accepted but not yet (fully) written, in order; the first is `offset` bytes in.
    backlog: VecDeque<Out>,
    offset: usize,
    /// When the backlog last moved (set while it is not empty): the write timeout's clock.
    moved_at: Option<Instant>,
    /// Deliveries and revocations for the session task, in arrival order.
    inbox: VecDeque<Outbound>,
    /// The session task, woken when `attention` is raised.
    waker: Option<Waker>,
    attention: bool,
    /// Asked to end, and why (the first reason wins).
    kill: Option<DisconnectReason>,
    /// A write failed: nothing more can be sent.
    failed: bool,
    /// The session is ending: the fan-out leaves the connection alone.
    closed: bool,
    /// The session is answering a publish: deliveries wait for it, so that the `published`
    /// reply comes before the sender's own copy of the message, as a client expects.
    held: bool,
}

impl State {
    fn sub(&mut self, conv: &Conv) -> Option<&mut u64> {
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

    fn set_sub(&mut self, conv: &Conv, last: u64) {
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
    fn attend(&mut self) -> Option<Waker> {
        self.attention = true;
        self.waker.take()
    }
}

fn wake(w: Option<Waker>) {
    if let Some(w) = w {
        w.wake();
    }
}

impl Conn {
    /// A connection writing through `wire`, cut as a slow consumer past `max_queued` frames.
    pub fn new(wire: Arc<dyn Wire>, max_queued: usize) -> Arc<Conn> {
        Arc::new(Conn {
            state: Mutex::new(State::default()),
            wire,
            max_queued: max_queued.max(1),
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

    /// Offers a message of a conversation this connection subscribed to (the fan-out). Written
    /// at once when it is the next seq and nothing else waits; otherwise left to the session.
    /// False if the connection did not take it (ending, already has it, or cut as a slow
    /// consumer because too much is waiting).
    pub fn offer(&self, d: &Arc<Delivery>) -> bool {
        let mut st = self.state.lock();
        // A connection asked to end sends nothing more (the protocol: waiting frames are not
        // sent); its client resumes from history.
        if st.closed || st.failed || st.kill.is_some() {
            return false;
        }
        if st.inbox.is_empty() && !st.held {
            let seq = d.message.seq;
            let full = self.full(&st);
            if let Some(last) = st.sub(&d.conv) {
                if seq <= *last {
                    return false;
                }
                if seq == *last + 1 {
                    if full {
                        // Refused before `last` moves: nothing is recorded as sent that was not.
                        drop(st);
                        self.cut();
                        return false;
                    }
                    *last = seq;
                    return self.push(st, Out::Text(d.frame.clone()), How::Now);
                }
            }
        }
        self.hand_over(st, Outbound::Message(d.clone()))
    }

    /// Ends a subscription from outside (access withdrawn), in order with the messages.
    pub fn revoke(&self, conv: Conv) {
        let st = self.state.lock();
        if !st.closed && st.kill.is_none() {
            self.hand_over(st, Outbound::Revoke(conv));
        }
    }

    /// Whether the fan-out may leave nothing more waiting.
    fn full(&self, st: &State) -> bool {
        st.inbox.len() + st.backlog.len() >= self.max_queued
    }

    /// Cuts the connection as a slow consumer (too much waiting).
    fn cut(&self) {
        if self.kill(DisconnectReason::SlowConsumer) {
            tracing::debug!("slow consumer: too many frames waiting");
        }
    }

    /// Leaves `o` to the session, or cuts the connection if too much is waiting.
    fn hand_over(&self, mut st: MutexGuard<'_, State>, o: Outbound) -> bool {
        if self.full(&st) {
            drop(st);
            self.cut();
            return false;
        }
        st.inbox.push_back(o);
        let w = st.attend();
        drop(st);
        wake(w);
        true
    }

    /// Writes `out` behind whatever is waiting, or straight to the wire when nothing is. False
    /// if the wire failed. (The fan-out checks its bound before it calls this.)
    fn push(&self, mut st: MutexGuard<'_, State>, out: Out, how: How) -> bool {
        if st.failed {
            return false;
        }
        if !st.backlog.is_empty() || how == How::Later {
            if st.backlog.is_empty() {
                st.moved_at = Some(Instant::now());
            }
            // Whoever started the backlog raised attention; the session flushes it.
            st.backlog.push_back(out);
            return true;
        }
        let w = match self.wire.try_write(&mut std::iter::once(&out), 0) {
            Ok(p) if p.frames == 1 => return true,
            Ok(p) => {
                st.backlog.push_back(out);
                st.offset = p.offset;
                st.moved_at = Some(Instant::now());
                st.attend()
            }
            Err(e) => {
                tracing::debug!(error = %e, "write failed");
                st.failed = true;
                st.attend()
            }
        };
        let ok = !st.failed;
        drop(st);
        wake(w);
        ok
    }

    // ----- from the session task -----

    /// Completes when something was handed over, the connection was asked to end, a write
    /// failed, or the backlog started. Clears the signal.
    pub(crate) fn attention(&self) -> impl Future<Output = ()> + '_ {
        std::future::poll_fn(move |cx| {
            let mut st = self.state.lock();
            if st.attention {
                st.attention = false;
                return Poll::Ready(());
            }
            if !st.waker.as_ref().is_some_and(|w| w.will_wake(cx.waker())) {
                st.waker = Some(cx.waker().clone());
            }
            Poll::Pending
        })
    }

    /// Holds deliveries back for the session (`true`) or lets the fan-out write again.
    pub(crate) fn hold(&self, held: bool) {
        let mut st = self.state.lock();
        st.held = held;
        if !held && !st.inbox.is_empty() {
            st.attention = true;
        }
    }

    /// Whether a write failed.
    pub(crate) fn failed(&self) -> bool {
        self.state.lock().failed
    }

    /// The oldest thing handed over to the session.
    pub(crate) fn next_handed_over(&self) -> Option<Outbound> {
        self.state.lock().inbox.pop_front()
    }

    /// Writes a frame of the session's own (a reply, a heartbeat, the last frames), in order
    /// with everything else. Not bounded: the session waits for room with [`Conn::flush`].
    pub(crate) fn write(&self, out: Out) -> Result<(), Broken> {
        let st = self.state.lock();
        if self.push(st, out, How::Now) {
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
        let Some(last) = st.sub(conv) else {
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

    /// The last seq the client has of `conv`, if subscribed.
    pub(crate) fn last_seq(&self, conv: &Conv) -> Option<u64> {
        self.state.lock().sub(conv).copied()
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

    /// Forgets every subscription, returning them.
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
                    st.backlog.drain(..p.frames);
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
        st.backlog.truncate(keep);
        if st.backlog.is_empty() {
            st.moved_at = None;
        }
    }

    /// Makes the session look at the connection again at its next turn (more was handed
    /// over than it takes at once).
    pub(crate) fn poke(&self) {
        self.state.lock().attention = true;
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
        st.inbox = VecDeque::new();
    }

    /// Ends the write side (after the last frames were flushed).
    pub(crate) fn shutdown(&self) {
        self.wire.shutdown();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use switchboard_proto::Message;

    /// A wire that takes `room` bytes, then would block; records what it wrote.
    #[derive(Default)]
    struct Pipe {
        room: AtomicUsize,
        written: Mutex<Vec<u8>>,
    }

    impl Wire for Arc<Pipe> {
        fn try_write(
            &self,
            frames: &mut dyn Iterator<Item = &Out>,
            offset: usize,
        ) -> io::Result<Progress> {
            let mut p = Progress {
                frames: 0,
                offset,
                blocked: false,
            };
            for frame in frames {
                let bytes: Vec<u8> = match frame {
                    Out::Text(b) => b.to_vec(),
                    Out::Ping => b"PING".to_vec(),
                    Out::Pong(_) => b"PONG".to_vec(),
                    Out::Close(_) => b"CLOSE".to_vec(),
                };
                let left = &bytes[p.offset..];
                let n = left.len().min(self.room.load(Ordering::SeqCst));
                self.room.fetch_sub(n, Ordering::SeqCst);
                self.written.lock().extend_from_slice(&left[..n]);
                if n < left.len() {
                    p.offset += n;
                    p.blocked = true;
                    return Ok(p);
                }
                p.frames += 1;
                p.offset = 0;
            }
            Ok(p)
        }
        fn poll_writable(&self, _: &mut Context<'_>) -> Poll<io::Result<()>> {
            Poll::Ready(Ok(()))
        }
        fn shutdown(&self) {}
    }

    fn delivery(conv: &Conv, seq: u64) -> Arc<Delivery> {
        let message = Arc::new(Message {
            conv: conv.clone(),
            seq,
            message_id: format!("m{seq}"),
            from: None,
            to: None,
            ts: 0,
            client_msg_id: None,
            body: switchboard_proto::MessageBody::from_json("1".into()).unwrap(),
        });
        Arc::new(Delivery {
            conv: conv.clone(),
            frame: Bytes::from(format!("<{seq}>")),
            message,
        })
    }

    fn written(p: &Pipe) -> String {
        String::from_utf8(p.written.lock().clone()).unwrap()
    }

    #[test]
    fn next_in_order_is_written_at_once_others_go_to_the_session() {
        let pipe = Arc::new(Pipe::default());
        pipe.room.store(1 << 20, Ordering::SeqCst);
        let conn = Conn::new(Arc::new(pipe.clone()), 8);
        let c = Conv::room("r");
        conn.subscribe_with(&[(c.clone(), 3)], Bytes::from_static(b"[sub]"))
            .unwrap();
        assert!(conn.offer(&delivery(&c, 4)));
        assert!(!conn.offer(&delivery(&c, 4)), "a repeat is dropped");
        assert!(conn.offer(&delivery(&c, 6)), "a gap is handed over");
        assert_eq!(written(&pipe), "[sub]<4>");
        // While something is handed over, even the next seq waits behind it.
        assert!(conn.offer(&delivery(&c, 5)));
        assert_eq!(written(&pipe), "[sub]<4>");
        assert!(
            matches!(conn.next_handed_over(), Some(Outbound::Message(d)) if d.message.seq == 6)
        );
        assert_eq!(
            conn.write_message(&c, 6, &Bytes::from_static(b"<6>"), false, How::Now),
            Ok(Sent::Gap(4))
        );
        assert_eq!(
            conn.write_message(&c, 5, &Bytes::from_static(b"<5>"), true, How::Now),
            Ok(Sent::Written)
        );
        assert_eq!(
            conn.write_message(&c, 6, &Bytes::from_static(b"<6>"), false, How::Now),
            Ok(Sent::Written)
        );
        assert!(
            matches!(conn.next_handed_over(), Some(Outbound::Message(d)) if d.message.seq == 5)
        );
        assert_eq!(
            conn.write_message(&c, 5, &Bytes::from_static(b"<5>"), false, How::Now),
            Ok(Sent::Duplicate)
        );
        assert!(conn.offer(&delivery(&c, 7)), "back to direct writes");
        assert_eq!(written(&pipe), "[sub]<4><5><6><7>");
        // While held (a publish is being answered), even the next seq goes to the session.
        conn.hold(true);
        assert!(conn.offer(&delivery(&c, 8)));
        assert_eq!(written(&pipe), "[sub]<4><5><6><7>");
        conn.hold(false);
        assert!(
            matches!(conn.next_handed_over(), Some(Outbound::Message(d)) if d.message.seq == 8)
        );
        // Unsubscribed conversations are left to the session (it may be setting one up).
        let other = Conv::room("o");
        assert!(conn.offer(&delivery(&other, 1)));
        assert_eq!(
            conn.write_message(&other, 1, &Bytes::from_static(b"x"), true, How::Now),
            Ok(Sent::NotSubscribed)
        );
    }

    #[test]
    fn a_partial_write_keeps_the_order_and_a_full_queue_is_a_slow_consumer() {
        let pipe = Arc::new(Pipe::default());
        pipe.room.store(5, Ordering::SeqCst);
        let conn = Conn::new(Arc::new(pipe.clone()), 3);
        let c = Conv::room("r");
        conn.subscribe_with(&[(c.clone(), 0)], Bytes::from_static(b"[s]"))
            .unwrap();
        assert!(conn.offer(&delivery(&c, 1)), "partly written");
        assert!(conn.offer(&delivery(&c, 2)), "queued behind");
        assert_eq!(conn.backlog(), 2);
        assert!(conn.backlog_moved_at().is_some());
        assert!(conn.offer(&delivery(&c, 3)));
        assert!(!conn.offer(&delivery(&c, 4)), "over the bound");
        assert_eq!(conn.reason(), Some(DisconnectReason::SlowConsumer));
        assert_eq!(
            conn.last_seq(&c),
            Some(3),
            "a refused message is not counted as sent"
        );
        pipe.room.store(1 << 20, Ordering::SeqCst);
        assert!(
            !conn.offer(&delivery(&c, 4)),
            "a cut connection takes nothing more"
        );
        pipe.room.store(0, Ordering::SeqCst);
        pipe.room.store(1 << 20, Ordering::SeqCst);
        assert_eq!(conn.flush(), Ok(true));
        assert_eq!(written(&pipe), "[s]<1><2><3>");
        assert_eq!(conn.backlog_moved_at(), None);
    }

    #[test]
    fn a_closed_connection_takes_nothing_more() {
        let pipe = Arc::new(Pipe::default());
        pipe.room.store(1 << 20, Ordering::SeqCst);
        let conn = Conn::new(Arc::new(pipe.clone()), 8);
        let c = Conv::room("r");
        conn.subscribe_with(&[(c.clone(), 0)], Bytes::from_static(b""))
            .unwrap();
        conn.close();
        assert!(!conn.offer(&delivery(&c, 1)));
        assert_eq!(written(&pipe), "");
    }
}
