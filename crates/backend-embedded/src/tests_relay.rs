//! Unit tests of the bus relay: panics caught, order kept against control events, small
//! commits delivered on the writer's thread, and what waits for the bus handed over together.

use super::*;
use parking_lot::Mutex;
use switchboard_proto::{Conv, DisconnectReason, MessageBody};

/// Records what it gets; panics on the message with seq `panic_on` (0: never).
#[derive(Default)]
struct Recorder(Mutex<Vec<String>>, u64);

impl BusSink for Recorder {
    fn deliver(&self, m: Arc<Message>) {
        assert_ne!(m.seq, self.1, "a sink bug");
        self.0.lock().push(format!("m{}", m.seq));
    }
    fn control(&self, _: ControlEvent) {
        self.0.lock().push("control".into());
    }
}

fn message(seq: u64) -> Arc<Message> {
    Arc::new(Message {
        conv: Conv::room("r"),
        seq,
        message_id: format!("id{seq}"),
        from: None,
        to: None,
        ts: 0,
        client_msg_id: None,
        body: MessageBody::from_json("{}".into()).expect("json"),
        encoded: Default::default(),
    })
}

/// A sink that panics on one event does not stop the bus: the events behind it go out.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_panicking_sink_does_not_stop_the_bus() {
    let recorder = Arc::new(Recorder(Mutex::new(Vec::new()), 2));
    let relay = Relay::start(recorder.clone());
    let writer = relay.clone();
    std::thread::spawn(move || (1..=3).for_each(|s| writer.deliver(message(s))))
        .join()
        .expect("writer thread");
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while recorder.0.lock().len() < 2 {
        assert!(std::time::Instant::now() < deadline, "the bus stopped");
        tokio::time::sleep(std::time::Duration::from_millis(5)).await;
    }
    assert_eq!(*recorder.0.lock(), vec!["m1".to_string(), "m3".to_string()]);
}

/// Messages queued by the writer thread, then a control event from async code: the sink sees
/// them in that order, even with the queue overflowing (the writer then waits).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn control_events_never_overtake_earlier_messages() {
    let recorder = Arc::new(Recorder::default());
    let relay = Relay::start(recorder.clone());
    let writer = relay.clone();
    let n = (QUEUE * 3) as u64;
    std::thread::spawn(move || (1..=n).for_each(|s| writer.deliver(message(s))))
        .join()
        .expect("writer thread");
    relay
        .control(ControlEvent::DisconnectUser {
            user_id: "u".into(),
            reason: DisconnectReason::Kicked,
        })
        .await;
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while recorder.0.lock().len() < n as usize + 1 {
        assert!(std::time::Instant::now() < deadline, "relay stalled");
        tokio::time::sleep(std::time::Duration::from_millis(5)).await;
    }
    let seen = recorder.0.lock().clone();
    let expected: Vec<String> = (1..=n)
        .map(|s| format!("m{s}"))
        .chain(["control".to_string()])
        .collect();
    assert_eq!(seen, expected);
}

/// Records each message with the thread that delivered it; holds the bus on message
/// `hold` until released.
struct Gate {
    seen: Mutex<Vec<(u64, String)>>,
    hold: u64,
    release: Mutex<Option<std::sync::mpsc::Receiver<()>>>,
    /// The local connections it says each message goes to.
    subscribers: usize,
}

impl BusSink for Gate {
    fn deliver(&self, m: Arc<Message>) {
        let thread = std::thread::current().name().unwrap_or("").to_owned();
        self.seen.lock().push((m.seq, thread));
        if m.seq == self.hold
            && let Some(rx) = self.release.lock().take()
        {
            let _ = rx.recv();
        }
    }
    fn control(&self, _: ControlEvent) {}
    fn subscribers(&self, _: &Conv) -> usize {
        self.subscribers
    }
}

fn gate_of(hold: u64, subscribers: usize) -> (Arc<Gate>, std::sync::mpsc::Sender<()>) {
    let (tx, rx) = std::sync::mpsc::channel();
    let gate = Gate {
        seen: Mutex::new(Vec::new()),
        hold,
        release: Mutex::new(Some(rx)),
        subscribers,
    };
    (Arc::new(gate), tx)
}

fn gate(hold: u64) -> (Arc<Gate>, std::sync::mpsc::Sender<()>) {
    gate_of(hold, 1)
}

/// What counts is the connections a commit goes to: three messages to ten each are
/// delivered here, four go to the bus.
#[test]
fn a_commit_is_small_by_the_connections_it_goes_to() {
    let (gate, _release) = gate_of(0, 10);
    let relay = Relay::start(gate.clone());
    relay.deliver_all((1..=3).map(message).collect());
    assert_eq!(gate.seen.lock().len(), 3, "delivered before it returned");
    relay.deliver_all((4..=7).map(message).collect());
    wait_for(&gate, 7);
    let seen = gate.seen.lock().clone();
    assert!(seen[..3].iter().all(|(_, t)| t != THREAD), "{seen:?}");
    assert!(seen[3..].iter().all(|(_, t)| t == THREAD), "{seen:?}");
}

fn wait_for(gate: &Gate, n: usize) {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while gate.seen.lock().len() < n {
        assert!(std::time::Instant::now() < deadline, "the bus stalled");
        std::thread::sleep(std::time::Duration::from_millis(2));
    }
}

/// A small commit with the bus idle is delivered on the committing thread before
/// `deliver_all` returns; a large one goes to the bus thread.
#[test]
fn a_small_commit_is_delivered_by_the_writer_when_the_bus_is_idle() {
    let (gate, _release) = gate(0);
    let relay = Relay::start(gate.clone());
    std::thread::Builder::new()
        .name("writer".into())
        .spawn({
            let relay = relay.clone();
            move || {
                relay.deliver_all((1..=INLINE_DELIVERIES as u64).map(message).collect());
            }
        })
        .unwrap()
        .join()
        .unwrap();
    let seen = gate.seen.lock().clone();
    assert_eq!(
        seen.len(),
        INLINE_DELIVERIES,
        "delivered before it returned"
    );
    assert!(seen.iter().all(|(_, t)| t == "writer"), "{seen:?}");
    let from = INLINE_DELIVERIES as u64 + 1;
    relay.deliver_all(
        (from..from + INLINE_DELIVERIES as u64 + 1)
            .map(message)
            .collect(),
    );
    wait_for(&gate, 2 * INLINE_DELIVERIES + 1);
    let seen = gate.seen.lock().clone();
    assert!(
        seen[INLINE_DELIVERIES..].iter().all(|(_, t)| t == THREAD),
        "{seen:?}"
    );
    let seqs: Vec<u64> = seen.iter().map(|(s, _)| *s).collect();
    assert_eq!(
        seqs,
        (1..=2 * INLINE_DELIVERIES as u64 + 1).collect::<Vec<_>>()
    );
}

/// While the bus still delivers an earlier commit, a small one queues behind it instead of
/// overtaking it; once the bus is idle again, the next goes inline.
#[test]
fn a_small_commit_never_overtakes_one_the_bus_still_delivers() {
    let big = INLINE_DELIVERIES as u64 + 1;
    let (gate, release) = gate(1);
    let relay = Relay::start(gate.clone());
    relay.deliver_all((1..=big).map(message).collect());
    wait_for(&gate, 1); // the bus holds message 1
    relay.deliver_all(vec![message(big + 1)]);
    assert_eq!(gate.seen.lock().len(), 1, "queued, not delivered here");
    release.send(()).unwrap();
    wait_for(&gate, big as usize + 1);
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while relay.pending.load(Ordering::Acquire) != 0 {
        assert!(
            std::time::Instant::now() < deadline,
            "pending never went back to 0"
        );
        std::thread::sleep(std::time::Duration::from_millis(2));
    }
    relay.deliver_all(vec![message(big + 2)]);
    let seen = gate.seen.lock().clone();
    let seqs: Vec<u64> = seen.iter().map(|(s, _)| *s).collect();
    assert_eq!(seqs, (1..=big + 2).collect::<Vec<_>>());
    assert_eq!(
        seen[big as usize].1, THREAD,
        "the one behind went by the bus"
    );
    assert_ne!(seen[big as usize + 1].1, THREAD, "then inline again");
}

/// A sink that panics on a message delivered on the writer's thread does not stop the rest
/// of the commit, nor unwind into the writer.
#[test]
fn a_panicking_sink_on_the_writers_thread_is_caught() {
    let recorder = Arc::new(Recorder(Mutex::new(Vec::new()), 2));
    let relay = Relay::start(recorder.clone());
    relay.deliver_all((1..=3).map(message).collect());
    assert_eq!(*recorder.0.lock(), vec!["m1".to_string(), "m3".to_string()]);
}

/// Records the size of each group the sink is handed (and holds the first until released).
struct Groups {
    sizes: Mutex<Vec<usize>>,
    events: Mutex<Vec<String>>,
    release: Mutex<Option<std::sync::mpsc::Receiver<()>>>,
}

impl BusSink for Groups {
    fn deliver(&self, m: Arc<Message>) {
        self.deliver_all(vec![m]);
    }
    fn deliver_all(&self, messages: Vec<Arc<Message>>) {
        self.sizes.lock().push(messages.len());
        let mut events = self.events.lock();
        events.extend(messages.iter().map(|m| format!("m{}", m.seq)));
        drop(events);
        if let Some(rx) = self.release.lock().take() {
            let _ = rx.recv();
        }
    }
    fn control(&self, _: ControlEvent) {
        self.events.lock().push("control".into());
    }
    fn subscribers(&self, _: &Conv) -> usize {
        INLINE_DELIVERIES + 1
    }
}

/// Messages that wait while the bus delivers are handed to the sink together, up to a control
/// event, which stays in its place.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn what_waits_for_the_bus_is_delivered_together_up_to_a_control_event() {
    let (tx, rx) = std::sync::mpsc::channel();
    let sink = Arc::new(Groups {
        sizes: Mutex::new(Vec::new()),
        events: Mutex::new(Vec::new()),
        release: Mutex::new(Some(rx)),
    });
    let relay = Relay::start(sink.clone());
    relay.deliver_all(vec![message(1)]);
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while sink.sizes.lock().is_empty() {
        assert!(std::time::Instant::now() < deadline, "the bus stalled");
        tokio::time::sleep(std::time::Duration::from_millis(2)).await;
    }
    // The bus is held in message 1: these wait.
    relay.deliver_all((2..=5).map(message).collect());
    let control = {
        let relay = relay.clone();
        tokio::spawn(async move {
            relay
                .control(ControlEvent::DisconnectUser {
                    user_id: "u".into(),
                    reason: DisconnectReason::Kicked,
                })
                .await
        })
    };
    while relay.pending.load(Ordering::Acquire) < 6 {
        assert!(
            std::time::Instant::now() < deadline,
            "the control event was not queued"
        );
        tokio::time::sleep(std::time::Duration::from_millis(2)).await;
    }
    relay.deliver_all((6..=7).map(message).collect());
    tx.send(()).unwrap();
    control.await.unwrap();
    while relay.pending.load(Ordering::Acquire) != 0 {
        assert!(std::time::Instant::now() < deadline, "the bus stalled");
        tokio::time::sleep(std::time::Duration::from_millis(2)).await;
    }
    assert_eq!(*sink.sizes.lock(), [1, 4, 2]);
    let expected: Vec<String> = ["m1", "m2", "m3", "m4", "m5", "control", "m6", "m7"]
        .map(String::from)
        .to_vec();
    assert_eq!(*sink.events.lock(), expected);
}
