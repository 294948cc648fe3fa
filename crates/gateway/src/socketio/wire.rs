//! The writing half a Socket.IO socket runs the core's session on: [`SioWire`] writes native
//! frames as events and acknowledgements (`message` events with the socket's offset) through
//! an [`Outlet`], a socket of the protocol library (its reading half is [`super::inbox`], the
//! client's events already translated to native frames) or a direct WebSocket
//! ([`super::ws_outlet`]; its reading half is [`super::ws_read`]).
//!
//! The wire keeps the socket's slots ([`Slots`]): a `subscribed` reply opens one, so the next
//! `message` of that conversation is counted in the offset; every change is written to the
//! `pid`'s record ([`Records`]), and the end hands it the latest one (where records do not
//! outlive the process, that is the only one written). A message is framed once per socket from
//! the shared bytes of the node's one encoding, adding only the offset.
//!
//! Ends: `reconnect` (drain) emits `switchboard:reconnect` and closes the transport `delay_ms`
//! later without a DISCONNECT, so stock clients reconnect and recover by themselves; any other
//! `disconnect` emits `switchboard:disconnect` then sends DISCONNECT. The session's heartbeat is
//! answered here at once where the library runs Engine.IO's heartbeat (its pings find dead
//! clients: the library closes them, and the transport then ends); on a WebSocket the session
//! runs itself ([`super::ws_session`]) the session's heartbeat is Engine.IO's ping.

use super::inbox::Inbox;
use super::offset::Slots;
use super::record::{Record, Records};
use super::translate::{Outgoing, ack_object_args, outgoing, with_message};
use bytes::Bytes;
use parking_lot::Mutex;
use serde_json::{Value, json};
use std::io;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;
use switchboard_core::transport::{Out, Progress, Wire};

/// Where a socket's packets go: a socket of the protocol library, or a direct WebSocket.
pub trait Outlet: Send + Sync + 'static {
    /// Writes what the outlet kept of the frames written so far (the rest of one the socket
    /// did not take whole): `None` once nothing is kept, else how many bytes it has written
    /// of what it kept, ever (positive, and growing as they are written). An outlet that
    /// queues whole packets itself keeps nothing here.
    fn flush(&self) -> Option<usize>;
    /// Ready when [`flush`](Outlet::flush) may make progress (or the socket closed).
    fn poll_room(&self, cx: &mut Context<'_>) -> Poll<()>;
    /// Queues event `event` whose arguments are the JSON array `args` (already encoded).
    fn emit(&self, event: &str, args: String) -> io::Result<()>;
    /// Queues a `message` event: the message object (JSON text shared by every socket, the
    /// node's own encoding) and the offset (its JSON text, quoted).
    fn emit_message(&self, object: &str, offset_json: &str) -> io::Result<()>;
    /// Queues the acknowledgement `id` with `args_json`, a JSON array's text written as it is.
    fn ack(&self, id: u64, args_json: &str) -> io::Result<()>;
    /// The session's heartbeat is due: `Ok(true)` when the outlet sent Engine.IO's ping itself
    /// (its transport has no heartbeat of its own, and the client's pong comes back to the
    /// session); `Ok(false)` when Engine.IO's heartbeat runs elsewhere, and the session's is
    /// answered at once.
    fn ping(&self) -> io::Result<bool>;
    /// Answers a WebSocket ping of the client's (only outlets that read the client's
    /// WebSocket themselves get one).
    fn pong(&self, _payload: &[u8]) -> io::Result<()> {
        Ok(())
    }
    /// Sends DISCONNECT and closes (an outlet that writes through the session closes at
    /// [`finish`](Outlet::finish), once the session wrote out what it had).
    fn disconnect(&self);
    /// The session ended and wrote out what it could: close whatever is still open (unless a
    /// close was scheduled for later). Nothing to do where `disconnect` and the transport's end
    /// close by themselves.
    fn finish(&self) {}
    /// Whether the packets written next are followed at once by more of the same batch (a
    /// DM's acknowledgement, then the sender's own copy): an outlet that can, holds them for
    /// one write to the network, which the batch's last packet makes. Nothing by default.
    fn more_follows(&self, _more: bool) {}
    /// The batch is over: what the outlet still holds of it is sent (see
    /// [`more_follows`](Outlet::more_follows)). Nothing to do by default.
    fn end_batch(&self) {}
    /// Closes the underlying connection without a DISCONNECT (the client reconnects).
    fn close_transport(&self);
    /// The same, `delay` from now (a drain's `delay_ms`).
    fn close_transport_after(&self, delay: Duration);
}

struct State {
    /// The socket's slots, and its offset's text for the next `message` event.
    slots: Slots,
    /// `delay_ms` of a `reconnect` frame: the transport closes that much later (a `u32` of
    /// milliseconds, 49 days, beside the flag below: every socket's wire holds it).
    reconnect: Option<u32>,
    /// The end was handled (the record ended, the outlet told).
    ended: bool,
}

/// The writing half of one Socket.IO socket's session, and its input (the reading half's
/// queue): one allocation per socket holds both, and the outlet.
pub struct SioWire<O: Outlet> {
    outlet: O,
    state: Mutex<State>,
    records: Arc<Records>,
    /// The record's private id, then the user's id: one allocation (see [`SioWire::pid`]).
    ids: Box<str>,
    /// Where the user's id starts in `ids`.
    pid_len: usize,
    /// The session's owner token for `pid`'s record.
    owner: u64,
    /// The session's input (read by [`super::inbox::SioTransport`]); the heartbeat's proof of
    /// life goes there too (see the module comment).
    inbox: Inbox,
}

impl<O: Outlet> SioWire<O> {
    /// A wire writing to `outlet`, keeping `slots` for `pid`'s record (held by `owner`), with an
    /// input of at most `inbound` entries.
    pub fn new(
        outlet: O,
        slots: Slots,
        records: Arc<Records>,
        pid: String,
        owner: u64,
        user_id: String,
        inbound: usize,
    ) -> SioWire<O> {
        SioWire {
            outlet,
            state: Mutex::new(State {
                slots,
                reconnect: None,
                ended: false,
            }),
            records,
            pid_len: pid.len(),
            ids: (pid + &user_id).into(),
            owner,
            inbox: Inbox::new(inbound),
        }
    }

    /// The private id of the socket's recovery record.
    fn pid(&self) -> &str {
        &self.ids[..self.pid_len]
    }

    /// The socket's user.
    fn user_id(&self) -> &str {
        &self.ids[self.pid_len..]
    }

    /// The socket's input.
    pub fn inbox(&self) -> &Inbox {
        &self.inbox
    }

    /// The socket it writes to.
    pub fn outlet(&self) -> &O {
        &self.outlet
    }

    fn record(&self, slots: &Slots) -> Record {
        Record {
            user_id: self.user_id().to_string(),
            slots: slots.slots().to_vec(),
            full: slots.is_full(),
        }
    }

    /// Writes one native frame (the outlet had room for it).
    fn write_one(&self, frame: &Bytes, st: &mut State) -> io::Result<()> {
        // The fan-out's frame, read once for every socket on this thread.
        let sent = with_message(frame, |conv, seq, object| {
            st.slots.received(conv, seq);
            self.outlet.emit_message(object, st.slots.offset_json())
        });
        if let Some(sent) = sent {
            return sent;
        }
        match outgoing(frame) {
            // A message frame whose object could not be read: nothing to send.
            Outgoing::Message { .. } => {}
            Outgoing::Ack(id, arg) => self.ack(id, arg)?,
            Outgoing::AckObject { id, fields } => {
                if let Some(args) = ack_object_args(fields) {
                    self.outlet.ack(id, &args)?;
                }
            }
            Outgoing::Subscribed {
                conv,
                start,
                epoch,
                moved,
                ack,
            } => {
                if let Some(conv) = switchboard_proto::Conv::parse(&conv)
                    && st.slots.subscribed(&conv, start, &epoch, moved)
                {
                    self.records
                        .update(self.pid(), self.owner, &self.record(&st.slots));
                }
                if let Some((id, arg)) = ack {
                    self.ack(id, arg)?;
                }
            }
            Outgoing::Unsubscribed { conv, ack, reason } => {
                if let Some(c) = switchboard_proto::Conv::parse(&conv)
                    && st.slots.unsubscribed(&c)
                {
                    self.records
                        .update(self.pid(), self.owner, &self.record(&st.slots));
                }
                match ack {
                    Some((id, arg)) => self.ack(id, arg)?,
                    None => {
                        let args = json!([{"conv": conv, "reason": reason}]);
                        self.outlet
                            .emit("switchboard:unsubscribed", args.to_string())?;
                    }
                }
            }
            Outgoing::Reconnect(arg, delay) => {
                st.reconnect = Some(u32::try_from(delay).unwrap_or(u32::MAX));
                let args = Value::Array(vec![arg]);
                self.outlet
                    .emit("switchboard:reconnect", args.to_string())?;
            }
            Outgoing::Disconnect(reason) => self.end(st, Some(reason)),
            Outgoing::Nothing => {}
        }
        Ok(())
    }

    /// Acknowledges `id` with the one argument `arg`.
    fn ack(&self, id: u64, arg: Value) -> io::Result<()> {
        self.outlet.ack(id, &Value::Array(vec![arg]).to_string())
    }

    /// The client disconnected on purpose (a DISCONNECT of its own): nothing to recover.
    pub fn client_left(&self) {
        let mut st = self.state.lock();
        if !st.ended {
            st.ended = true;
            self.records.end(self.pid(), self.owner, None);
        }
    }

    /// The socket ended before its session started (a close racing the CONNECT's answer): the
    /// record ends as a dropped connection's does. Without this, where records outlive the
    /// process, the node would count the session as running and renew its record forever.
    pub fn ended_unstarted(&self) {
        let mut st = self.state.lock();
        if !st.ended {
            st.ended = true;
            let record = self.record(&st.slots);
            self.records.end(self.pid(), self.owner, Some(&record));
        }
    }

    /// The session ends, for `reason` (a `disconnect` frame) or because it stopped.
    fn end(&self, st: &mut State, reason: Option<String>) {
        if st.ended {
            return;
        }
        st.ended = true;
        let record = self.record(&st.slots);
        if let Some(delay) = st.reconnect {
            // Drain: the client reconnects (elsewhere) and recovers.
            self.records.end(self.pid(), self.owner, Some(&record));
            self.outlet
                .close_transport_after(Duration::from_millis(delay.into()));
            return;
        }
        match reason {
            Some(reason) => {
                // Logout, kick and expiry end access: nothing to recover. Other ends
                // (slow_consumer, protocol_error) may be recovered by `socket.connect()`.
                let recoverable =
                    !matches!(reason.as_str(), "logged_out" | "kicked" | "auth_expired");
                self.records
                    .end(self.pid(), self.owner, recoverable.then_some(&record));
                let args = json!([{"reason": reason}]);
                let _ = self.outlet.emit("switchboard:disconnect", args.to_string());
                self.outlet.disconnect();
            }
            None => {
                self.records.end(self.pid(), self.owner, Some(&record));
                self.outlet.close_transport();
            }
        }
    }
}

impl<O: Outlet> AsRef<Inbox> for SioWire<O> {
    fn as_ref(&self) -> &Inbox {
        &self.inbox
    }
}

impl<O: Outlet> Wire for SioWire<O> {
    /// Writes frames through the outlet. A frame whose bytes the outlet had to keep (the
    /// socket took only part of them) is reported as partly written, `offset` being the
    /// outlet's progress plus one: the session keeps it and offers it again once the socket
    /// has room, and it counts as written once the outlet has nothing kept. It is translated
    /// once: its bytes are the outlet's by then.
    fn try_write(
        &self,
        frames: &mut dyn Iterator<Item = &Out>,
        offset: usize,
    ) -> io::Result<Progress> {
        let mut p = Progress {
            frames: 0,
            offset: 0,
            blocked: false,
        };
        let mut st = self.state.lock();
        if let Some(progress) = self.outlet.flush() {
            // The first frame is the one in flight (or packets written beside the session
            // are): nothing more goes out behind them yet.
            p.offset = if offset > 0 { progress + 1 } else { 0 };
            p.blocked = true;
            return Ok(p);
        }
        if offset > 0 && frames.next().is_some() {
            // The frame in flight is written now.
            p.frames = 1;
        }
        // Several frames (a DM's answer and the sender's own copy) leave in one segment: each
        // packet but the last says more follows, and the guard sends what waits however this
        // ends (a frame that makes no packet, a full socket, an error).
        let _push = PushAtEnd(&self.outlet);
        let mut frames = frames.peekable();
        while let Some(frame) = frames.next() {
            self.outlet.more_follows(frames.peek().is_some());
            match frame {
                Out::Text(bytes) => self.write_one(bytes, &mut st)?,
                // Where Engine.IO checks the client's liveness itself, the session's heartbeat
                // is answered here (a full queue means the session is past its own bound
                // anyway).
                Out::Ping => {
                    if !self.outlet.ping()? {
                        self.inbox.alive();
                    }
                }
                Out::Pong(payload) => self.outlet.pong(payload)?,
                Out::Close(_) => {}
            }
            if let Some(progress) = self.outlet.flush() {
                p.offset = progress + 1;
                p.blocked = true;
                return Ok(p);
            }
            p.frames += 1;
        }
        Ok(p)
    }

    fn poll_writable(&self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        self.outlet.poll_room(cx).map(Ok)
    }

    fn shutdown(&self) {
        let mut st = self.state.lock();
        self.end(&mut st, None);
        self.outlet.finish();
    }
}

/// Ends an outlet's batch of writes however the batch ends.
struct PushAtEnd<'a, O: Outlet>(&'a O);

impl<O: Outlet> Drop for PushAtEnd<'_, O> {
    fn drop(&mut self) {
        self.0.end_batch();
    }
}
