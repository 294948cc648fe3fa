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

use std::sync::Arc;
use std::sync::mpsc::{Receiver, SyncSender, TrySendError, sync_channel};
use std::time::Duration;
use switchboard_core::backend::{BusSink, ControlEvent};
use switchboard_proto::Message;

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
pub(crate) struct Relay {
    tx: Option<SyncSender<Event>>,
    sink: Arc<dyn BusSink>,
}

impl Relay {
    /// Starts the bus thread. It runs in the caller's tokio runtime context (if any), so that a
    /// sink may use tokio there, and ends once the relay is dropped.
    pub(crate) fn start(sink: Arc<dyn BusSink>) -> Arc<Relay> {
        let (tx, rx) = sync_channel(QUEUE);
        let target = sink.clone();
        let runtime = tokio::runtime::Handle::try_current().ok();
        let spawned = std::thread::Builder::new()
            .name(THREAD.into())
            .spawn(move || {
                let _context = runtime.as_ref().map(|r| r.enter());
                serve(&rx, target.as_ref());
            });
        match spawned {
            Ok(_) => Arc::new(Relay { tx: Some(tx), sink }),
            Err(e) => {
                tracing::error!(error = %e, "could not start the bus thread; delivering inline");
                Arc::new(Relay { tx: None, sink })
            }
        }
    }

    /// Queues a control event behind every message committed so far (from async code).
    pub(crate) async fn control(&self, event: ControlEvent) {
        let Some(tx) = &self.tx else {
            return self.sink.control(event);
        };
        let mut event = Event::Control(event);
        loop {
            match tx.try_send(event) {
                Ok(()) => return,
                // Full: the bus thread is busy with a large fan-out; control events are rare.
                Err(TrySendError::Full(e)) => {
                    event = e;
                    tokio::time::sleep(Duration::from_millis(1)).await;
                }
                Err(TrySendError::Disconnected(Event::Control(e))) => {
                    return self.sink.control(e);
                }
                Err(TrySendError::Disconnected(Event::Message(_))) => return,
            }
        }
    }
}

fn serve(rx: &Receiver<Event>, sink: &dyn BusSink) {
    while let Ok(event) = rx.recv() {
        match event {
            Event::Message(m) => sink.deliver(m),
            Event::Control(e) => sink.control(e),
        }
    }
}

/// What the writer thread calls after each commit.
impl BusSink for Relay {
    fn deliver(&self, message: Arc<Message>) {
        match &self.tx {
            // Blocks while the queue is full: back-pressure on the writer.
            Some(tx) => {
                if let Err(e) = tx.send(Event::Message(message))
                    && let Event::Message(m) = e.0
                {
                    self.sink.deliver(m);
                }
            }
            None => self.sink.deliver(message),
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

    #[derive(Default)]
    struct Recorder(Mutex<Vec<String>>);

    impl BusSink for Recorder {
        fn deliver(&self, m: Arc<Message>) {
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
        })
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
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        while recorder.0.lock().len() < n as usize + 1 {
            assert!(std::time::Instant::now() < deadline, "relay stalled");
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        let seen = recorder.0.lock().clone();
        let expected: Vec<String> = (1..=n)
            .map(|s| format!("m{s}"))
            .chain(["control".to_string()])
            .collect();
        assert_eq!(seen, expected);
    }
}
