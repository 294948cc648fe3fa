//! [`Lifecycle`] for the Redis backend: readiness from the health flags without a round trip,
//! and closing (stop the tasks, release the lease); dropping without `close` stops the tasks.

use crate::RedisBackend;
use crate::registry;
use async_trait::async_trait;
use std::sync::atomic::Ordering;
use std::time::Duration;
use switchboard_core::backend::Lifecycle;
use tokio::task::JoinHandle;

impl Drop for RedisBackend {
    fn drop(&mut self) {
        // Dropped without `close`: stop the tasks; the lease expires on its own.
        self.shared.cancel.cancel();
    }
}

#[async_trait]
impl Lifecycle for RedisBackend {
    async fn ready(&self) -> bool {
        let s = &self.shared;
        !s.closed.load(Ordering::SeqCst)
            && s.health.lease_ok.load(Ordering::SeqCst)
            && s.health.pubsub_up.load(Ordering::SeqCst)
    }

    async fn close(&self) {
        let s = &self.shared;
        if s.closed.swap(true, Ordering::SeqCst) {
            return;
        }
        s.cancel.cancel();
        let tasks: Vec<JoinHandle<()>> = std::mem::take(&mut *self.tasks.lock());
        for t in tasks {
            // The tasks stop at their next await; a stuck one is not worth waiting for.
            if tokio::time::timeout(Duration::from_secs(2), t)
                .await
                .is_err()
            {
                tracing::warn!("a Redis backend task did not stop within 2 s");
            }
        }
        s.health.pubsub_up.store(false, Ordering::SeqCst);
        s.health.lease_ok.store(false, Ordering::SeqCst);
        registry::release_lease(s).await;
        s.redis.close();
    }
}
