//! Publishes in flight on one connection. A client may send its next `publish` before the
//! last one is answered: the session checks it and queues its append at once (so the writer
//! can commit several of them together), and answers them in the order they were sent, each
//! once its message is stored. The order of seqs is the order of sending, because the broker
//! queues appends in call order ([`crate::backend::Broker::queues_in_order`]); a broker that
//! does not gets one publish at a time.
//!
//! The answers are written from wherever the commit completes
//! ([`crate::backend::Broker::append_then`]: the embedded backend's writer thread, before it
//! publishes the stored messages), as the fan-out writes deliveries: no task is woken for an
//! answer, and a DM's answer and the sender's own copy leave in one write. The publishes in
//! flight are therefore in a [`Line`] shared with those completions, and the session writes an
//! answer itself only when the completion could not ([`Conn::answer`]: unsent bytes or
//! handed-over work wait before it, or an earlier answer is not in yet).
//!
//! Three rules keep the answers where a client expects them:
//! - answers of publishes come back in the order the publishes were sent, failures included
//!   (whoever writes one writes it under the line's lock, the oldest first);
//! - any other request waits until every publish before it is answered (replies stay in
//!   request order), and so does a frame refused before it is read (malformed, too large, over
//!   the frame rate), publishes included;
//! - a message of a conversation the connection has a publish in flight to is written only
//!   after that publish's answer: while publishes are in flight the connection is held (the
//!   fan-out hands everything to the session, see [`crate::conn`]), and the session settles
//!   the publishes to that conversation first. So a sender sees `published` before its own
//!   copy of the message.
//!
//! [`Conn::answer`]: crate::conn::Conn::answer

use super::line::{Line, Until, poll_progress, progress};
use super::output::SESSION_HIGH_WATER;
use super::{End, Session};
use crate::conn::How;
use crate::transport::Transport;
use std::sync::Arc;
use std::task::Poll;
use switchboard_proto::Conv;
use switchboard_proto::frame::RequestId;

pub(super) use super::line::completion;

/// Publishes one connection may have in flight (when the broker queues in order).
pub const PIPELINE_DEPTH: usize = 64;

/// The publishes in flight, in the order they were sent.
pub(super) struct Pipeline {
    line: Arc<Line>,
}

impl Pipeline {
    /// Whether every publish in it was answered.
    pub(super) fn is_empty(&self) -> bool {
        self.line.is_empty()
    }
}

/// Ready when the session has answers of its connection's publishes to write (never, with none
/// in flight), or, when the connection stopped reading at `full` publishes in flight (0: it did
/// not), when there is room for another. (A bare `poll_fn`: it is part of every connection's
/// future.)
pub(super) fn next_answer(
    pipeline: &Option<Box<Pipeline>>,
    full: usize,
) -> impl std::future::Future<Output = ()> + '_ {
    std::future::poll_fn(move |cx| match pipeline {
        Some(p) => {
            let until = if full == 0 {
                Until::Left
            } else {
                Until::Room(full)
            };
            poll_progress(&p.line, &until, cx)
        }
        None => Poll::Pending,
    })
}

impl<T: Transport> Session<T> {
    /// Whether the connection may not send another publish before an answer (the loop stops
    /// reading until one comes): the depth it reached, or 0.
    pub(super) fn pipeline_full(&self) -> usize {
        let depth = if self.subs.node.backend.broker.queues_in_order() {
            PIPELINE_DEPTH
        } else {
            1
        };
        if self
            .pipeline
            .as_ref()
            .is_some_and(|p| p.line.len() >= depth)
        {
            depth
        } else {
            0
        }
    }

    /// Puts a publish in line, holding deliveries for the session from now until its answer
    /// (call before queuing its append, so its copy cannot slip past); returns the completion
    /// to hand to the append.
    pub(super) fn line_up(
        &mut self,
        id: Option<RequestId>,
        convs: [Option<Conv>; 2],
    ) -> (Arc<Line>, u64) {
        let line = match &self.pipeline {
            Some(p) => p.line.clone(),
            None => {
                let line = Line::new(self.subs.conn.clone(), self.subs.node.metrics.clone());
                self.pipeline = Some(Box::new(Pipeline { line: line.clone() }));
                line
            }
        };
        let n = line.push(id, convs);
        (line, n)
    }

    /// Writes the answers the completions left, in order; the line goes once empty.
    async fn write_answers(&mut self, how: How) -> std::result::Result<(), End> {
        let Some(p) = self.pipeline.as_ref() else {
            return Ok(());
        };
        let line = p.line.clone();
        line.write_ready()?;
        if line.is_empty() {
            self.pipeline = None;
        }
        if how == How::Now {
            self.subs.conn.flush()?;
        }
        self.make_room(SESSION_HIGH_WATER).await
    }

    /// The oldest answers are in: writes them.
    pub(super) async fn on_answer(&mut self) -> std::result::Result<(), End> {
        self.write_answers(How::Now).await
    }

    /// Answers every publish in flight, in order (before any other request is taken).
    pub(super) async fn settle_publishes(&mut self) -> std::result::Result<(), End> {
        self.settle(Until::Empty, How::Now).await
    }

    /// Answers the publishes in flight up to the last one to `conv` (before a message of
    /// `conv` is written). The answers are queued, not written: the caller writes the message
    /// behind them and flushes, so a sender's answer and its own copy of the message leave in
    /// one system call.
    pub(super) async fn settle_publishes_to(
        &mut self,
        conv: &Conv,
    ) -> std::result::Result<(), End> {
        self.settle(Until::Clear(conv), How::Later).await
    }

    /// Writes answers as they come until `until` holds.
    async fn settle(&mut self, until: Until<'_>, how: How) -> std::result::Result<(), End> {
        loop {
            self.write_answers(how).await?;
            let Some(p) = self.pipeline.as_ref() else {
                return Ok(());
            };
            let line = p.line.clone();
            if line.reached(&until) {
                return Ok(());
            }
            progress(&line, until).await;
        }
    }
}
