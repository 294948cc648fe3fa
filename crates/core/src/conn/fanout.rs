//! The fan-out's side of a connection: offering a message, or a conversation's run of them,
//! writing what is simply next at once and handing the rest to the session, within the bound
//! (see the rules in [`super`]).

use super::state::wake;
use super::{Conn, How, Outbound, State};
use crate::delivery::Delivery;
use crate::transport::Out;
use parking_lot::MutexGuard;
use std::sync::Arc;
use switchboard_proto::{Conv, DisconnectReason};

impl Conn {
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
        if st.inbox.is_empty() && st.held == 0 {
            let seq = d.message.seq;
            let full = self.full(&st);
            if let Some(last) = st.live_sub(&d.conv) {
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

    /// Offers a run of messages of one conversation, in seq order (what one commit stored for
    /// it): what is simply next for this connection leaves in one write, not one per message;
    /// the rest is offered one by one, as [`Conn::offer`] would. Returns how many it took.
    pub fn offer_run(&self, run: &[Arc<Delivery>]) -> u64 {
        let [first, ..] = run else {
            return 0;
        };
        if run.len() == 1 {
            return u64::from(self.offer(first));
        }
        let Some((mut taken, rest)) = self.write_next_of(run) else {
            return 0;
        };
        for d in rest {
            taken += u64::from(self.offer(d));
        }
        taken
    }

    /// [`Conn::offer_run`]'s one write: with nothing waiting (no backlog: the bound cannot be
    /// reached before the write), the run's next messages are written together, as many as the
    /// bound allows to be left unsent (what the socket does not take waits in the backlog,
    /// within the bound). Returns how many it wrote and what is left to offer one by one
    /// (repeats are dropped here); `None` when the connection takes nothing more (ending, or
    /// its wire failed).
    fn write_next_of<'a>(&self, run: &'a [Arc<Delivery>]) -> Option<(u64, &'a [Arc<Delivery>])> {
        let mut st = self.state.lock();
        if st.closed || st.failed || st.kill.is_some() {
            return None;
        }
        if !(st.inbox.is_empty() && st.held == 0 && st.backlog.is_empty()) {
            return Some((0, run));
        }
        let (max_frames, max_bytes) = (self.max_queued, self.max_queued_bytes);
        let Some(last) = st.live_sub(&run.first()?.conv) else {
            return Some((0, run));
        };
        let next = *last + 1;
        let old = run.iter().take_while(|d| d.message.seq < next).count();
        let (mut n, mut bytes) = (0, 0);
        for d in &run[old..] {
            let len = d.frame.len();
            if d.message.seq != next + n as u64
                || n >= max_frames
                || (n > 0 && bytes + len > max_bytes)
            {
                break;
            }
            (n, bytes) = (n + 1, bytes + len);
        }
        if n == 0 {
            return Some((0, &run[old..]));
        }
        *last = next + n as u64 - 1;
        let outs: Vec<Out> = run[old..old + n]
            .iter()
            .map(|d| Out::Text(d.frame.clone()))
            .collect();
        if !self.write_through(st, &outs) {
            return None;
        }
        Some((n as u64, &run[old + n..]))
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
        let (frames, bytes) = st.queued();
        frames >= self.max_queued || bytes >= self.max_queued_bytes
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
        st.push_inbox(o);
        let w = st.attend();
        drop(st);
        wake(w);
        true
    }
}
