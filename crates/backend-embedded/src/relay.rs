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

fn serve(rx: &mut mpsc::Receiver<Event>, sink: &dyn BusSink, pending: &AtomicUsize) {
    while let Some(event) = rx.blocking_recv() {
        // A panicking sink must not stop the bus: the queued messages behind it still go out.
        let handled = catch_unwind(AssertUnwindSafe(|| match event {
            Event::Message(m) => sink.deliver(m),
            Event::Control(e) => sink.control(e),
        }));
        pending.fetch_sub(1, Ordering::AcqRel);
        if handled.is_err() {
            tracing::error!("the bus sink panicked on an event; going on with the next");
        }
    }
}

/// Delivers `m` on this thread; a panicking sink is caught, as on the bus thread.
fn deliver_here(sink: &dyn BusSink, m: Arc<Message>) {
    if catch_unwind(AssertUnwindSafe(|| sink.deliver(m))).is_err() {
        tracing::error!("the bus sink panicked on a message; going on with the next");
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
            return deliver_here(self.sink.as_ref(), message);
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
            deliver_here(self.sink.as_ref(), m);
        }
    }

    fn deliver_all(&self, messages: Vec<Arc<Message>>) {
        // Only the writer queues messages, so with nothing pending every message committed
        // before these has been delivered: delivering them here overtakes nothing.
        if self.pending.load(Ordering::Acquire) == 0 && self.small(&messages) {
            for m in messages {
                deliver_here(self.sink.as_ref(), m);
            }
            return;
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
mod tests {
    use super::*;
    use parking_lot::Mutex;
    use switchboard_proto::{Conv, DisconnectReason, MessageBody};

    /// Records what it gets; panics on the message with seq `panic_on` (0: never).
    #[derive(Default)]
    struct Recorder(Mutex<Vec<String>>, u64);

    impl BusSink for Recorder {
        fn deliver(&self, m: Arc<Message>) {
            assert_ne!(m.seq, self.1, "a sink bug");
            self.0.lock().push(format!("m{}", m.seq));
        }
        fn control(&self, _: ControlEvent) {
            self.0.lock().push("control".into());
        }
    }

    fn message(seq: u64) -> Arc<Message> {
        Arc::new(Message {
            conv: Conv::room("r"),
            seq,
            message_id: format!("id{seq}"),
            from: None,
            to: None,
            ts: 0,
            client_msg_id: None,
            body: MessageBody::from_json("{}".into()).expect("json"),
            encoded: Default::default(),
        })
    }

    /// A sink that panics on one event does not stop the bus: the events behind it go out.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_panicking_sink_does_not_stop_the_bus() {
        let recorder = Arc::new(Recorder(Mutex::new(Vec::new()), 2));
        let relay = Relay::start(recorder.clone());
        let writer = relay.clone();
        std::thread::spawn(move || (1..=3).for_each(|s| writer.deliver(message(s))))
            .join()
            .expect("writer thread");
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
        while recorder.0.lock().len() < 2 {
            assert!(std::time::Instant::now() < deadline, "the bus stopped");
            tokio::time::sleep(std::time::Duration::from_millis(5)).await;
        }
        assert_eq!(*recorder.0.lock(), vec!["m1".to_string(), "m3".to_string()]);
    }

    /// Messages queued by the writer thread, then a control event from async code: the sink sees
    /// them in that order, even with the queue overflowing (the writer then waits).
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn control_events_never_overtake_earlier_messages() {
        let recorder = Arc::new(Recorder::default());
        let relay = Relay::start(recorder.clone());
        let writer = relay.clone();
        let n = (QUEUE * 3) as u64;
        std::thread::spawn(move || (1..=n).for_each(|s| writer.deliver(message(s))))
            .join()
            .expect("writer thread");
        relay
            .control(ControlEvent::DisconnectUser {
                user_id: "u".into(),
                reason: DisconnectReason::Kicked,
            })
            .await;
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
        while recorder.0.lock().len() < n as usize + 1 {
            assert!(std::time::Instant::now() < deadline, "relay stalled");
            tokio::time::sleep(std::time::Duration::from_millis(5)).await;
        }
        let seen = recorder.0.lock().clone();
        let expected: Vec<String> = (1..=n)
            .map(|s| format!("m{s}"))
            .chain(["control".to_string()])
            .collect();
        assert_eq!(seen, expected);
    }

    /// Records each message with the thread that delivered it; holds the bus on message
    /// `hold` until released.
    struct Gate {
        seen: Mutex<Vec<(u64, String)>>,
        hold: u64,
        release: Mutex<Option<std::sync::mpsc::Receiver<()>>>,
        /// The local connections it says each message goes to.
        subscribers: usize,
    }

    impl BusSink for Gate {
        fn deliver(&self, m: Arc<Message>) {
            let thread = std::thread::current().name().unwrap_or("").to_owned();
            self.seen.lock().push((m.seq, thread));
            if m.seq == self.hold
                && let Some(rx) = self.release.lock().take()
            {
                let _ = rx.recv();
            }
        }
        fn control(&self, _: ControlEvent) {}
        fn subscribers(&self, _: &Conv) -> usize {
            self.subscribers
        }
    }

    fn gate_of(hold: u64, subscribers: usize) -> (Arc<Gate>, std::sync::mpsc::Sender<()>) {
        let (tx, rx) = std::sync::mpsc::channel();
        let gate = Gate {
            seen: Mutex::new(Vec::new()),
            hold,
            release: Mutex::new(Some(rx)),
            subscribers,
        };
        (Arc::new(gate), tx)
    }

    fn gate(hold: u64) -> (Arc<Gate>, std::sync::mpsc::Sender<()>) {
        gate_of(hold, 1)
    }

    /// What counts is the connections a commit goes to: three messages to ten each are
    /// delivered here, four go to the bus.
    #[test]
    fn a_commit_is_small_by_the_connections_it_goes_to() {
        let (gate, _release) = gate_of(0, 10);
        let relay = Relay::start(gate.clone());
        relay.deliver_all((1..=3).map(message).collect());
        assert_eq!(gate.seen.lock().len(), 3, "delivered before it returned");
        relay.deliver_all((4..=7).map(message).collect());
        wait_for(&gate, 7);
        let seen = gate.seen.lock().clone();
        assert!(seen[..3].iter().all(|(_, t)| t != THREAD), "{seen:?}");
        assert!(seen[3..].iter().all(|(_, t)| t == THREAD), "{seen:?}");
    }

    fn wait_for(gate: &Gate, n: usize) {
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
        while gate.seen.lock().len() < n {
            assert!(std::time::Instant::now() < deadline, "the bus stalled");
            std::thread::sleep(std::time::Duration::from_millis(2));
        }
    }

    /// A small commit with the bus idle is delivered on the committing thread before
    /// `deliver_all` returns; a large one goes to the bus thread.
    #[test]
    fn a_small_commit_is_delivered_by_the_writer_when_the_bus_is_idle() {
        let (gate, _release) = gate(0);
        let relay = Relay::start(gate.clone());
        std::thread::Builder::new()
            .name("writer".into())
            .spawn({
                let relay = relay.clone();
                move || {
                    relay.deliver_all((1..=INLINE_DELIVERIES as u64).map(message).collect());
                }
            })
            .unwrap()
            .join()
            .unwrap();
        let seen = gate.seen.lock().clone();
        assert_eq!(
            seen.len(),
            INLINE_DELIVERIES,
            "delivered before it returned"
        );
        assert!(seen.iter().all(|(_, t)| t == "writer"), "{seen:?}");
        let from = INLINE_DELIVERIES as u64 + 1;
        relay.deliver_all(
            (from..from + INLINE_DELIVERIES as u64 + 1)
                .map(message)
                .collect(),
        );
        wait_for(&gate, 2 * INLINE_DELIVERIES + 1);
        let seen = gate.seen.lock().clone();
        assert!(
            seen[INLINE_DELIVERIES..].iter().all(|(_, t)| t == THREAD),
            "{seen:?}"
        );
        let seqs: Vec<u64> = seen.iter().map(|(s, _)| *s).collect();
        assert_eq!(
            seqs,
            (1..=2 * INLINE_DELIVERIES as u64 + 1).collect::<Vec<_>>()
        );
    }

    /// While the bus still delivers an earlier commit, a small one queues behind it instead of
    /// overtaking it; once the bus is idle again, the next goes inline.
    #[test]
    fn a_small_commit_never_overtakes_one_the_bus_still_delivers() {
        let big = INLINE_DELIVERIES as u64 + 1;
        let (gate, release) = gate(1);
        let relay = Relay::start(gate.clone());
        relay.deliver_all((1..=big).map(message).collect());
        wait_for(&gate, 1); // the bus holds message 1
        relay.deliver_all(vec![message(big + 1)]);
        assert_eq!(gate.seen.lock().len(), 1, "queued, not delivered here");
        release.send(()).unwrap();
        wait_for(&gate, big as usize + 1);
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
        while relay.pending.load(Ordering::Acquire) != 0 {
            assert!(
                std::time::Instant::now() < deadline,
                "pending never went back to 0"
            );
            std::thread::sleep(std::time::Duration::from_millis(2));
        }
        relay.deliver_all(vec![message(big + 2)]);
        let seen = gate.seen.lock().clone();
        let seqs: Vec<u64> = seen.iter().map(|(s, _)| *s).collect();
        assert_eq!(seqs, (1..=big + 2).collect::<Vec<_>>());
        assert_eq!(
            seen[big as usize].1, THREAD,
            "the one behind went by the bus"
        );
        assert_ne!(seen[big as usize + 1].1, THREAD, "then inline again");
    }

    /// A sink that panics on a message delivered on the writer's thread does not stop the rest
    /// of the commit, nor unwind into the writer.
    #[test]
    fn a_panicking_sink_on_the_writers_thread_is_caught() {
        let recorder = Arc::new(Recorder(Mutex::new(Vec::new()), 2));
        let relay = Relay::start(recorder.clone());
        relay.deliver_all((1..=3).map(message).collect());
        assert_eq!(*recorder.0.lock(), vec!["m1".to_string(), "m3".to_string()]);
    }
}
