//! The session's own writes: replies and errors, waiting for room, and the write stall. The
//! fan-out's writes are bounded by the connection (`--outbound-queue`, `--outbound-queue-bytes`);
//! the session's are bounded here: past [`SESSION_HIGH_WATER`] unsent frames, or a quarter of
//! `--outbound-queue-bytes`, it waits for the client to read before it takes another request.

use super::{End, Session};
use crate::error::Error;
use crate::transport::{Out, Transport};
use std::time::Duration;
use switchboard_proto::frame::RequestId;
use switchboard_proto::{DisconnectReason, ServerFrame};
use tokio::time::Instant;
use tokio::time::timeout;

/// Unsent frames past which the session's own writes wait for the client to read.
pub(super) const SESSION_HIGH_WATER: usize = 64;
/// While waiting for room, how often the session looks whether it was asked to end.
const ROOM_CHECK: Duration = Duration::from_millis(100);

impl<T: Transport> Session<T> {
    /// Waits while more than `limit` frames are unsent; a client that takes nothing for the
    /// write timeout is a slow consumer. Gives up at once when the connection is asked to end
    /// (it is looked at at least every [`ROOM_CHECK`]).
    pub(super) async fn make_room(&mut self, limit: usize) -> Result<(), End> {
        let bytes = self.high_water_bytes();
        while self.subs.conn.backlog_over(limit, bytes) {
            if let Some(reason) = self.subs.conn.reason() {
                return Err(End::Disconnect(reason));
            }
            if self.subs.conn.flush()? || !self.subs.conn.backlog_over(limit, bytes) {
                return Ok(());
            }
            self.check_stall(Instant::now())?;
            let _ = timeout(ROOM_CHECK, self.subs.conn.writable()).await;
        }
        Ok(())
    }

    /// Unsent bytes past which the session's own writes wait.
    pub(super) fn high_water_bytes(&self) -> usize {
        self.subs.node.limits.outbound_queue_bytes / 4
    }

    /// A backlog that has not moved for the write timeout is a slow consumer.
    pub(super) fn check_stall(&self, now: Instant) -> Result<(), End> {
        match self.subs.conn.backlog_moved_at() {
            Some(moved) if now >= moved + self.subs.node.limits.write_timeout => {
                Err(End::Disconnect(DisconnectReason::SlowConsumer))
            }
            _ => Ok(()),
        }
    }

    /// Writes out everything unsent (the last frames; the caller bounds the time).
    pub(super) async fn drain(&mut self) -> Result<(), End> {
        while !self.subs.conn.flush()? {
            self.subs.conn.writable().await;
        }
        Ok(())
    }

    /// Writes a reply, then waits for room if the client is behind.
    pub(super) async fn reply(&mut self, frame: ServerFrame) -> Result<(), End> {
        self.subs.conn.write(Out::Text(frame.encode()))?;
        self.make_room(SESSION_HIGH_WATER).await
    }

    /// Writes an error reply (counted by code).
    pub(super) async fn reply_error(&mut self, id: Option<RequestId>, e: Error) -> Result<(), End> {
        self.subs.node.metrics.error(e.code);
        self.reply(ServerFrame::error(id, e.code, e.message)).await
    }
}
