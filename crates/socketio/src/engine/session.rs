//! What both transports do with a session: handle one client packet, and run the heartbeat
//! (send the ping when it is due, close on a late pong or a passed connect deadline).

use std::sync::Arc;

use bytes::Bytes;
use tokio::time::Instant;

use super::conn::{Frame, Shared, wake};
use super::handler::Message;
use super::packet::Packet;
use crate::DisconnectReason;

/// Handles one packet from the client. An `Err` is the reason to close the session with.
pub(crate) async fn on_packet(
    shared: &Arc<Shared>,
    packet: Packet,
) -> Result<(), DisconnectReason> {
    match packet {
        Packet::Close => Err(DisconnectReason::ClientClose),
        Packet::Ping(data) => {
            // Pings come from the server in protocol 4; answer a client's anyway, as Engine.IO 3 did.
            let _ = shared.push(Frame::Text(Bytes::from(format!("3{data}"))));
            Ok(())
        }
        Packet::Pong(_) => {
            let mut st = shared.state.lock();
            if st.pong_deadline.take().is_some() {
                st.next_ping = Instant::now() + shared.engine.config.ping_interval;
            }
            drop(st);
            // Only the polling driver needs waking: on a WebSocket the pong is handled in the
            // session's own task, which looks at the heartbeat again right after (waking it
            // too would cost it one more turn per pong).
            shared.wake_driver();
            Ok(())
        }
        Packet::Message(text) => dispatch(shared, Message::Text(text)).await,
        Packet::Binary(data) => dispatch(shared, Message::Binary(data)).await,
        Packet::Noop => Ok(()),
        Packet::Open(_) | Packet::Upgrade => Err(DisconnectReason::ParseError),
    }
}

async fn dispatch(shared: &Arc<Shared>, message: Message) -> Result<(), DisconnectReason> {
    let mut handler = shared.handler.lock().await;
    match handler.as_mut() {
        Some(handler) if shared.closed().is_none() => handler.message(message).await,
        _ => Ok(()),
    }
}

/// Runs the heartbeat at `now`: queues the ping when it is due, closes the session when the
/// pong or the application's deadline is late. Returns when to look again, or `None` once the
/// session is closed.
pub(crate) fn heartbeat(shared: &Shared, now: Instant) -> Option<Instant> {
    let config = &shared.engine.config;
    let mut st = shared.state.lock();
    if st.closed.is_some() {
        return None;
    }
    let late = match (st.deadline, st.pong_deadline) {
        (Some(d), _) if now >= d => Some(DisconnectReason::ConnectTimeout),
        (_, Some(p)) if now >= p => Some(DisconnectReason::PingTimeout),
        _ => None,
    };
    if let Some(reason) = late {
        drop(st);
        shared.close(reason);
        return None;
    }
    let mut writer = None;
    if st.pong_deadline.is_none() && now >= st.next_ping {
        if st.queue.len() >= config.max_queued_packets || st.queued_bytes >= config.max_queued_bytes
        {
            drop(st);
            shared.close(DisconnectReason::QueueFull);
            return None;
        }
        st.queue.push_back(Frame::Text(Bytes::from_static(b"2")));
        st.queued_bytes += 1;
        // From when the ping was due, not from when this timer woke: a late wake-up does not
        // lengthen the client's time.
        st.pong_deadline = Some(st.next_ping + config.ping_timeout);
        writer = st.writer_waker();
    }
    let beat = st.pong_deadline.unwrap_or(st.next_ping);
    let next = st.deadline.map_or(beat, |d| d.min(beat));
    drop(st);
    wake(writer);
    Some(next)
}
