//! The in-process bus: hands committed messages and control events to the sink on its own thread.
//!
//! The writer thread used to call the sink itself, so a fan-out to 10,000 local subscribers held
//! up the next group commit for the whole fan-out. Now the writer only queues, and one bus thread
//! delivers, in the order queued. It is a plain thread rather than a tokio task on purpose: waking
//! session tasks from outside the runtime puts them in the shared queue that every worker pulls
//! from, so the fan-out's sends spread over all cores (from a task, they piled onto one worker's
//! local queue: p99 rose from ~140 to ~250-320 ms in the 10,000-subscriber benchmark). Control
//! events take the same queue, so a `Revoke` or a logout is never overtaken by a message
//! committed before it. The queue is bounded: when delivery falls behind, the writer waits.

use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::Arc;
use switchboard_core::backend::{BusSink, ControlEvent};
use switchboard_proto::Message;
use tokio::sync::mpsc;

/// Events queued between the writer and the bus thread.
const QUEUE: usize = 1024;

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
}

impl Relay {
    /// Starts the bus thread. It runs in the caller's tokio runtime context (if any), so that a
    /// sink may use tokio there, and ends once the relay is dropped.
    pub(crate) fn start(sink: Arc<dyn BusSink>) -> Arc<Relay> {
        let (tx, mut rx) = mpsc::channel(QUEUE);
        let target = sink.clone();
        let runtime = tokio::runtime::Handle::try_current().ok();
        let spawned = std::thread::Builder::new()
            .name(THREAD.into())
            .spawn(move || {
                let _context = runtime.as_ref().map(|r| r.enter());
                serve(&mut rx, target.as_ref());
            });
        match spawned {
            Ok(_) => Arc::new(Relay { tx: Some(tx), sink }),
            Err(e) => {
                tracing::error!(error = %e, "could not start the bus thread; delivering inline");
                Arc::new(Relay { tx: None, sink })
            }
        }
    }

    /// Queues a control event behind every message committed so far (from async code). The
    /// queuing runs in a task of its own: a caller that goes away (an HTTP client closing its
    /// connection mid-logout) must not lose the event.
    pub(crate) async fn control(&self, event: ControlEvent) {
        let Some(tx) = self.tx.clone() else {
            return self.sink.control(event);
        };
        let sink = self.sink.clone();
        let queued = tokio::spawn(async move {
            if let Err(mpsc::error::SendError(Event::Control(e))) =
                tx.send(Event::Control(event)).await
            {
                // The bus thread is gone (shutdown): deliver here rather than drop it.
                sink.control(e);
            }
        });
        let _ = queued.await;
    }
}

fn serve(rx: &mut mpsc::Receiver<Event>, sink: &dyn BusSink) {
    while let Some(event) = rx.blocking_recv() {
        // A panicking sink must not stop the bus: the queued messages behind it still go out.
        let handled = catch_unwind(AssertUnwindSafe(|| match event {
            Event::Message(m) => sink.deliver(m),
            Event::Control(e) => sink.control(e),
        }));
        if handled.is_err() {
            tracing::error!("the bus sink panicked on an event; going on with the next");
        }
    }
}

/// What the writer thread calls after each commit.
impl BusSink for Relay {
    fn deliver(&self, message: Arc<Message>) {
        let Some(tx) = &self.tx else {
            return self.sink.deliver(message);
        };
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
        if let Event::Message(m) = unsent {
            self.sink.deliver(m);
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
}
