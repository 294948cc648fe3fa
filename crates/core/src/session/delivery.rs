//! What the fan-out leaves to the session: messages that are not simply next (a repeat, a gap
//! to fill from history first, one that waited behind other work), revocations, and the
//! history replays that fill gaps and resumes.

use super::output::SESSION_HIGH_WATER;
use super::{End, Session};
use crate::backend::HistoryQuery;
use crate::conn::{How, Outbound, Sent};
use crate::delivery::Delivery;
use crate::node::MAX_HISTORY_LIMIT;
use crate::transport::Transport;
use std::sync::Arc;
use switchboard_proto::{Conv, ServerFrame};

impl<T: Transport> Session<T> {
    /// One thing the fan-out handed over, in the order it was handed over.
    pub(super) async fn on_outbound(&mut self, o: Outbound) -> Result<(), End> {
        match o {
            Outbound::Message(d) => self.deliver(d).await,
            Outbound::Revoke(conv) => {
                if !self.subs.conn.is_subscribed(&conv) {
                    return Ok(());
                }
                self.subs.detach(&conv).await;
                let reason = Some("not_member".to_owned());
                self.reply(ServerFrame::Unsubscribed {
                    id: None,
                    conv,
                    reason,
                })
                .await
            }
        }
    }

    /// A message the fan-out could not simply write: a repeat, a gap to fill from history
    /// first, or one that waited behind other work.
    async fn deliver(&mut self, d: Arc<Delivery>) -> Result<(), End> {
        // The sender's own copy comes after the answer to its publish. Both are queued: the
        // turn's flush (`on_attention`) sends them, and the rest of the turn's, in one write.
        self.settle_publishes_to(&d.conv).await?;
        let (conv, seq) = (&d.conv, d.message.seq);
        if let Sent::Gap(last) =
            self.subs
                .conn
                .write_message(conv, seq, &d.frame, false, How::Later)?
        {
            self.subs.conn.flush()?;
            Box::pin(self.replay(conv, last, Some(seq))).await?;
            self.subs
                .conn
                .write_message(conv, seq, &d.frame, true, How::Later)?;
        }
        if self
            .subs
            .conn
            .backlog_over(SESSION_HIGH_WATER - 1, self.high_water_bytes())
        {
            self.subs.conn.flush()?;
        }
        Ok(())
    }

    /// Sends stored messages of `conv` after `after` (and before `before`), in pages bounded
    /// in messages and bytes, waiting for the client to read whenever a quarter of its
    /// outbound bytes (or [`SESSION_HIGH_WATER`] frames) are unsent.
    pub(super) async fn replay(
        &mut self,
        conv: &Conv,
        after: u64,
        before: Option<u64>,
    ) -> Result<(), End> {
        let mut cursor = after;
        let high_water_bytes = self.high_water_bytes();
        loop {
            let q = HistoryQuery {
                after: Some(cursor),
                before,
                limit: MAX_HISTORY_LIMIT,
            };
            let max_bytes = self.subs.node.limits.history_page_bytes;
            let page = match self.subs.node.read_history(conv, q, max_bytes).await {
                Ok(p) => p,
                Err(e) => {
                    // The client sees the jump in seq and fills it from history itself.
                    tracing::warn!(%conv, error = %e, "replay failed; leaving the gap to the client");
                    return Ok(());
                }
            };
            let (n, more) = (page.messages.len(), page.more);
            for m in page.messages {
                if m.seq <= cursor {
                    continue;
                }
                cursor = m.seq;
                // Queued and written in batches; anything the client already got (live,
                // meanwhile) is skipped. Batches stay small so that a replay does not use up
                // the room live messages may take (`--outbound-queue`). A message read for
                // this replay has no other writer: its frame is not kept with it.
                let frame = m.encode_frame_unkept();
                let sent = self
                    .subs
                    .conn
                    .write_message(conv, m.seq, &frame, true, How::Later)?;
                if sent == Sent::NotSubscribed {
                    return Ok(());
                }
                if self
                    .subs
                    .conn
                    .backlog_over(SESSION_HIGH_WATER - 1, high_water_bytes)
                {
                    self.subs.conn.flush()?;
                    self.make_room(SESSION_HIGH_WATER).await?;
                }
            }
            self.subs.conn.flush()?;
            self.make_room(SESSION_HIGH_WATER).await?;
            if !more && n < MAX_HISTORY_LIMIT as usize {
                return Ok(());
            }
        }
    }
}
