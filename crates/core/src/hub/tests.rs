//! Unit tests of the hub: a user's keys, and a commit's messages gathered by conversation so
//! that each subscriber gets a conversation's run in one write.

use super::runs::RUN_LOOKBACK;
use super::*;

#[test]
fn a_users_keys_hold_one_inline_and_go_back_to_one() {
    assert_eq!(
        std::mem::size_of::<Keys>(),
        24,
        "a Vec's three words, no more"
    );
    let mut keys = Keys::One(1);
    assert!(!keys.remove(2), "an unknown key changes nothing");
    keys.push(2);
    keys.push(3);
    assert_eq!(keys.iter().copied().collect::<Vec<_>>(), [1, 2, 3]);
    assert!(!keys.remove(2));
    assert!(!keys.remove(1));
    assert!(
        matches!(keys, Keys::One(3)),
        "the last one is held inline again"
    );
    assert!(keys.remove(3), "none is left");
}

/// A wire that records each call's frames.
#[derive(Default)]
struct Calls(parking_lot::Mutex<Vec<Vec<bytes::Bytes>>>);

impl crate::transport::Wire for Arc<Calls> {
    fn try_write(
        &self,
        frames: &mut dyn Iterator<Item = &crate::transport::Out>,
        _: usize,
    ) -> std::io::Result<crate::transport::Progress> {
        let call: Vec<bytes::Bytes> = frames
            .map(|f| match f {
                crate::transport::Out::Text(b) => b.clone(),
                _ => bytes::Bytes::new(),
            })
            .collect();
        let frames = call.len();
        self.0.lock().push(call);
        Ok(crate::transport::Progress {
            frames,
            offset: 0,
            blocked: false,
        })
    }
    fn poll_writable(
        &self,
        _: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        std::task::Poll::Ready(Ok(()))
    }
    fn shutdown(&self) {}
}

use crate::delivery::test_message as message;

/// A connection subscribed to `convs` (the client at seq 0 of each); its wire's calls.
fn subscriber(hub: &Hub, convs: &[&Conv]) -> Arc<Calls> {
    let calls = Arc::new(Calls::default());
    let conn = Conn::new(Arc::new(calls.clone()), 64, 1 << 20);
    let key = hub.open_connection(conn.clone());
    let mut subs = Vec::new();
    for conv in convs {
        let (name, _) = hub.subscribe(conv, key, conn.clone());
        subs.push((name, 0));
    }
    conn.subscribe_with(&subs, bytes::Bytes::new()).unwrap();
    calls.0.lock().clear();
    calls
}

#[test]
fn a_commits_messages_reach_each_subscriber_one_write_per_conversation() {
    let hub = Hub::new(Arc::new(Metrics::new()), 0);
    let (a, b) = (Conv::room("a"), Conv::room("b"));
    let both = subscriber(&hub, &[&a, &b]);
    let only_a = subscriber(&hub, &[&a]);
    // Interleaved, as publishers' messages are in one commit.
    let commit = [(&a, 1), (&b, 1), (&a, 2), (&b, 2), (&a, 3)].map(|(c, s)| message(c, s));
    let frame = |i: usize| commit[i].encode_frame();
    hub.deliver_all(commit.to_vec());
    assert_eq!(
        *both.0.lock(),
        [vec![frame(0), frame(2), frame(4)], vec![frame(1), frame(3)]],
        "a's run in one write, then b's, each in seq order"
    );
    assert_eq!(*only_a.0.lock(), [vec![frame(0), frame(2), frame(4)]]);
    assert_eq!(hub.metrics.messages_delivered.get(), 8);
    assert_eq!(hub.metrics.bus_messages_received.get(), 5);
}

#[test]
fn a_conversation_seen_again_past_the_lookback_keeps_its_order() {
    let hub = Hub::new(Arc::new(Metrics::new()), 0);
    let a = Conv::room("a");
    let others: Vec<Conv> = (0..RUN_LOOKBACK)
        .map(|i| Conv::room(&format!("o{i}")))
        .collect();
    let sub = subscriber(&hub, &[&a]);
    let mut commit = vec![message(&a, 1)];
    commit.extend(others.iter().map(|c| message(c, 1)));
    commit.extend([message(&a, 2), message(&a, 3)]);
    hub.deliver_all(commit);
    let seqs: Vec<Vec<u64>> = sub
        .0
        .lock()
        .iter()
        .map(|call| {
            call.iter()
                .map(|f| {
                    let v: serde_json::Value = serde_json::from_slice(f).unwrap();
                    v["seq"].as_u64().unwrap()
                })
                .collect()
        })
        .collect();
    assert_eq!(seqs, [vec![1], vec![2, 3]], "two runs, in seq order");
}

/// A wire that panics on its first write while `armed`, then records like [`Calls`].
struct PanicsOnce(Arc<std::sync::atomic::AtomicBool>, Arc<Calls>);

impl crate::transport::Wire for PanicsOnce {
    fn try_write(
        &self,
        frames: &mut dyn Iterator<Item = &crate::transport::Out>,
        offset: usize,
    ) -> std::io::Result<crate::transport::Progress> {
        if self.0.swap(false, Ordering::SeqCst) {
            panic!("a wire's bug");
        }
        self.1.try_write(frames, offset)
    }
    fn poll_writable(
        &self,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        self.1.poll_writable(cx)
    }
    fn shutdown(&self) {}
}

#[test]
fn a_panic_offering_to_one_subscriber_does_not_cost_the_others_the_run() {
    let hub = Hub::new(Arc::new(Metrics::new()), 0);
    let a = Conv::room("a");
    let armed = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let wires: Vec<Arc<Calls>> = (0..2)
        .map(|_| {
            let calls = Arc::new(Calls::default());
            let conn = Conn::new(
                Arc::new(PanicsOnce(armed.clone(), calls.clone())),
                64,
                1 << 20,
            );
            let key = hub.open_connection(conn.clone());
            let (name, _) = hub.subscribe(&a, key, conn.clone());
            conn.subscribe_with(&[(name, 0)], bytes::Bytes::new())
                .unwrap();
            calls.0.lock().clear();
            calls
        })
        .collect();
    armed.store(true, Ordering::SeqCst);
    let commit: Vec<Arc<Message>> = (1..=3).map(|s| message(&a, s)).collect();
    let frames: Vec<bytes::Bytes> = commit.iter().map(|m| m.encode_frame()).collect();
    hub.deliver_all(commit);
    let got: Vec<Vec<Vec<bytes::Bytes>>> = wires.iter().map(|w| w.0.lock().clone()).collect();
    assert_eq!(
        got,
        [vec![], vec![frames]],
        "the first subscriber's wire panicked; the second got the whole run"
    );
}
