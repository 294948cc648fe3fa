//! [`Line`] without a session: where each answer is written, in which order, and when the
//! connection's deliveries are let go.

use super::*;
use crate::backend::Receipt;
use crate::transport::{Out, Progress, Wire};
use std::io;
use std::task::Context;

/// A wire that takes everything and records it.
#[derive(Default)]
struct Recorder(Mutex<Vec<u8>>);

impl Wire for Arc<Recorder> {
    fn try_write(
        &self,
        frames: &mut dyn Iterator<Item = &Out>,
        _offset: usize,
    ) -> io::Result<Progress> {
        let mut n = 0;
        for f in frames {
            if let Out::Text(b) = f {
                self.0.lock().extend_from_slice(b);
                self.0.lock().push(b'\n');
            }
            n += 1;
        }
        Ok(Progress {
            frames: n,
            offset: 0,
            blocked: false,
        })
    }
    fn poll_writable(&self, _: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }
    fn shutdown(&self) {}
}

impl Recorder {
    /// The `id`s of the answers written so far, in order.
    fn answered(&self) -> Vec<u64> {
        String::from_utf8(self.0.lock().clone())
            .unwrap()
            .lines()
            .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
            .filter_map(|v| v["id"].as_u64())
            .collect()
    }
}

fn published(seq: u64) -> Result<Published> {
    Ok(Published {
        receipt: Receipt {
            conv: Conv::room("r"),
            seq,
            message_id: format!("m{seq}"),
            ts: 0,
        },
        stored: Vec::new(),
    })
}

fn line() -> (Arc<Recorder>, Arc<Conn>, Arc<Line>) {
    let wire = Arc::new(Recorder::default());
    let conn = Conn::new(Arc::new(wire.clone()), 64, 1 << 20);
    let line = Line::new(conn.clone(), Arc::new(Metrics::new()));
    (wire, conn, line)
}

fn push(line: &Line, id: u64) -> u64 {
    line.push(Some(serde_json::json!(id)), [Some(Conv::room("r")), None])
}

#[test]
fn the_last_outcome_in_writes_every_ready_answer_in_order_from_where_it_completes() {
    let (wire, _conn, line) = line();
    let (a, b, c) = (push(&line, 1), push(&line, 2), push(&line, 3));
    line.complete(b, published(2));
    line.complete(a, published(1));
    assert_eq!(
        wire.answered(),
        Vec::<u64>::new(),
        "3 is still out: left to the session"
    );
    line.complete(c, published(3));
    assert_eq!(
        wire.answered(),
        [1, 2, 3],
        "all in: written where the last completed"
    );
    assert!(line.is_empty());
}

#[test]
fn the_session_writes_what_is_ready_before_the_rest_is_in() {
    let (wire, conn, line) = line();
    let (a, b) = (push(&line, 1), push(&line, 2));
    line.complete(a, Err(Error::bad_request("no")));
    line.write_ready().unwrap();
    conn.flush().unwrap();
    assert_eq!(wire.answered(), [1]);
    assert_eq!(line.len(), 1);
    line.complete(b, published(2));
    assert_eq!(wire.answered(), [1, 2]);
}

#[test]
fn deliveries_are_held_while_publishes_are_in_line() {
    let (wire, conn, line) = line();
    let r = Conv::room("r");
    conn.subscribe_with(&[(r.clone(), 0)], Bytes::from_static(b"{}"))
        .unwrap();
    let a = push(&line, 1);
    let message = crate::delivery::test_message(&r, 1);
    let d = Arc::new(crate::delivery::Delivery {
        conv: r.clone(),
        frame: message.encode_frame(),
        message,
    });
    assert!(
        conn.offer(&d),
        "taken, for the session: the answer comes first"
    );
    line.complete(a, published(1));
    assert_eq!(
        wire.answered(),
        Vec::<u64>::new(),
        "handed-over work waits before it"
    );
    line.write_ready().unwrap();
    conn.flush().unwrap();
    assert_eq!(wire.answered(), [1]);
    assert!(line.is_empty());
}

#[test]
fn an_outcome_for_a_gone_publish_or_a_closed_connection_writes_nothing() {
    let (wire, conn, line) = line();
    let a = push(&line, 1);
    conn.kill(switchboard_proto::DisconnectReason::Shutdown);
    line.complete(a, published(1));
    line.complete(99, published(2));
    assert_eq!(wire.answered(), Vec::<u64>::new());
}

#[test]
fn a_completion_dropped_without_an_outcome_answers_with_an_error() {
    // A backend that loses an append (its writer stopped, or a job queued behind its close)
    // drops the completion without calling it: the publish is still answered, and the line
    // empties, or the session would wait for it forever before any other reply.
    let (wire, _conn, line) = line();
    let (a, b) = (push(&line, 1), push(&line, 2));
    let first = completion(line.clone(), a);
    drop(completion(line.clone(), b));
    first(published(1));
    assert_eq!(wire.answered(), [1, 2]);
    assert!(
        String::from_utf8(wire.0.lock().clone())
            .unwrap()
            .contains("\"unavailable\"")
    );
    assert!(line.is_empty(), "nothing left in line");
}
