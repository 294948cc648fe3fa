//! A socket's input: the client's events (as native frames) and proof of life, waiting for the
//! session. A queue that allocates nothing until used (an idle socket holds an empty one),
//! bounded in entries, closed by the event handler when the socket ends. Proof of life is a
//! flag beside the queue, not an entry: an idle socket's heartbeat allocates nothing.
//!
//! The session waits on it with a plain poll that leaves the waker beside the queue, not with a
//! `Notify`: an idle session's future keeps no `Notified` (64 bytes) in its `select!` for it.

use parking_lot::Mutex;
use std::collections::VecDeque;
use std::sync::atomic::{AtomicBool, Ordering};
use std::task::{Context, Poll, Waker};
use switchboard_core::transport::{Inbound, Transport};

/// Entries kept in the queue's spare capacity once it is empty again; more is released.
const KEEP: usize = 8;

/// The queue and who waits on it.
struct Queue {
    items: VecDeque<Inbound>,
    /// The session's task, when it found the queue empty.
    waiting: Option<Waker>,
}

/// The input of one socket's session.
pub struct Inbox {
    queue: Mutex<Queue>,
    cap: usize,
    closed: AtomicBool,
    /// Proof of life not yet taken by the session (set under the queue's lock).
    alive: AtomicBool,
}

impl Inbox {
    /// An empty input taking at most `cap` entries at once.
    pub fn new(cap: usize) -> Inbox {
        Inbox {
            queue: Mutex::new(Queue {
                items: VecDeque::new(),
                waiting: None,
            }),
            cap: cap.max(1),
            closed: AtomicBool::new(false),
            alive: AtomicBool::new(false),
        }
    }

    /// Queues `item`; `false` when the queue is full or closed.
    pub fn push(&self, item: Inbound) -> bool {
        if self.closed.load(Ordering::Acquire) {
            return false;
        }
        let waiting = {
            let mut q = self.queue.lock();
            if q.items.len() >= self.cap {
                return false;
            }
            q.items.push_back(item);
            q.waiting.take()
        };
        if let Some(w) = waiting {
            w.wake();
        }
        true
    }

    /// Proof of life: the session gets [`Inbound::Alive`] once however often this is called
    /// before it looks (the queue's bound and memory are not used: an idle socket's heartbeat
    /// keeps no entry).
    pub fn alive(&self) {
        if self.closed.load(Ordering::Acquire) {
            return;
        }
        let waiting = {
            let mut q = self.queue.lock();
            self.alive.store(true, Ordering::Relaxed);
            q.waiting.take()
        };
        if let Some(w) = waiting {
            w.wake();
        }
    }

    /// Ends the input: the session reads what is queued, then the end.
    pub fn close(&self) {
        self.closed.store(true, Ordering::Release);
        // Taken under the lock, after the flag: a poll that saw the flag unset left its waker
        // before this looks.
        let waiting = self.queue.lock().waiting.take();
        if let Some(w) = waiting {
            w.wake();
        }
    }

    /// The next entry, `Ready(None)` once closed and empty; `Pending` wakes `cx` when there is
    /// more. Cancel-safe: nothing is taken unless returned.
    pub fn poll_next(&self, cx: &mut Context<'_>) -> Poll<Option<Inbound>> {
        let mut q = self.queue.lock();
        if let Some(item) = q.items.pop_front() {
            if q.items.is_empty() && q.items.capacity() > KEEP {
                q.items.shrink_to(KEEP);
            }
            return Poll::Ready(Some(item));
        }
        if self.closed.load(Ordering::Acquire) {
            return Poll::Ready(None);
        }
        if self.alive.swap(false, Ordering::Relaxed) {
            return Poll::Ready(Some(Inbound::Alive));
        }
        match &mut q.waiting {
            Some(w) if w.will_wake(cx.waker()) => {}
            slot => *slot = Some(cx.waker().clone()),
        }
        Poll::Pending
    }

    /// The next entry, or `None` once closed and empty. Cancel-safe.
    pub async fn next(&self) -> Option<Inbound> {
        std::future::poll_fn(|cx| self.poll_next(cx)).await
    }
}

impl AsRef<Inbox> for Inbox {
    fn as_ref(&self) -> &Inbox {
        self
    }
}

/// The reading half of a socket's session: the input inside `H` (the socket's wire, which
/// holds it so that a socket's mapping is one allocation).
pub struct SioTransport<H>(pub std::sync::Arc<H>);

impl<H: AsRef<Inbox> + Send + Sync + 'static> Transport for SioTransport<H> {
    fn recv(&mut self) -> impl Future<Output = Option<Inbound>> + Send {
        // A poll of the queue, no future of its own: this is what the session's `select!` keeps.
        let inbox = (*self.0).as_ref();
        std::future::poll_fn(move |cx| inbox.poll_next(cx))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn bounded_then_closed() {
        let inbox = Inbox::new(2);
        assert!(inbox.push(Inbound::Alive));
        assert!(inbox.push(Inbound::Alive));
        assert!(!inbox.push(Inbound::Alive), "full");
        inbox.close();
        assert!(!inbox.push(Inbound::Alive), "closed");
        assert!(matches!(inbox.next().await, Some(Inbound::Alive)));
        assert!(matches!(inbox.next().await, Some(Inbound::Alive)));
        assert!(inbox.next().await.is_none());
    }

    #[tokio::test]
    async fn proof_of_life_is_a_flag_not_an_entry() {
        let inbox = Inbox::new(1);
        inbox.alive();
        inbox.alive();
        assert!(inbox.push(Inbound::Alive), "the bound is the events'");
        assert!(matches!(inbox.next().await, Some(Inbound::Alive)));
        assert!(
            matches!(inbox.next().await, Some(Inbound::Alive)),
            "the flag, once"
        );
        let waker = std::task::Waker::noop();
        let mut cx = Context::from_waker(waker);
        assert!(
            inbox.poll_next(&mut cx).is_pending(),
            "taken once for two calls"
        );
        let idle = Inbox::new(4);
        idle.alive();
        assert!(matches!(idle.next().await, Some(Inbound::Alive)));
        assert_eq!(idle.queue.lock().items.capacity(), 0, "nothing allocated");
        idle.close();
        idle.alive();
        assert!(idle.next().await.is_none(), "nothing after the end");
    }

    /// Counts its wake-ups.
    struct Count(std::sync::atomic::AtomicUsize);
    impl std::task::Wake for Count {
        fn wake(self: std::sync::Arc<Self>) {
            self.0.fetch_add(1, Ordering::SeqCst);
        }
    }

    #[test]
    fn a_waiting_session_is_woken_by_an_entry_then_by_the_end() {
        let count = std::sync::Arc::new(Count(0.into()));
        let waker = Waker::from(count.clone());
        let mut cx = Context::from_waker(&waker);
        let woken = || count.0.load(Ordering::SeqCst);
        let inbox = Inbox::new(4);
        assert!(inbox.poll_next(&mut cx).is_pending());
        assert!(
            inbox.poll_next(&mut cx).is_pending(),
            "waits on, one waker kept"
        );
        assert_eq!(woken(), 0);
        assert!(inbox.push(Inbound::Alive));
        assert_eq!(woken(), 1);
        assert!(inbox.push(Inbound::Alive));
        assert_eq!(woken(), 1, "nobody waits: no wake-up");
        assert!(matches!(
            inbox.poll_next(&mut cx),
            Poll::Ready(Some(Inbound::Alive))
        ));
        assert!(matches!(
            inbox.poll_next(&mut cx),
            Poll::Ready(Some(Inbound::Alive))
        ));
        assert!(inbox.poll_next(&mut cx).is_pending());
        inbox.close();
        assert_eq!(woken(), 2);
        assert!(matches!(inbox.poll_next(&mut cx), Poll::Ready(None)));
    }
}

#[cfg(test)]
mod size_tests {
    use super::*;
    use crate::returned_size;
    use switchboard_core::session::run_session;

    /// What every idle Socket.IO connection's core session holds: 816 bytes while the session
    /// waited on the input with a `Notified`, 704 since it polls the queue, 664 then 624 since
    /// the session's heartbeat and deadlines take less room, 528 since it holds its ids, node
    /// and `Conn` once, 400 since the core session's `serve` keeps its arguments once and its
    /// instants take 8 bytes each (its task, the future plus its permit plus 104 bytes in
    /// tokio's steps of 128: 1,024, then 896, 768, 640, now 512; massif, release build).
    #[test]
    #[allow(unreachable_code)]
    fn the_session_future_stays_small() {
        let session = returned_size(|| {
            run_session(
                unreachable!(),
                unreachable!() as SioTransport<Inbox>,
                unreachable!(),
                None,
            )
        });
        println!("run_session::<SioTransport>: {session} bytes");
        assert!(session <= 400, "grew to {session} bytes");
    }
}
