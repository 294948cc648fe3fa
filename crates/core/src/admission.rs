//! Admission of client sessions and the tracking of their tasks.
//!
//! A node takes at most `max_connections` sessions, over every transport together. Each
//! session holds one [`Permit`] (an owned semaphore permit) from before it is accepted until
//! its task ends, so admission is a single atomic step: two transports can no longer both see
//! "one slot left" in a counter and both take it. Every session task runs on one
//! [`TaskTracker`], so the drain can wait for the last one to end instead of polling a count.
//!
//! It belongs to the [`Node`](crate::Node) rather than to the gateway because the three
//! transports (WebSocket, TCP, long-poll) are separate entry points that share nothing but the
//! node, and the drain, which waits on the tracker, is the node's too.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio_util::task::TaskTracker;

/// The right of one session to exist; the slot is free again once it is dropped.
#[derive(Debug)]
pub struct Permit {
    _slot: OwnedSemaphorePermit,
}

/// Session slots and the tracker of session tasks.
#[derive(Debug)]
pub struct Admission {
    /// One permit per session that may run; `max_connections` in all.
    slots: Arc<Semaphore>,
    /// Every session task, for the drain to wait on.
    tasks: TaskTracker,
}

impl Admission {
    /// Room for `max_sessions` sessions at once.
    pub fn new(max_sessions: usize) -> Admission {
        Admission {
            slots: Arc::new(Semaphore::new(max_sessions.min(Semaphore::MAX_PERMITS))),
            tasks: TaskTracker::new(),
        }
    }

    /// A slot for one more session, or `None` when the node is full.
    pub fn try_admit(&self) -> Option<Permit> {
        self.slots
            .clone()
            .try_acquire_owned()
            .ok()
            .map(|_slot| Permit { _slot })
    }

    /// Slots free now.
    pub fn available(&self) -> usize {
        self.slots.available_permits()
    }

    /// Runs a session task that holds `permit` until it ends.
    pub fn spawn<F>(&self, permit: Permit, session: F) -> tokio::task::JoinHandle<()>
    where
        F: Future<Output = ()> + Send + 'static,
    {
        self.tasks.spawn(with_permit(permit, session))
    }

    /// Session tasks still running.
    pub fn running(&self) -> usize {
        self.tasks.len()
    }

    /// No more sessions are expected: [`wait`](Admission::wait) may now return. (A task spawned
    /// afterwards, say an upgrade admitted just before the drain began, is still waited for.)
    pub fn close(&self) {
        self.tasks.close();
    }

    /// Completes once [`close`](Admission::close) was called and every session task ended.
    pub async fn wait(&self) {
        self.tasks.wait().await
    }
}

pin_project_lite::pin_project! {
    /// A session with its permit, which is dropped with the task's future once the session
    /// ends. Not an `async` block: rustc keeps an async block's captured future and the future
    /// it awaits as two copies, which doubled every session task's size (about 0.8 KiB per idle
    /// connection).
    struct Admitted<F> {
        #[pin]
        session: F,
        _permit: Permit,
    }
}

/// `session`, holding `permit` until it ends (what [`Admission::spawn`] runs).
fn with_permit<F>(permit: Permit, session: F) -> Admitted<F> {
    Admitted {
        session,
        _permit: permit,
    }
}

impl<F: Future<Output = ()>> Future for Admitted<F> {
    type Output = ();

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        self.project().session.poll(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn never_admits_more_than_its_slots_and_frees_them_when_sessions_end() {
        let admission = Arc::new(Admission::new(3));
        let tries: Vec<_> = (0..20)
            .map(|_| {
                let a = admission.clone();
                tokio::spawn(async move { a.try_admit() })
            })
            .collect();
        let mut permits = Vec::new();
        for t in tries {
            permits.extend(t.await.unwrap());
        }
        assert_eq!(permits.len(), 3);
        assert!(admission.try_admit().is_none());

        let (end, ended) = tokio::sync::oneshot::channel::<()>();
        admission.spawn(permits.pop().unwrap(), async move {
            let _ = ended.await;
        });
        assert!(
            admission.try_admit().is_none(),
            "the session holds its slot"
        );
        let _ = end.send(());
        admission.close();
        admission.wait().await;
        assert_eq!(admission.running(), 0);
        assert_eq!(
            admission.available(),
            1,
            "the ended session gave its slot back"
        );
    }

    #[tokio::test]
    async fn a_session_task_holds_its_future_once() {
        let admission = Admission::new(1);
        let permit = admission.try_admit().unwrap();
        let session = async {
            let state = [7u8; 1024];
            tokio::task::yield_now().await;
            std::hint::black_box(&state);
        };
        let one = std::mem::size_of_val(&session);
        let task = with_permit(permit, session);
        assert!(
            std::mem::size_of_val(&task) < one + 64,
            "{} bytes for a {one}-byte session",
            std::mem::size_of_val(&task)
        );
        task.await;
        assert_eq!(admission.available(), 1);
    }
}
