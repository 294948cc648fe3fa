//! The in-process bus: hands committed messages and control events to the sink, on the bus
//! thread or, for a small commit when that thread is idle, on the writer's.
//!
//! The writer thread used to call the sink itself, so a fan-out to 10,000 local subscribers held
//! up the next group commit for the whole fan-out. So the writer queues, and one bus thread
//! delivers, in the order queued. It is a plain thread rather than a tokio task on purpose: waking
//! session tasks from outside the runtime puts them in the shared queue that every worker pulls
//! from, so the fan-out's sends spread over all cores (from a task, they piled onto one worker's
//! local queue: p99 rose from ~140 to ~250-320 ms in the 10,000-subscriber benchmark). Control
//! events take the same queue, so a `Revoke` or a logout is never overtaken by a message
//! committed before it. The queue is bounded: when delivery falls behind, the writer waits.
//!
//! A commit whose messages go to at most [`INLINE_DELIVERIES`] local connections in all, found
//! with nothing queued nor in delivery (the bus idle, so there is nothing to overtake), is
//! delivered by the writer itself, right after the commit. Handing it to the bus cost a thread
//! wake-up per commit (docs/PERFORMANCE.md, "Issue 12, seventh round"). Larger commits still go
//! to the bus, so that the writer commits the next batch while the bus writes (the one-connection
//! room pipeline lost a fifth of its rate when every commit went inline). The measure is
//! connections, not messages: a DM is two messages (the recipient's and the sender's copy) with
//! about one connection each, a room message one with ten or more.
//!
//! The bus thread takes every message that waits (up to [`BUS_BATCH`]) and hands them to the
//! sink together, so that a subscriber gets a conversation's new messages in one write: one
//! connection pipelining into a room of ten made one `sendmsg` per message per member, and
//! the bus thread was most of the node's CPU.

use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use switchboard_core::backend::{BusSink, ControlEvent};
use switchboard_proto::Message;
use tokio::sync::mpsc;

/// Events queued between the writer and the bus thread.
const QUEUE: usize = 1024;

/// The most local connections a commit's messages may go to, in all, for the writer to deliver
/// them itself (when the bus is idle). A DM commit at 5,000 DMs/s holds about four DMs, eight
/// messages to about eight connections; a pipelining connection's commit of ~30 room messages
/// goes to ~300.
const INLINE_DELIVERIES: usize = 32;

/// The most queued messages the bus thread takes at once, to hand to the sink together (so
/// that a subscriber gets a conversation's new messages in one write).
const BUS_BATCH: usize = 256;

/// The name of the bus thread.
const THREAD: &str = "sb-bus";

enum Event {
    Message(Arc<Message>),
    Control(ControlEvent),
}

/// The bus as the backend holds it: a queue to the bus thread, or (if that thread could not
/// start) the sink itself.
///
/// The queue is tokio's bounded channel, used blocking from the two plain threads: its waiters
/// are served in order, so a control event waiting for room is not starved by a writer that keeps
/// the queue full.
pub(crate) struct Relay {
    tx: Option<mpsc::Sender<Event>>,
    sink: Arc<dyn BusSink>,
    /// Events queued and not yet handled by the bus thread (counted before they are queued,
    /// down once handled): zero means nothing could be overtaken.
    pending: Arc<AtomicUsize>,
}

impl Relay {
    /// Starts the bus thread. It runs in the caller's tokio runtime context (if any), so that a
    /// sink may use tokio there, and ends once the relay is dropped.
    pub(crate) fn start(sink: Arc<dyn BusSink>) -> Arc<Relay> {
        let (tx, mut rx) = mpsc::channel(QUEUE);
        let target = sink.clone();
        let pending = Arc::new(AtomicUsize::new(0));
        let handled = pending.clone();
        let runtime = tokio::runtime::Handle::try_current().ok();
        let spawned = std::thread::Builder::new()
            .name(THREAD.into())
            .spawn(move || {
                let _context = runtime.as_ref().map(|r| r.enter());
                serve(&mut rx, target.as_ref(), &handled);
            });
        let tx = match spawned {
            Ok(_) => Some(tx),
            Err(e) => {
                tracing::error!(error = %e, "could not start the bus thread; delivering inline");
                None
            }
        };
        Arc::new(Relay { tx, sink, pending })
    }

    /// Queues a control event behind every message committed so far (from async code). The
    /// queuing runs in a task of its own: a caller that goes away (an HTTP client closing its
    /// connection mid-logout) must not lose the event.
    pub(crate) async fn control(&self, event: ControlEvent) {
        let Some(tx) = self.tx.clone() else {
            return self.sink.control(event);
        };
        let sink = self.sink.clone();
        let pending = self.pending.clone();
        let queued = tokio::spawn(async move {
            pending.fetch_add(1, Ordering::AcqRel);
            if let Err(mpsc::error::SendError(Event::Control(e))) =
                tx.send(Event::Control(event)).await
            {
                // The bus thread is gone (shutdown): deliver here rather than drop it.
                pending.fetch_sub(1, Ordering::AcqRel);
                sink.control(e);
            }
        });
        let _ = queued.await;
    }
}

/// The bus thread: takes the messages that wait (up to [`BUS_BATCH`], never past a control
/// event) and hands them to the sink together, then the control event, in queue order.
fn serve(rx: &mut mpsc::Receiver<Event>, sink: &dyn BusSink, pending: &AtomicUsize) {
    let mut batch = Vec::new();
    while let Some(mut event) = rx.blocking_recv() {
        loop {
            match event {
                Event::Message(m) => batch.push(m),
                Event::Control(e) => {
                    deliver_batch(sink, &mut batch, pending);
                    // A panicking sink must not stop the bus: what is queued behind still goes.
                    if catch_unwind(AssertUnwindSafe(|| sink.control(e))).is_err() {
                        tracing::error!("the bus sink panicked on a control event");
                    }
                    pending.fetch_sub(1, Ordering::AcqRel);
                }
            }
            if batch.len() >= BUS_BATCH {
                break;
            }
            match rx.try_recv() {
                Ok(next) => event = next,
                Err(_) => break,
            }
        }
        deliver_batch(sink, &mut batch, pending);
    }
}

/// Hands the gathered messages to the sink, then counts them as handled (not before: until
/// then a small commit must not overtake them).
fn deliver_batch(sink: &dyn BusSink, batch: &mut Vec<Arc<Message>>, pending: &AtomicUsize) {
    if batch.is_empty() {
        return;
    }
    let n = batch.len();
    deliver_here(sink, std::mem::take(batch));
    pending.fetch_sub(n, Ordering::AcqRel);
}

/// Delivers `messages` on this thread; a panicking sink is caught, as on the bus thread (a
/// sink's own `deliver_all` keeps one message's panic from losing the others).
fn deliver_here(sink: &dyn BusSink, messages: Vec<Arc<Message>>) {
    if catch_unwind(AssertUnwindSafe(|| sink.deliver_all(messages))).is_err() {
        tracing::error!("the bus sink panicked on messages; going on with the next");
    }
}

impl Relay {
    /// Whether `messages` go to at most [`INLINE_DELIVERIES`] local connections in all (a
    /// message to none still counts one: its lookup and encoding).
    fn small(&self, messages: &[Arc<Message>]) -> bool {
        let mut total = 0;
        for m in messages {
            total += self.sink.subscribers(&m.conv).max(1);
            if total > INLINE_DELIVERIES {
                return false;
            }
        }
        true
    }
}

/// What the writer thread calls after each commit.
impl BusSink for Relay {
    fn deliver(&self, message: Arc<Message>) {
        let Some(tx) = &self.tx else {
            return deliver_here(self.sink.as_ref(), vec![message]);
        };
        self.pending.fetch_add(1, Ordering::AcqRel);
        let unsent = match tx.try_send(Event::Message(message)) {
            Ok(()) => return,
            // Full: the writer thread is outside the runtime, where waiting is allowed
            // (back-pressure on the writer).
            Err(mpsc::error::TrySendError::Full(event)) => match tx.blocking_send(event) {
                Ok(()) => return,
                Err(mpsc::error::SendError(event)) => event,
            },
            Err(mpsc::error::TrySendError::Closed(event)) => event,
        };
        // The bus thread is gone: deliver here.
        self.pending.fetch_sub(1, Ordering::AcqRel);
        if let Event::Message(m) = unsent {
            deliver_here(self.sink.as_ref(), vec![m]);
        }
    }

    fn deliver_all(&self, messages: Vec<Arc<Message>>) {
        // Only the writer queues messages, so with nothing pending every message committed
        // before these has been delivered: delivering them here overtakes nothing.
        if self.pending.load(Ordering::Acquire) == 0 && self.small(&messages) {
            return deliver_here(self.sink.as_ref(), messages);
        }
        for m in messages {
            self.deliver(m);
        }
    }

    fn control(&self, event: ControlEvent) {
        // Not used by the writer; async callers use `Relay::control`.
        self.sink.control(event);
    }
}

#[cfg(test)]
#[path = "tests_relay.rs"]
mod tests;
