//! Unit tests of the connection: direct writes, hand-over, partial writes, the bound.

use super::*;
use crate::transport::Progress;
use std::io;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::task::Context;

/// A wire that takes `room` bytes, then would block; records what it wrote, and how many
/// calls wrote it. With `per_call` set, it takes at most that many frames per call (as a
/// socket wire's `writev` does).
#[derive(Default)]
pub(super) struct Pipe {
    pub(super) room: AtomicUsize,
    pub(super) written: Mutex<Vec<u8>>,
    pub(super) calls: AtomicUsize,
    pub(super) per_call: AtomicUsize,
}

impl Wire for Arc<Pipe> {
    fn try_write(
        &self,
        frames: &mut dyn Iterator<Item = &Out>,
        offset: usize,
    ) -> io::Result<Progress> {
        let mut p = Progress {
            frames: 0,
            offset,
            blocked: false,
        };
        self.calls.fetch_add(1, Ordering::SeqCst);
        let take = match self.per_call.load(Ordering::SeqCst) {
            0 => usize::MAX,
            n => n,
        };
        for frame in frames.take(take) {
            let bytes: Vec<u8> = match frame {
                Out::Text(b) => b.to_vec(),
                Out::Ping => b"PING".to_vec(),
                Out::Pong(_) => b"PONG".to_vec(),
                Out::Close(_) => b"CLOSE".to_vec(),
            };
            let left = &bytes[p.offset..];
            let n = left.len().min(self.room.load(Ordering::SeqCst));
            self.room.fetch_sub(n, Ordering::SeqCst);
            self.written.lock().extend_from_slice(&left[..n]);
            if n < left.len() {
                p.offset += n;
                p.blocked = true;
                return Ok(p);
            }
            p.frames += 1;
            p.offset = 0;
        }
        Ok(p)
    }
    fn poll_writable(&self, _: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }
    fn shutdown(&self) {}
}

pub(super) fn delivery(conv: &Conv, seq: u64) -> Arc<Delivery> {
    let message = crate::delivery::test_message(conv, seq);
    Arc::new(Delivery {
        conv: conv.clone(),
        frame: Bytes::from(format!("<{seq}>")),
        message,
    })
}

/// A connection over a pipe with `room` bytes of room, cut past `max_queued` frames.
pub(super) fn open(room: usize, max_queued: usize) -> (Arc<Pipe>, Arc<Conn>) {
    open_bytes(room, max_queued, usize::MAX)
}

/// The same, also cut past `max_bytes` bytes waiting.
pub(super) fn open_bytes(
    room: usize,
    max_queued: usize,
    max_bytes: usize,
) -> (Arc<Pipe>, Arc<Conn>) {
    let pipe = Arc::new(Pipe::default());
    pipe.room.store(room, Ordering::SeqCst);
    let conn = Conn::new(Arc::new(pipe.clone()), max_queued, max_bytes);
    (pipe, conn)
}

pub(super) fn written(p: &Pipe) -> String {
    String::from_utf8(p.written.lock().clone()).unwrap()
}

#[test]
fn next_in_order_is_written_at_once_others_go_to_the_session() {
    let (pipe, conn) = open(1 << 20, 8);
    let c = Conv::room("r");
    conn.subscribe_with(&[(c.clone(), 3)], Bytes::from_static(b"[sub]"))
        .unwrap();
    assert!(conn.offer(&delivery(&c, 4)));
    assert!(!conn.offer(&delivery(&c, 4)), "a repeat is dropped");
    assert!(conn.offer(&delivery(&c, 6)), "a gap is handed over");
    assert_eq!(written(&pipe), "[sub]<4>");
    // While something is handed over, even the next seq waits behind it.
    assert!(conn.offer(&delivery(&c, 5)));
    assert_eq!(written(&pipe), "[sub]<4>");
    assert!(matches!(conn.next_handed_over(), Some(Outbound::Message(d)) if d.message.seq == 6));
    assert_eq!(
        conn.write_message(&c, 6, &Bytes::from_static(b"<6>"), false, How::Now),
        Ok(Sent::Gap(4))
    );
    assert_eq!(
        conn.write_message(&c, 5, &Bytes::from_static(b"<5>"), true, How::Now),
        Ok(Sent::Written)
    );
    assert_eq!(
        conn.write_message(&c, 6, &Bytes::from_static(b"<6>"), false, How::Now),
        Ok(Sent::Written)
    );
    assert!(matches!(conn.next_handed_over(), Some(Outbound::Message(d)) if d.message.seq == 5));
    assert_eq!(
        conn.write_message(&c, 5, &Bytes::from_static(b"<5>"), false, How::Now),
        Ok(Sent::Duplicate)
    );
    assert!(conn.offer(&delivery(&c, 7)), "back to direct writes");
    assert_eq!(written(&pipe), "[sub]<4><5><6><7>");
    // While held (a publish is being answered), even the next seq goes to the session.
    let held = conn.hold();
    assert!(conn.offer(&delivery(&c, 8)));
    assert_eq!(written(&pipe), "[sub]<4><5><6><7>");
    drop(held);
    assert!(matches!(conn.next_handed_over(), Some(Outbound::Message(d)) if d.message.seq == 8));
    // Unsubscribed conversations are left to the session (it may be setting one up).
    let other = Conv::room("o");
    assert!(conn.offer(&delivery(&other, 1)));
    assert_eq!(
        conn.write_message(&other, 1, &Bytes::from_static(b"x"), true, How::Now),
        Ok(Sent::NotSubscribed)
    );
}

#[test]
fn a_partial_write_keeps_the_order_and_a_full_queue_is_a_slow_consumer() {
    let (pipe, conn) = open(5, 3);
    let c = Conv::room("r");
    conn.subscribe_with(&[(c.clone(), 0)], Bytes::from_static(b"[s]"))
        .unwrap();
    assert!(conn.offer(&delivery(&c, 1)), "partly written");
    assert!(conn.offer(&delivery(&c, 2)), "queued behind");
    assert_eq!(conn.backlog(), 2);
    assert!(conn.backlog_moved_at().is_some());
    assert!(conn.offer(&delivery(&c, 3)));
    assert!(!conn.offer(&delivery(&c, 4)), "over the bound");
    assert_eq!(conn.reason(), Some(DisconnectReason::SlowConsumer));
    assert_eq!(
        conn.last_seq(&c),
        Some(3),
        "a refused message is not counted as sent"
    );
    pipe.room.store(1 << 20, Ordering::SeqCst);
    assert!(
        !conn.offer(&delivery(&c, 4)),
        "a cut connection takes nothing more"
    );
    assert_eq!(conn.flush(), Ok(true));
    assert_eq!(written(&pipe), "[s]<1><2><3>");
    assert_eq!(conn.backlog_moved_at(), None);
}

#[test]
fn a_closed_connection_takes_nothing_more() {
    let (pipe, conn) = open(1 << 20, 8);
    let c = Conv::room("r");
    conn.subscribe_with(&[(c.clone(), 0)], Bytes::from_static(b""))
        .unwrap();
    conn.close();
    assert!(!conn.offer(&delivery(&c, 1)));
    assert_eq!(written(&pipe), "");
}

/// Polls `f` once, with a waker that does nothing.
pub(super) fn ready_now(f: impl Future<Output = ()>) -> bool {
    let mut cx = Context::from_waker(std::task::Waker::noop());
    std::pin::pin!(f).poll(&mut cx).is_ready()
}

#[test]
fn a_pending_subscription_hands_everything_over_until_its_reply() {
    let (pipe, conn) = open(1 << 20, 8);
    let c = Conv::room("r");
    conn.add_pending(&c);
    assert_eq!(conn.subscription_count(), 1, "a pending one counts");
    assert_eq!(conn.last_seq(&c), None, "but has no position yet");
    assert!(conn.offer(&delivery(&c, 1)), "handed over, not written");
    assert_eq!(written(&pipe), "");
    assert_eq!(
        conn.write_message(&c, 1, &Bytes::from_static(b"<1>"), true, How::Now),
        Ok(Sent::NotSubscribed),
        "the session cannot write it before the reply either"
    );
    conn.subscribe_with(&[(c.clone(), 0)], Bytes::from_static(b"[sub]"))
        .unwrap();
    assert!(matches!(conn.next_handed_over(), Some(Outbound::Message(d)) if d.message.seq == 1));
    assert_eq!(
        conn.write_message(&c, 1, &Bytes::from_static(b"<1>"), false, How::Now),
        Ok(Sent::Written)
    );
    assert_eq!(
        written(&pipe),
        "[sub]<1>",
        "the reply first, then the message"
    );
    let other = Conv::room("o");
    conn.add_pending(&other);
    assert_eq!(
        conn.take_subs(),
        vec![other, c],
        "teardown sees pending subscriptions too"
    );
}

#[test]
fn attention_stays_ready_while_work_waits_and_a_hold_ends_with_its_guard() {
    let (pipe, conn) = open(1 << 20, 8);
    let c = Conv::room("r");
    conn.subscribe_with(&[(c.clone(), 0)], Bytes::new())
        .unwrap();
    assert!(!ready_now(conn.attention()), "nothing to do");
    assert!(conn.offer(&delivery(&c, 2)), "a gap goes to the session");
    assert!(conn.offer(&delivery(&c, 3)));
    assert!(ready_now(conn.attention()));
    assert!(conn.next_handed_over().is_some());
    assert!(
        ready_now(conn.attention()),
        "one more waits: ready again without a new hand-over"
    );
    assert!(conn.next_handed_over().is_some());
    assert!(!ready_now(conn.attention()));
    // A hold lasts as long as its guard, whatever path drops it.
    let c1 = Conv::room("s");
    conn.subscribe_with(&[(c1.clone(), 0)], Bytes::new())
        .unwrap();
    let held = conn.hold();
    assert!(conn.offer(&delivery(&c1, 1)));
    assert_eq!(written(&pipe), "", "held back");
    drop(held);
    assert!(matches!(conn.next_handed_over(), Some(Outbound::Message(d)) if d.message.seq == 1));
    assert_eq!(
        conn.write_message(&c1, 1, &Bytes::from_static(b"<1>"), false, How::Now),
        Ok(Sent::Written)
    );
    assert!(conn.offer(&delivery(&c1, 2)));
    assert_eq!(
        written(&pipe),
        "<1><2>",
        "written directly once the hold ended"
    );
}

#[test]
fn the_queue_is_bounded_in_bytes_too() {
    // Room for 3 bytes in the socket, 12 bytes of queue: frames are 3 bytes ("<n>").
    let (pipe, conn) = open_bytes(3, 100, 12);
    let c = Conv::room("r");
    conn.subscribe_with(&[(c.clone(), 0)], Bytes::new())
        .unwrap();
    assert!(conn.offer(&delivery(&c, 1)), "written");
    for seq in 2..=5 {
        assert!(conn.offer(&delivery(&c, seq)), "{seq} waits");
    }
    assert!(!conn.backlog_over(4, 12));
    assert!(conn.backlog_over(4, 11), "12 bytes wait");
    assert!(!conn.offer(&delivery(&c, 6)), "past 12 bytes");
    assert_eq!(conn.reason(), Some(DisconnectReason::SlowConsumer));
    // What leaves the queue leaves its count.
    pipe.room.store(1 << 20, Ordering::SeqCst);
    assert_eq!(conn.flush(), Ok(true));
    assert!(!conn.backlog_over(0, 0));
    assert_eq!(written(&pipe), "<1><2><3><4><5>");
}

#[test]
fn an_answer_is_written_now_with_the_next_own_copy_unless_something_waits_before_it() {
    let (pipe, conn) = open(1 << 20, 8);
    let c = Conv::room("r");
    conn.subscribe_with(&[(c.clone(), 3)], Bytes::from_static(b"[sub]"))
        .unwrap();
    let held = conn.hold();
    let copy = delivery(&c, 4).message.clone();
    let gap = delivery(&c, 9).message.clone();
    assert_eq!(
        conn.answer(
            &[(Bytes::from_static(b"[ok]"), vec![copy.clone(), gap])],
            How::Now
        ),
        Ok(true)
    );
    let out = written(&pipe);
    assert!(out.starts_with("[sub][ok]"), "{out}");
    assert!(
        out.contains("\"m4\""),
        "the next own copy follows the answer: {out}"
    );
    assert!(
        !out.contains("\"m9\""),
        "one past a gap is left to the fan-out: {out}"
    );
    drop(held);
    assert!(
        !conn.offer(&delivery(&c, 4)),
        "the fan-out finds the copy sent"
    );

    // Work handed over waits before it: left to the session.
    let held = conn.hold();
    assert!(conn.offer(&delivery(&c, 5)));
    let before = written(&pipe);
    assert_eq!(
        conn.answer(&[(Bytes::from_static(b"[ok2]"), vec![])], How::Now),
        Ok(false)
    );
    assert_eq!(written(&pipe), before);
    drop(held);
    assert!(conn.next_handed_over().is_some());

    // Unsent bytes wait before it: left to the session too.
    let (pipe, conn) = open(3, 8);
    conn.write(Out::Text(Bytes::from_static(b"[long]")))
        .unwrap();
    assert_eq!(
        conn.answer(&[(Bytes::from_static(b"[ok]"), vec![])], How::Now),
        Ok(false)
    );
    assert_eq!(written(&pipe), "[lo");

    // A partial write keeps the rest, in order, for the session's flush.
    let (pipe, conn) = open(6, 8);
    assert_eq!(
        conn.answer(&[(Bytes::from_static(b"[answer]"), vec![])], How::Now),
        Ok(true)
    );
    assert_eq!(written(&pipe), "[answe");
    assert_eq!(conn.backlog(), 1);
}

#[test]
fn deliveries_wait_until_every_hold_is_gone() {
    let (pipe, conn) = open(1 << 20, 8);
    let c = Conv::room("r");
    conn.subscribe_with(&[(c.clone(), 0)], Bytes::from_static(b"[sub]"))
        .unwrap();
    let (first, second) = (conn.hold(), conn.hold());
    drop(first);
    assert!(conn.offer(&delivery(&c, 1)));
    assert_eq!(written(&pipe), "[sub]", "still held by the second");
    drop(second);
    assert!(matches!(conn.next_handed_over(), Some(Outbound::Message(d)) if d.message.seq == 1));
    assert_eq!(
        conn.write_message(&c, 1, &Bytes::from_static(b"<1>"), false, How::Now),
        Ok(Sent::Written)
    );
    assert!(conn.offer(&delivery(&c, 2)));
    assert_eq!(
        written(&pipe),
        "[sub]<1><2>",
        "no hold left: written at once"
    );
}
