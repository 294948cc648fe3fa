//! The offline trigger: after a message lands in a user's personal stream, ask the registry
//! whether that user is connected anywhere, and if not hand the message to the
//! [`OfflineNotifier`] (the webhook).
//!
//! Publishing must not wait for that presence check, nor start a task per direct message
//! (under a burst of DMs to an unreachable registry, those tasks would pile up without bound).
//! So messages go into a bounded queue that one worker empties, checking the presence of up to
//! [`BATCH`] recipients in one registry call. The webhook is best-effort: when the queue is
//! full the message is not notified, counted as a dropped webhook event
//! (`switchboard_webhook_attempts_total{result="dropped"}`) and logged at most every
//! [`WARN_EVERY`].

use crate::backend::Registry;
use crate::metrics::Metrics;
use crate::node::OfflineNotifier;
use parking_lot::Mutex;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};
use switchboard_proto::Message;
use tokio::sync::mpsc;

/// Messages waiting for their presence check.
pub(crate) const QUEUE: usize = 4096;
/// Recipients checked in one registry call.
pub(crate) const BATCH: usize = 64;
/// Shortest time between two "queue full" warnings.
pub(crate) const WARN_EVERY: Duration = Duration::from_secs(10);

/// The sending end; the worker ends once it is dropped and the queue is empty.
pub(crate) struct OfflineTrigger {
    queue: mpsc::Sender<Arc<Message>>,
    metrics: Arc<Metrics>,
    /// Drops since the last warning, and when that warning was.
    dropped: AtomicU64,
    warned_at: Mutex<Option<Instant>>,
}

impl OfflineTrigger {
    /// Starts the worker on the current runtime.
    pub(crate) fn start(
        notifier: Arc<dyn OfflineNotifier>,
        registry: Arc<dyn Registry>,
        metrics: Arc<Metrics>,
    ) -> OfflineTrigger {
        let (queue, rx) = mpsc::channel(QUEUE);
        tokio::spawn(work(rx, registry, notifier));
        OfflineTrigger {
            queue,
            metrics,
            dropped: AtomicU64::new(0),
            warned_at: Mutex::new(None),
        }
    }

    /// Queues `message` (in `user:<id>`) for the check; never waits.
    pub(crate) fn offer(&self, message: Arc<Message>) {
        if self.queue.try_send(message).is_ok() {
            return;
        }
        self.metrics.webhook("dropped");
        self.dropped.fetch_add(1, Ordering::Relaxed);
        let mut warned_at = self.warned_at.lock();
        if warned_at.is_none_or(|at| at.elapsed() >= WARN_EVERY) {
            *warned_at = Some(Instant::now());
            let dropped = self.dropped.swap(0, Ordering::Relaxed);
            tracing::warn!(
                dropped,
                "offline trigger queue full; messages not notified to the webhook"
            );
        }
    }
}

/// The worker: takes up to [`BATCH`] messages, asks the registry about their recipients at
/// once, and notifies those with no connection.
async fn work(
    mut rx: mpsc::Receiver<Arc<Message>>,
    registry: Arc<dyn Registry>,
    notifier: Arc<dyn OfflineNotifier>,
) {
    let mut batch = Vec::with_capacity(BATCH);
    while rx.recv_many(&mut batch, BATCH).await > 0 {
        let users: Vec<String> = batch.iter().map(|m| m.conv.id().to_owned()).collect();
        match registry.user_connections(&users).await {
            Ok(counts) => {
                for (i, (user, message)) in users.iter().zip(batch.drain(..)).enumerate() {
                    if counts.get(i).copied().unwrap_or(0) == 0 {
                        notifier.offline_message(user, message);
                    }
                }
            }
            // Unknown presence: telling the back end twice beats never telling it.
            Err(e) => {
                tracing::warn!(error = %e, "presence unknown; sending the offline hook anyway");
                for (user, message) in users.iter().zip(batch.drain(..)) {
                    notifier.offline_message(user, message);
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::backend::{BackendError, ConnEntry};
    use async_trait::async_trait;
    use switchboard_proto::frame::PresenceEntry;

    /// A registry where `u_on` is connected, whose presence answers wait for `open`, and that
    /// records the size of every question.
    struct FakeRegistry {
        open: tokio::sync::Semaphore,
        asked: Mutex<Vec<usize>>,
    }

    #[async_trait]
    impl Registry for FakeRegistry {
        async fn add_connection(&self, _: &ConnEntry) -> Result<(), BackendError> {
            Ok(())
        }
        async fn remove_connection(&self, _: &ConnEntry) -> Result<(), BackendError> {
            Ok(())
        }
        async fn add_room_subscriber(&self, _: &str, _: &ConnEntry) -> Result<(), BackendError> {
            Ok(())
        }
        async fn remove_room_subscriber(&self, _: &str, _: &ConnEntry) -> Result<(), BackendError> {
            Ok(())
        }
        async fn user_connections(&self, ids: &[String]) -> Result<Vec<u32>, BackendError> {
            let _open = self.open.acquire().await;
            self.asked.lock().push(ids.len());
            Ok(ids.iter().map(|id| u32::from(id == "u_on")).collect())
        }
        async fn room_presence(&self, _: &str) -> Result<Vec<PresenceEntry>, BackendError> {
            Ok(Vec::new())
        }
        async fn put_recovery(
            &self,
            _: &str,
            _: &str,
            _: &str,
            _: std::time::Duration,
            _: crate::backend::RecoveryGuard<'_>,
        ) -> Result<bool, BackendError> {
            Ok(true)
        }
        async fn recovery(
            &self,
            _: &str,
        ) -> Result<Option<crate::backend::RecoveryRecord>, BackendError> {
            Ok(None)
        }
        async fn touch_recoveries(
            &self,
            _: &[String],
            _: std::time::Duration,
        ) -> Result<(), BackendError> {
            Ok(())
        }
        async fn delete_recovery(&self, _: &str, _: &str) -> Result<bool, BackendError> {
            Ok(false)
        }
    }

    #[derive(Default)]
    struct Told(Mutex<Vec<String>>);

    impl OfflineNotifier for Told {
        fn offline_message(&self, user_id: &str, _: Arc<Message>) {
            self.0.lock().push(user_id.to_owned());
        }
    }

    fn dm(to: &str) -> Arc<Message> {
        let m = serde_json::json!({"conv": format!("user:{to}"), "seq": 1, "message_id": "m_1",
            "from": "u_from", "to": to, "ts": 1, "client_msg_id": null, "body": {}});
        Arc::new(serde_json::from_value(m).unwrap())
    }

    fn setup(open: bool) -> (OfflineTrigger, Arc<FakeRegistry>, Arc<Told>, Arc<Metrics>) {
        let registry = Arc::new(FakeRegistry {
            open: tokio::sync::Semaphore::new(if open { 1 } else { 0 }),
            asked: Mutex::new(Vec::new()),
        });
        let told = Arc::new(Told::default());
        let metrics = Arc::new(Metrics::new());
        let trigger = OfflineTrigger::start(told.clone(), registry.clone(), metrics.clone());
        (trigger, registry, told, metrics)
    }

    #[tokio::test]
    async fn a_stuck_registry_fills_the_queue_and_then_messages_are_dropped_and_counted() {
        let (trigger, registry, told, metrics) = setup(false);
        // The worker has not run yet (this runtime has one thread): the queue takes QUEUE.
        for _ in 0..QUEUE + 10 {
            trigger.offer(dm("u_off"));
        }
        let dropped = r#"switchboard_webhook_attempts_total{result="dropped"} 10"#;
        assert!(metrics.render().contains(dropped), "{}", metrics.render());
        registry.open.add_permits(1);
        drop(trigger);
        // Everything queued is still checked, in batches, once the registry answers.
        for _ in 0..1000 {
            if told.0.lock().len() == QUEUE {
                break;
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        assert_eq!(told.0.lock().len(), QUEUE);
        assert!(registry.asked.lock().iter().all(|n| *n <= BATCH));
    }

    #[tokio::test]
    async fn only_users_with_no_connection_are_notified_and_a_burst_is_one_question() {
        let (trigger, registry, told, _) = setup(true);
        for to in ["u_off", "u_on", "u_other"] {
            trigger.offer(dm(to));
        }
        drop(trigger);
        for _ in 0..1000 {
            if told.0.lock().len() == 2 {
                break;
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        assert_eq!(*told.0.lock(), vec!["u_off", "u_other"]);
        assert_eq!(*registry.asked.lock(), vec![3]);
    }
}
