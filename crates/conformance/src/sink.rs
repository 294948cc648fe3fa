//! [`RecordingSink`]: a [`BusSink`] that records what it receives and lets tests wait for it.

use parking_lot::Mutex;
use std::sync::Arc;
use std::time::Duration;
use switchboard_core::backend::{BusSink, ControlEvent};
use switchboard_proto::{Conv, Message};
use tokio::sync::watch;

/// Records every delivered message and control event, in arrival order.
pub struct RecordingSink {
    recorded: Mutex<Recorded>,
    /// Bumped on every arrival, to wake waiters.
    changed: watch::Sender<u64>,
}

#[derive(Default)]
struct Recorded {
    messages: Vec<Arc<Message>>,
    controls: Vec<ControlEvent>,
}

impl RecordingSink {
    /// An empty sink.
    pub fn new() -> Arc<RecordingSink> {
        Arc::new(RecordingSink {
            recorded: Mutex::new(Recorded::default()),
            changed: watch::Sender::new(0),
        })
    }

    /// This sink as the trait object a backend takes.
    pub fn as_sink(self: &Arc<Self>) -> Arc<dyn BusSink> {
        self.clone()
    }

    /// Every message delivered so far, in delivery order.
    pub fn messages(&self) -> Vec<Arc<Message>> {
        self.recorded.lock().messages.clone()
    }

    /// The messages of one conversation delivered so far, in delivery order.
    pub fn messages_in(&self, conv: &Conv) -> Vec<Arc<Message>> {
        let r = self.recorded.lock();
        r.messages
            .iter()
            .filter(|m| &m.conv == conv)
            .cloned()
            .collect()
    }

    /// Every control event received so far.
    pub fn controls(&self) -> Vec<ControlEvent> {
        self.recorded.lock().controls.clone()
    }

    /// Waits until at least `n` messages (of any conversation) arrived; `Err` with what arrived
    /// if `timeout` passes first.
    pub async fn wait_for_messages(
        &self,
        n: usize,
        timeout: Duration,
    ) -> Result<Vec<Arc<Message>>, Vec<Arc<Message>>> {
        self.wait(timeout, || {
            let all = self.messages();
            (all.len() >= n).then_some(all)
        })
        .await
        .map_err(|()| self.messages())
    }

    /// Waits until at least `n` messages of `conv` arrived; `Err` with what arrived if `timeout`
    /// passes first.
    pub async fn wait_for_messages_in(
        &self,
        conv: &Conv,
        n: usize,
        timeout: Duration,
    ) -> Result<Vec<Arc<Message>>, Vec<Arc<Message>>> {
        self.wait(timeout, || {
            let got = self.messages_in(conv);
            (got.len() >= n).then_some(got)
        })
        .await
        .map_err(|()| self.messages_in(conv))
    }

    /// Waits until at least `n` control events arrived; `Err` with what arrived if `timeout`
    /// passes first.
    pub async fn wait_for_controls(
        &self,
        n: usize,
        timeout: Duration,
    ) -> Result<Vec<ControlEvent>, Vec<ControlEvent>> {
        self.wait(timeout, || {
            let all = self.controls();
            (all.len() >= n).then_some(all)
        })
        .await
        .map_err(|()| self.controls())
    }

    async fn wait<T>(
        &self,
        timeout: Duration,
        mut done: impl FnMut() -> Option<T>,
    ) -> Result<T, ()> {
        // Subscribing before checking means no arrival between the check and the wait is missed.
        let mut rx = self.changed.subscribe();
        let waiting = async {
            loop {
                if let Some(v) = done() {
                    return v;
                }
                // The sender lives in `self`, so `changed` cannot fail while we borrow it.
                let _ = rx.changed().await;
            }
        };
        tokio::time::timeout(timeout, waiting).await.map_err(|_| ())
    }

    fn bump(&self) {
        self.changed.send_modify(|n| *n = n.wrapping_add(1));
    }
}

impl BusSink for RecordingSink {
    fn deliver(&self, message: Arc<Message>) {
        self.recorded.lock().messages.push(message);
        self.bump();
    }

    fn control(&self, event: ControlEvent) {
        self.recorded.lock().controls.push(event);
        self.bump();
    }
}
