//! Admission of client sessions, and the drain's wait for the last of them to end.
//!
//! A node takes at most `max_connections` sessions, over every transport together. Each
//! session holds one [`Permit`] from before it is accepted until its task ends, and taking one
//! is a single atomic step (a compare-and-swap on the count): two transports can never both see
//! "one slot left" and both take it. The drain waits for the last permit to go, so for every
//! session task to end (and for a session admitted but not yet started too).
//!
//! A permit is one pointer to the node's count: it is what every connection's task carries,
//! so it is kept to 8 bytes (a tokio semaphore permit and a task tracker's token took 24, which
//! put the session's task over a 128-byte step of tokio's task allocation).
//!
//! It belongs to the [`Node`](crate::Node) rather than to the gateway because the three
//! transports (WebSocket, TCP, long-poll) are separate entry points that share nothing but the
//! node, and the drain, which waits on it, is the node's too.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::task::{Context, Poll};
use tokio::sync::Notify;

/// The count of sessions and who waits for it to reach zero.
#[derive(Debug)]
struct Slots {
    held: AtomicUsize,
    max: usize,
    /// [`Admission::close`] was called.
    closed: AtomicBool,
    /// Woken when the last permit goes, and at `close`.
    idle: Notify,
}

/// The right of one session to exist; the slot is free again once it is dropped.
#[derive(Debug)]
pub struct Permit(Arc<Slots>);

impl Drop for Permit {
    fn drop(&mut self) {
        if self.0.held.fetch_sub(1, Ordering::AcqRel) == 1 {
            self.0.idle.notify_waiters();
        }
    }
}

/// Session slots and the wait for their end.
#[derive(Debug)]
pub struct Admission {
    slots: Arc<Slots>,
}

impl Admission {
    /// Room for `max_sessions` sessions at once.
    pub fn new(max_sessions: usize) -> Admission {
        Admission {
            slots: Arc::new(Slots {
                held: AtomicUsize::new(0),
                max: max_sessions,
                closed: AtomicBool::new(false),
                idle: Notify::new(),
            }),
        }
    }

    /// A slot for one more session, or `None` when the node is full.
    pub fn try_admit(&self) -> Option<Permit> {
        let slots = &self.slots;
        slots
            .held
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| {
                (n < slots.max).then_some(n + 1)
            })
            .ok()
            .map(|_| Permit(slots.clone()))
    }

    /// Slots free now.
    pub fn available(&self) -> usize {
        self.slots
            .max
            .saturating_sub(self.slots.held.load(Ordering::Acquire))
    }

    /// Runs a session task that holds `permit` until it ends.
    pub fn spawn<F>(&self, permit: Permit, session: F) -> tokio::task::JoinHandle<()>
    where
        F: Future<Output = ()> + Send + 'static,
    {
        tokio::spawn(with_permit(permit, session))
    }

    /// Sessions admitted and not yet ended (their tasks, and any admitted but not yet started).
    pub fn running(&self) -> usize {
        self.slots.held.load(Ordering::Acquire)
    }

    /// No more sessions are expected: [`wait`](Admission::wait) may now return. (A session
    /// admitted afterwards, say an upgrade admitted just before the drain began, is still
    /// waited for while it runs.)
    pub fn close(&self) {
        self.slots.closed.store(true, Ordering::Release);
        self.slots.idle.notify_waiters();
    }

    /// Completes once [`close`](Admission::close) was called and every session ended.
    pub async fn wait(&self) {
        let slots = &self.slots;
        loop {
            let idle = slots.idle.notified();
            tokio::pin!(idle);
            // Registered before the check: a wake-up between the two is not lost.
            idle.as_mut().enable();
            if slots.closed.load(Ordering::Acquire) && slots.held.load(Ordering::Acquire) == 0 {
                return;
            }
            idle.await;
        }
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
        // The drain waits for every permit, the two never spawned too.
        drop(permits);
        admission.close();
        admission.wait().await;
        assert_eq!(admission.running(), 0);
        assert_eq!(admission.available(), 3, "every slot is back");
    }

    #[tokio::test]
    async fn the_drain_waits_for_every_permit_even_one_not_yet_spawned() {
        let admission = Arc::new(Admission::new(2));
        let waiting = admission.try_admit().unwrap();
        admission.close();
        let a = admission.clone();
        let mut wait = tokio::spawn(async move { a.wait().await });
        tokio::task::yield_now().await;
        assert!(
            tokio::time::timeout(std::time::Duration::from_millis(50), &mut wait)
                .await
                .is_err(),
            "a permit is held: the drain waits"
        );
        assert_eq!(admission.running(), 1);
        drop(waiting);
        wait.await.unwrap();
        assert_eq!(admission.available(), 2);
        // Closed and idle: returns at once.
        admission.wait().await;
    }

    #[test]
    fn a_permit_is_one_pointer() {
        assert_eq!(std::mem::size_of::<Permit>(), 8);
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
