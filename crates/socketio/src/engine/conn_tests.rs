//! Tests of the session's shared state: the writer's wake-ups.

use super::*;
use std::sync::atomic::{AtomicUsize, Ordering};

/// Counts its wake-ups.
struct Count(AtomicUsize);
impl std::task::Wake for Count {
    fn wake(self: Arc<Self>) {
        self.0.fetch_add(1, Ordering::SeqCst);
    }
}

/// The writer's wait: a wake-up is kept for the next wait when nobody waits (as
/// `Notify::notify_one`'s permit is), taken once, and a waiting writer is woken by a queued
/// frame and by the close.
#[tokio::test]
async fn the_writer_is_woken_once_per_wake_up_and_none_is_lost() {
    let (_io, shared) = crate::engine::test_session::session(Transport::Polling);
    let count = Arc::new(Count(AtomicUsize::new(0)));
    let waker = Waker::from(count.clone());
    let mut cx = Context::from_waker(&waker);
    let woken = || count.0.load(Ordering::SeqCst);

    shared.wake_writer();
    shared.wake_writer();
    assert!(
        shared.poll_writer(&mut cx).is_ready(),
        "kept for the next wait"
    );
    assert!(
        shared.poll_writer(&mut cx).is_pending(),
        "taken once for two"
    );
    assert!(shared.poll_writer(&mut cx).is_pending(), "waits on");
    assert_eq!(woken(), 0);

    shared.push(Frame::Text(Bytes::from_static(b"4x"))).unwrap();
    assert_eq!(woken(), 1, "a queued frame wakes the waiting writer");
    shared.push(Frame::Text(Bytes::from_static(b"4y"))).unwrap();
    assert_eq!(woken(), 1, "nobody waits: nobody is woken");
    assert!(shared.poll_writer(&mut cx).is_ready());
    assert!(shared.poll_writer(&mut cx).is_pending());

    shared.close(DisconnectReason::ServerClose);
    assert_eq!(woken(), 2, "the close wakes it");
    assert!(shared.poll_writer(&mut cx).is_ready());
}
