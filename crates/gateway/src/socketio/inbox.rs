//! A socket's input: the client's events (as native frames) and proof of life, waiting for the
//! session. A queue that allocates nothing until used (an idle socket holds an empty one),
//! bounded in entries, closed by the event handler when the socket ends.

use parking_lot::Mutex;
use std::collections::VecDeque;
use std::sync::atomic::{AtomicBool, Ordering};
use switchboard_core::transport::{Inbound, Transport};
use tokio::sync::Notify;

/// Entries kept in the queue's spare capacity once it is empty again; more is released.
const KEEP: usize = 8;

/// The input of one socket's session.
pub struct Inbox {
    queue: Mutex<VecDeque<Inbound>>,
    cap: usize,
    closed: AtomicBool,
    ready: Notify,
}

impl Inbox {
    /// An empty input taking at most `cap` entries at once.
    pub fn new(cap: usize) -> Inbox {
        Inbox {
            queue: Mutex::new(VecDeque::new()),
            cap: cap.max(1),
            closed: AtomicBool::new(false),
            ready: Notify::new(),
        }
    }

    /// Queues `item`; `false` when the queue is full or closed.
    pub fn push(&self, item: Inbound) -> bool {
        if self.closed.load(Ordering::Acquire) {
            return false;
        }
        {
            let mut q = self.queue.lock();
            if q.len() >= self.cap {
                return false;
            }
            q.push_back(item);
        }
        self.ready.notify_one();
        true
    }

    /// Ends the input: the session reads what is queued, then the end.
    pub fn close(&self) {
        self.closed.store(true, Ordering::Release);
        self.ready.notify_one();
    }

    /// The next entry, or `None` once closed and empty. Cancel-safe.
    pub async fn next(&self) -> Option<Inbound> {
        loop {
            let ready = self.ready.notified();
            tokio::pin!(ready);
            ready.as_mut().enable();
            {
                let mut q = self.queue.lock();
                if let Some(item) = q.pop_front() {
                    if q.is_empty() && q.capacity() > KEEP {
                        q.shrink_to(KEEP);
                    }
                    return Some(item);
                }
            }
            if self.closed.load(Ordering::Acquire) {
                return None;
            }
            ready.await;
        }
    }
}

/// The reading half of a socket's session.
pub struct SioTransport(pub std::sync::Arc<Inbox>);

impl Transport for SioTransport {
    async fn recv(&mut self) -> Option<Inbound> {
        self.0.next().await
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
}

#[cfg(test)]
mod size_tests {
    use super::*;
    use switchboard_core::session::run_session;

    /// What every idle Socket.IO connection's core session holds (its task holds it boxed,
    /// see `serve`, not twice): the same bound as the native WebSocket's.
    #[test]
    #[allow(unreachable_code)]
    fn the_session_future_stays_small() {
        fn returned_size<F: FnOnce() -> Fut, Fut>(_: F) -> usize {
            std::mem::size_of::<Fut>()
        }
        let session = returned_size(|| {
            run_session(
                unreachable!(),
                unreachable!() as SioTransport,
                unreachable!(),
                None,
            )
        });
        println!("run_session::<SioTransport>: {session} bytes");
        assert!(session <= 900, "grew to {session} bytes");
    }
}
