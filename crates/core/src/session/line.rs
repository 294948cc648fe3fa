//! The publishes in flight of one connection as their completions see them (a [`Line`]): each
//! completion puts its outcome in, and writes the ready answers from where it runs when every
//! publish in line has its outcome ([`crate::conn::Conn::answer`]); otherwise, or when
//! something waits before them, the session writes them (see [`super::pipeline`]).

use crate::conn::{Conn, Held, How};
use crate::error::{Error, Result};
use crate::metrics::Metrics;
use crate::node::Published;
use bytes::Bytes;
use parking_lot::Mutex;
use std::collections::VecDeque;
use std::sync::Arc;
use std::task::{Poll, Waker};
use switchboard_proto::frame::RequestId;
use switchboard_proto::{Conv, Message, ServerFrame};

/// One publish in flight.
struct InFlight {
    /// Its place in the line (completions find their publish by it).
    n: u64,
    id: Option<RequestId>,
    /// The conversations it appends to: the target, and the sender's own stream for a DM.
    convs: [Option<Conv>; 2],
    /// Its outcome, once known and not yet written.
    outcome: Option<Result<Box<Published>>>,
}

/// The publishes in flight of one connection, shared with their completions.
pub(super) struct Line {
    state: Mutex<LineState>,
    conn: Arc<Conn>,
    /// Where refused publishes are counted.
    metrics: Arc<Metrics>,
}

impl LineState {
    fn reached(&self, until: &Until<'_>) -> bool {
        match *until {
            Until::Left => false,
            Until::Empty => self.queue.is_empty(),
            Until::Clear(conv) => !self
                .queue
                .iter()
                .any(|f| f.convs.iter().flatten().any(|c| c == conv)),
            Until::Room(depth) => self.queue.len() < depth,
        }
    }
}

struct LineState {
    /// In the order sent.
    queue: VecDeque<InFlight>,
    /// The next publish's place.
    next: u64,
    /// Deliveries wait for the session while publishes are in flight (dropped with the last
    /// answer, by whoever writes it).
    held: Option<Held>,
    /// The session's loop, while it waits for an answer it must write itself (woken only
    /// then: an answer written where the commit completed wakes nobody).
    waker: Option<Waker>,
    /// The session, while it waits for publishes to be answered before something else
    /// (woken by every answer, wherever written).
    settling: Option<Waker>,
}

impl Line {
    pub(super) fn new(conn: Arc<Conn>, metrics: Arc<Metrics>) -> Arc<Line> {
        Arc::new(Line {
            state: Mutex::new(LineState {
                queue: VecDeque::new(),
                next: 0,
                held: None,
                waker: None,
                settling: None,
            }),
            conn,
            metrics,
        })
    }

    /// Writes the ready answers at the front for the session's flush, in order.
    pub(super) fn write_ready(&self) -> std::result::Result<(), crate::conn::Broken> {
        let mut st = self.state.lock();
        self.drain(&mut st, How::Later)
    }

    /// Puts a publish in line (holding deliveries from now on); returns its place.
    pub(super) fn push(&self, id: Option<RequestId>, convs: [Option<Conv>; 2]) -> u64 {
        let mut st = self.state.lock();
        if st.held.is_none() {
            st.held = Some(self.conn.hold());
        }
        let n = st.next;
        st.next += 1;
        st.queue.push_back(InFlight {
            n,
            id,
            convs,
            outcome: None,
        });
        n
    }

    pub(super) fn len(&self) -> usize {
        self.state.lock().queue.len()
    }

    pub(super) fn is_empty(&self) -> bool {
        self.state.lock().queue.is_empty()
    }

    /// Whether `until` holds (its condition besides an answer left to the session).
    pub(super) fn reached(&self, until: &Until<'_>) -> bool {
        self.state.lock().reached(until)
    }

    /// The outcome of publish `n` (from its completion, wherever that runs): written now if it
    /// can be, with the ready ones behind it; the session is woken for what is left.
    fn complete(&self, n: u64, outcome: Result<Published>) {
        let mut st = self.state.lock();
        let Some(f) = st.queue.iter_mut().find(|f| f.n == n) else {
            return;
        };
        f.outcome = Some(outcome.map(Box::new));
        // Written from here only once every publish in line has its outcome (then all in one
        // write); before that the session writes what is ready, as one batch too.
        let written = if st.queue.iter().all(|f| f.outcome.is_some()) {
            self.drain(&mut st, How::Now)
        } else {
            Ok(())
        };
        let left = st.queue.front().is_some_and(|f| f.outcome.is_some());
        let waker = if left || written.is_err() {
            st.waker.take()
        } else {
            None
        };
        let settling = st.settling.take();
        drop(st);
        for w in [waker, settling].into_iter().flatten() {
            w.wake();
        }
    }

    /// Writes the ready answers at the front, in order, until one is not ready; with
    /// `How::Now` all of them in one write or none. Lets deliveries go once the line is empty.
    fn drain(&self, st: &mut LineState, how: How) -> std::result::Result<(), crate::conn::Broken> {
        let ready = st.queue.iter().take_while(|f| f.outcome.is_some()).count();
        if ready > 0 {
            let answers: Vec<(Bytes, Vec<Arc<Message>>)> = st
                .queue
                .iter()
                .take(ready)
                .map(|f| {
                    let outcome = f.outcome.as_ref().map(|o| o.as_deref());
                    answer(f.id.clone(), outcome.expect("ready"))
                })
                .collect();
            if !self.conn.answer(&answers, how)? {
                return Ok(());
            }
            for f in st.queue.drain(..ready) {
                if let Some(Err(e)) = &f.outcome {
                    self.metrics.error(e.code);
                }
            }
        }
        if st.queue.is_empty() {
            st.held = None;
        }
        Ok(())
    }
}

/// The answer frame of an outcome, and the messages it stored.
fn answer(
    id: Option<RequestId>,
    outcome: std::result::Result<&Published, &Error>,
) -> (Bytes, Vec<Arc<Message>>) {
    match outcome {
        Ok(p) => {
            let r = &p.receipt;
            let frame = ServerFrame::Published {
                id,
                conv: r.conv.clone(),
                seq: r.seq,
                message_id: r.message_id.clone(),
                ts: r.ts,
            };
            (frame.encode(), p.stored.clone())
        }
        Err(e) => (
            ServerFrame::error(id, e.code, e.message.clone()).encode(),
            Vec::new(),
        ),
    }
}

/// What the session waits for in its line.
#[derive(Clone, Copy)]
pub(super) enum Until<'a> {
    /// The oldest publish's outcome is in, left to the session by its completion.
    Left,
    /// That, or the line is empty.
    Empty,
    /// That, or no publish in line appends to this conversation.
    Clear(&'a Conv),
    /// That, or fewer than this many are in line (a connection that stopped reading at the
    /// pipeline's depth reads on).
    Room(usize),
}

/// Ready when `until` holds.
pub(super) fn progress<'a>(
    line: &'a Line,
    until: Until<'a>,
) -> impl std::future::Future<Output = ()> + 'a {
    std::future::poll_fn(move |cx| poll_progress(line, &until, cx))
}

pub(super) fn poll_progress(
    line: &Line,
    until: &Until<'_>,
    cx: &mut std::task::Context<'_>,
) -> Poll<()> {
    let mut st = line.state.lock();
    let left = st.queue.front().is_some_and(|f| f.outcome.is_some());
    if left || st.reached(until) {
        return Poll::Ready(());
    }
    let slot = match until {
        Until::Left => &mut st.waker,
        Until::Empty | Until::Clear(_) | Until::Room(_) => &mut st.settling,
    };
    if !slot.as_ref().is_some_and(|w| w.will_wake(cx.waker())) {
        *slot = Some(cx.waker().clone());
    }
    Poll::Pending
}

/// The completion of publish `n` of `line`: its outcome goes in, and is written from here if
/// it can be. Dropped uncalled (a backend that lost the append: a writer that stopped, a job
/// queued behind the close), it puts an error in, so the line cannot wait for it forever.
pub(super) fn completion(line: Arc<Line>, n: u64) -> Box<dyn FnOnce(Result<Published>) + Send> {
    let mut place = Place(Some((line, n)));
    Box::new(move |outcome| {
        if let Some((line, n)) = place.0.take() {
            line.complete(n, outcome);
        }
    })
}

/// A publish's place in line, until its completion puts the outcome in.
struct Place(Option<(Arc<Line>, u64)>);

impl Drop for Place {
    fn drop(&mut self) {
        if let Some((line, n)) = self.0.take() {
            let lost = crate::backend::BackendError::Unavailable(
                "the backend dropped an append without answering it".into(),
            );
            line.complete(n, Err(lost.into()));
        }
    }
}

#[cfg(test)]
#[path = "line_tests.rs"]
mod tests;
