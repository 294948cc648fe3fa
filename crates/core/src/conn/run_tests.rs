//! Unit tests of [`Conn::offer_run`]: a conversation's new messages in one write, and the same
//! rules as one message at a time (order, repeats, gaps, holds, the bound).

use super::tests::{Pipe, delivery, open, open_bytes, ready_now, written};
use super::*;
use std::sync::atomic::Ordering;

/// Subscribes `conn` to room `r` with the client at `last`; returns the conv and the wire's
/// calls so far.
fn subscribed(pipe: &Pipe, conn: &Conn, last: u64) -> (Conv, usize) {
    let c = Conv::room("r");
    conn.subscribe_with(&[(c.clone(), last)], Bytes::from_static(b"[sub]"))
        .unwrap();
    (c, pipe.calls.load(Ordering::SeqCst))
}

fn run(c: &Conv, seqs: impl IntoIterator<Item = u64>) -> Vec<Arc<Delivery>> {
    seqs.into_iter().map(|s| delivery(c, s)).collect()
}

fn handed_over(conn: &Conn) -> Vec<u64> {
    std::iter::from_fn(|| conn.next_handed_over())
        .map(|o| match o {
            Outbound::Message(d) => d.message.seq,
            Outbound::Revoke(_) => 0,
        })
        .collect()
}

#[test]
fn a_run_that_is_next_leaves_in_one_write() {
    let (pipe, conn) = open(1 << 20, 8);
    let (c, calls) = subscribed(&pipe, &conn, 3);
    assert_eq!(conn.offer_run(&run(&c, 4..=7)), 4);
    assert_eq!(written(&pipe), "[sub]<4><5><6><7>");
    assert_eq!(pipe.calls.load(Ordering::SeqCst) - calls, 1, "one write");
    assert_eq!(conn.last_seq(&c), Some(7));
    assert!(handed_over(&conn).is_empty());
}

#[test]
fn a_run_skips_what_the_client_has_and_hands_over_from_a_gap() {
    let (pipe, conn) = open(1 << 20, 8);
    let (c, _) = subscribed(&pipe, &conn, 5);
    assert_eq!(conn.offer_run(&run(&c, [4, 5, 6, 7, 9, 10])), 4);
    assert_eq!(written(&pipe), "[sub]<6><7>");
    assert_eq!(handed_over(&conn), [9, 10], "from the gap on, in order");
    // A run that starts past the next seq is handed over whole.
    assert_eq!(conn.offer_run(&run(&c, [12, 13])), 2);
    assert_eq!(handed_over(&conn), [12, 13]);
    assert_eq!(written(&pipe), "[sub]<6><7>");
}

#[test]
fn a_held_or_pending_connection_gets_the_run_handed_over() {
    let (pipe, conn) = open(1 << 20, 8);
    let (c, _) = subscribed(&pipe, &conn, 0);
    let held = conn.hold();
    assert_eq!(conn.offer_run(&run(&c, 1..=3)), 3);
    assert_eq!(written(&pipe), "[sub]", "nothing overtakes the answer");
    assert_eq!(handed_over(&conn), [1, 2, 3]);
    drop(held);
    let p = Conv::room("p");
    conn.add_pending(&p);
    assert_eq!(conn.offer_run(&run(&p, 1..=2)), 2);
    assert_eq!(handed_over(&conn), [1, 2]);
    assert_eq!(written(&pipe), "[sub]");
}

#[test]
fn a_wire_that_takes_few_frames_per_call_gets_the_whole_run() {
    let (pipe, conn) = open(1 << 20, 8);
    let (c, calls) = subscribed(&pipe, &conn, 0);
    pipe.per_call.store(2, Ordering::SeqCst);
    assert_eq!(conn.offer_run(&run(&c, 1..=5)), 5);
    assert_eq!(written(&pipe), "[sub]<1><2><3><4><5>");
    assert_eq!(pipe.calls.load(Ordering::SeqCst) - calls, 3);
    assert_eq!(conn.backlog(), 0);
    assert!(
        !ready_now(conn.attention()),
        "nothing was left to the session"
    );
}

#[test]
fn a_run_the_socket_does_not_take_stays_within_the_bound() {
    // The socket takes 7 bytes: <1><2> and one byte of <3>.
    let (pipe, conn) = open(1 << 20, 3);
    let (c, _) = subscribed(&pipe, &conn, 0);
    pipe.room.store(7, Ordering::SeqCst);
    // Three frames may wait; the run's first five are written or wait, the sixth is one too
    // many: a slow consumer.
    assert_eq!(conn.offer_run(&run(&c, 1..=6)), 5);
    assert_eq!(written(&pipe), "[sub]<1><2><");
    assert_eq!(conn.backlog(), 3, "<3> (partly sent), <4>, <5>");
    assert_eq!(conn.reason(), Some(DisconnectReason::SlowConsumer));

    // The bytes bound: 7 bytes may wait, so two 3-byte frames go in the run's write.
    let (pipe, conn) = open_bytes(1 << 20, 100, 7);
    let (c, calls) = subscribed(&pipe, &conn, 0);
    pipe.room.store(0, Ordering::SeqCst);
    assert_eq!(conn.offer_run(&run(&c, 1..=2)), 2);
    assert_eq!(pipe.calls.load(Ordering::SeqCst) - calls, 1);
    assert_eq!(conn.backlog(), 2);
    assert!(conn.reason().is_none());
}

#[test]
fn a_run_waits_behind_the_backlog_and_leaves_in_order() {
    let (pipe, conn) = open(1 << 20, 16);
    let (c, _) = subscribed(&pipe, &conn, 0);
    pipe.room.store(4, Ordering::SeqCst);
    assert_eq!(conn.offer_run(&run(&c, 1..=3)), 3);
    assert_eq!(conn.offer_run(&run(&c, 4..=5)), 2, "behind the backlog");
    pipe.room.store(1 << 20, Ordering::SeqCst);
    assert_eq!(conn.flush(), Ok(true));
    assert_eq!(written(&pipe), "[sub]<1><2><3><4><5>");
}
