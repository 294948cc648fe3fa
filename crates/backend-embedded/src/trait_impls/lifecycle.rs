//! [`Lifecycle`] for the embedded backend: readiness, and closing the readers and the writer
//! thread (also on drop, for the readers).

use crate::EmbeddedBackend;
use crate::writer::Job;
use async_trait::async_trait;
use std::sync::atomic::Ordering;
use switchboard_core::backend::Lifecycle;
use tokio::sync::oneshot;

impl Drop for EmbeddedBackend {
    /// Lets the reader threads exit even when the backend was never closed (tests, errors at
    /// start). The writer thread ends by itself once its job channel is dropped.
    fn drop(&mut self) {
        self.reads.close();
    }
}

#[async_trait]
impl Lifecycle for EmbeddedBackend {
    async fn ready(&self) -> bool {
        self.check_open().is_ok()
    }

    async fn close(&self) {
        if self.closed.swap(true, Ordering::SeqCst) {
            return;
        }
        self.reads.close();
        let (reply, done) = oneshot::channel();
        if self.jobs.send(Job::Close { reply }).is_ok() {
            let _ = done.await;
        }
        let handle = self.writer.lock().take();
        if let Some(handle) = handle {
            // The writer has answered `Close`; joining waits for its connection to close.
            let joined = tokio::task::spawn_blocking(move || handle.join()).await;
            if !matches!(joined, Ok(Ok(()))) {
                tracing::error!("the embedded backend's writer thread panicked");
            }
        }
    }
}
