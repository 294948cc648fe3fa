//! Pub/sub messages the node's task has already read when it comes back to them are handed to
//! the hub together (so a subscriber gets a conversation's in one write), in seq order.

use crate::common;

use common::{connect, req};
use parking_lot::Mutex;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;
use switchboard_conformance::RecordingSink;
use switchboard_core::backend::{Broker, BusSink, ControlEvent, Lifecycle};
use switchboard_proto::{Conv, Message};
use switchboard_testkit::RedisServer;

/// Records each group it is handed; holds the task on its first group until `open`, so that
/// the next messages wait to be read meanwhile.
#[derive(Default)]
struct Groups(Mutex<Vec<Vec<u64>>>, AtomicBool);

impl BusSink for Groups {
    fn deliver(&self, m: Arc<Message>) {
        self.deliver_all(vec![m]);
    }
    fn deliver_all(&self, messages: Vec<Arc<Message>>) {
        let first = {
            let mut groups = self.0.lock();
            groups.push(messages.iter().map(|m| m.seq).collect());
            groups.len() == 1
        };
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        while first && !self.1.load(Ordering::Acquire) && std::time::Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(5));
        }
    }
    fn control(&self, _: ControlEvent) {}
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn messages_read_while_the_hub_was_busy_are_delivered_together_in_order() {
    let redis = RedisServer::start();
    let groups = Arc::new(Groups::default());
    let a = connect(common::config(&redis, "sb:", "a"), groups.clone()).await;
    let b = connect(
        common::config(&redis, "sb:", "b"),
        RecordingSink::new().as_sink(),
    )
    .await;
    let x = Conv::room("x");
    a.subscribe(&x).await.unwrap();
    b.append(req(&x, 0)).await.unwrap();
    for i in 1..40 {
        b.append(req(&x, i)).await.unwrap();
    }
    // All 40 are published: the 39 behind the first wait for the node's task.
    groups.1.store(true, Ordering::Release);
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while groups.0.lock().iter().map(Vec::len).sum::<usize>() < 40 {
        assert!(
            std::time::Instant::now() < deadline,
            "{:?}",
            groups.0.lock()
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let got = groups.0.lock().clone();
    let seqs: Vec<u64> = got.iter().flatten().copied().collect();
    assert_eq!(
        seqs,
        (1..=40).collect::<Vec<_>>(),
        "every message once, in order"
    );
    assert!(
        got.len() < 40,
        "what was read while the first was delivered came together: {got:?}"
    );
    a.close().await;
    b.close().await;
}
