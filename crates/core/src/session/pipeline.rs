//! Publishes in flight on one connection. A client may send its next `publish` before the
//! last one is answered: the session checks it and queues its append at once (so the writer
//! can commit several of them together), and answers them in the order they were sent, each
//! once its message is stored. The order of seqs is the order of sending, because the broker
//! queues appends in call order ([`crate::backend::Broker::queues_in_order`]); a broker that
//! does not gets one publish at a time.
//!
//! Three rules keep the answers where a client expects them:
//! - answers of publishes come back in the order the publishes were sent, failures included;
//! - any other request waits until every publish before it is answered (replies stay in
//!   request order);
//! - a message of a conversation the connection has a publish in flight to is written only
//!   after that publish's answer: while publishes are in flight the connection is held (the
//!   fan-out hands everything to the session, see [`crate::conn`]), and the session settles
//!   the publishes to that conversation first. So a sender sees `published` before its own
//!   copy of the message.

use super::output::SESSION_HIGH_WATER;
use super::{End, Session};
use crate::conn::{Held, How};
use crate::error::{Error, Result};
use crate::node::{PendingPublish, Published};
use crate::transport::{Out, Transport};
use std::collections::VecDeque;
use std::future::Future;
use switchboard_proto::frame::RequestId;
use switchboard_proto::{Conv, ServerFrame};

/// Publishes one connection may have in flight (when the broker queues in order).
pub const PIPELINE_DEPTH: usize = 64;

/// One publish in flight.
struct InFlight {
    id: Option<RequestId>,
    /// The conversations it appends to: the target, and the sender's own stream for a DM.
    convs: [Option<Conv>; 2],
    answer: PendingPublish,
}

/// The publishes in flight, in the order they were sent.
pub(super) struct Pipeline {
    queue: VecDeque<InFlight>,
    /// Deliveries wait for the session while this lives (dropped with the last answer).
    _held: Held,
}

impl Pipeline {
    fn targets(&self, conv: &Conv) -> bool {
        self.queue
            .iter()
            .any(|f| f.convs.iter().flatten().any(|c| c == conv))
    }
}

/// The next answer, once the oldest publish is stored. Cancel-safe: the publish stays queued
/// until its answer is taken.
pub(super) fn next_answer(
    pipeline: &mut Option<Box<Pipeline>>,
) -> impl Future<Output = (Option<RequestId>, Result<Box<Published>>)> + '_ {
    std::future::poll_fn(move |cx| {
        let Some(p) = pipeline.as_mut() else {
            return std::task::Poll::Pending;
        };
        let Some(front) = p.queue.front_mut() else {
            return std::task::Poll::Pending;
        };
        // Boxed: the answer passes through the session loop's future, which every connection
        // holds (a bare `Published` would grow it by its size).
        let r = std::task::ready!(front.answer.as_mut().poll(cx)).map(Box::new);
        let id = p.queue.pop_front().and_then(|f| f.id);
        std::task::Poll::Ready((id, r))
    })
}

impl<T: Transport> Session<T> {
    /// Whether the connection may not send another publish before an answer (the loop stops
    /// reading until one comes).
    pub(super) fn pipeline_full(&self) -> bool {
        let depth = if self.node.backend.broker.queues_in_order() {
            PIPELINE_DEPTH
        } else {
            1
        };
        self.pipeline
            .as_ref()
            .is_some_and(|p| p.queue.len() >= depth)
    }

    /// Holds deliveries for the session from now until the last publish in flight is answered
    /// (call before queuing an append, so its copy cannot slip past).
    pub(super) fn hold_for_publish(&mut self) {
        if self.pipeline.is_none() {
            self.pipeline = Some(Box::new(Pipeline {
                queue: VecDeque::new(),
                _held: self.conn.hold(),
            }));
        }
    }

    /// Puts a publish in line (checked and queued, or already failed). The caller holds the
    /// connection before it queues the append; holding again here is a no-op that makes sure
    /// the line exists.
    pub(super) fn push_publish(
        &mut self,
        id: Option<RequestId>,
        convs: [Option<Conv>; 2],
        answer: std::result::Result<PendingPublish, Error>,
    ) {
        self.hold_for_publish();
        let answer = answer.unwrap_or_else(|e| Box::pin(async move { Err(e) }));
        if let Some(p) = self.pipeline.as_mut() {
            p.queue.push_back(InFlight { id, convs, answer });
        }
    }

    /// Writes the answer of the oldest publish; the hold ends with the last one.
    pub(super) async fn on_answer(
        &mut self,
        answer: (Option<RequestId>, Result<Box<Published>>),
    ) -> std::result::Result<(), End> {
        self.write_answer(answer, How::Now).await
    }

    /// Writes the answer of the oldest publish, now or (`How::Later`) for the caller's flush.
    async fn write_answer(
        &mut self,
        (id, r): (Option<RequestId>, Result<Box<Published>>),
        how: How,
    ) -> std::result::Result<(), End> {
        // The answer is written while the connection is still held: let go first, and the
        // fan-out could write the sender's own copy in between.
        let (frame, stored) = match r {
            Ok(published) => {
                let Published { receipt: r, stored } = *published;
                (
                    ServerFrame::Published {
                        id,
                        conv: r.conv,
                        seq: r.seq,
                        message_id: r.message_id,
                        ts: r.ts,
                    },
                    stored,
                )
            }
            Err(e) => {
                self.node.metrics.error(e.code);
                (ServerFrame::error(id, e.code, e.message), Vec::new())
            }
        };
        let written = self
            .conn
            .write_as(Out::Text(frame.encode()), How::Later)
            .and_then(|()| self.write_own_copies(&stored));
        if self.pipeline.as_ref().is_some_and(|p| p.queue.is_empty()) {
            self.pipeline = None;
        }
        written?;
        if how == How::Now {
            self.conn.flush()?;
        }
        self.make_room(SESSION_HIGH_WATER).await
    }

    /// Queues this connection's own copies of what its publish stored (its room message, its
    /// DM's copy in its own stream) behind the answer, each only if it is the next seq there:
    /// the answer and the copy then leave in one write, instead of the fan-out writing the copy
    /// in a second one. Anything else (not subscribed, a gap, already sent) is left to the
    /// fan-out, which skips what was written here. On the embedded backend the copy is the very
    /// message the bus delivers (the same `Arc`), so whichever of the two encodes it first, the
    /// other shares the bytes; the Redis backend delivers its own copy, read from pub/sub.
    fn write_own_copies(
        &self,
        stored: &[std::sync::Arc<switchboard_proto::Message>],
    ) -> std::result::Result<(), crate::conn::Broken> {
        for m in stored {
            if m.seq > 0 && self.conn.last_seq(&m.conv) == Some(m.seq - 1) {
                self.conn
                    .write_message(&m.conv, m.seq, &m.encode_frame(), false, How::Later)?;
            }
        }
        Ok(())
    }

    /// Answers every publish in flight, in order (before any other request is taken).
    pub(super) async fn settle_publishes(&mut self) -> std::result::Result<(), End> {
        while self.pipeline.is_some() {
            let answer = next_answer(&mut self.pipeline).await;
            self.on_answer(answer).await?;
        }
        Ok(())
    }

    /// Answers the publishes in flight up to the last one to `conv` (before a message of
    /// `conv` is written). The answers are queued, not written: the caller writes the message
    /// behind them and flushes, so a sender's answer and its own copy of the message leave in
    /// one system call.
    pub(super) async fn settle_publishes_to(
        &mut self,
        conv: &Conv,
    ) -> std::result::Result<(), End> {
        while self.pipeline.as_ref().is_some_and(|p| p.targets(conv)) {
            let answer = next_answer(&mut self.pipeline).await;
            self.write_answer(answer, How::Later).await?;
        }
        Ok(())
    }
}
