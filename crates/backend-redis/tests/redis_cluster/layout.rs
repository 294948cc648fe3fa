//! Targeted routing on sharded pub/sub, and replication before acknowledgement.

use crate::common::{connect, keyed, req};
use std::time::Duration;
use switchboard_conformance::RecordingSink;
use switchboard_core::backend::{BackendError, Broker, HistoryQuery};
use switchboard_proto::Conv;
use switchboard_testkit::RedisCluster;

const WAIT: Duration = Duration::from_secs(10);

/// The slot of `key`, as the cluster computes it.
pub fn slot(cluster: &RedisCluster, key: &str) -> u16 {
    let port = cluster.masters()[0];
    cluster
        .run(port, &["CLUSTER", "KEYSLOT", key])
        .trim()
        .parse()
        .expect("a slot")
}

/// A room whose channel is on the same master as `other`'s (so pub/sub keeps their order).
fn room_on_master_of(cluster: &RedisCluster, prefix: &str, other: &Conv) -> Conv {
    let master = |conv: &Conv| {
        let key = format!("{prefix}{{{conv}}}:ch");
        cluster.master_of_slot(slot(cluster, &key))
    };
    let want = master(other);
    (0..1000)
        .map(|i| Conv::room(&format!("sentinel-{i}")))
        .find(|c| master(c) == want)
        .expect("a room on the same master")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn only_interested_nodes_receive_and_on_shard_channels() {
    let cluster = crate::shared();
    let (sink_a, sink_b) = (RecordingSink::new(), RecordingSink::new());
    let config_a = crate::config(cluster);
    let prefix = config_a.key_prefix.clone();
    let mut config_b = config_a.clone();
    config_b.node_id = format!("{}-b", config_a.node_id);
    let a = connect(config_a, sink_a.as_sink()).await;
    let b = connect(config_b, sink_b.as_sink()).await;
    let x = Conv::room("x");
    let sentinel = room_on_master_of(cluster, &prefix, &x);
    a.subscribe(&x).await.unwrap();
    a.subscribe(&sentinel).await.unwrap();
    b.subscribe(&sentinel).await.unwrap();

    // On the shard channel of x's master, A only; nothing on classic pub/sub.
    let channel = format!("{prefix}{{room:x}}:ch");
    let master = cluster
        .master_of_slot(slot(cluster, &channel))
        .expect("a master");
    let shard = cluster.run(master, &["PUBSUB", "SHARDNUMSUB", &channel]);
    assert!(shard.ends_with("\n1\n"), "one shard subscriber: {shard:?}");
    let classic = cluster.run(master, &["PUBSUB", "NUMSUB", &channel]);
    assert!(
        classic.ends_with("\n0\n"),
        "no classic subscriber: {classic:?}"
    );

    for i in 0..20 {
        b.append(req(&x, i)).await.unwrap();
    }
    b.append(req(&sentinel, 0)).await.unwrap();
    sink_a
        .wait_for_messages_in(&x, 20, WAIT)
        .await
        .expect("x's messages reach A");
    sink_b
        .wait_for_messages_in(&sentinel, 1, WAIT)
        .await
        .expect("the sentinel reaches B");
    let seqs: Vec<u64> = sink_a.messages_in(&x).iter().map(|m| m.seq).collect();
    assert_eq!(seqs, (1..=20).collect::<Vec<_>>(), "once each, in order");
    // Published on the same master before the sentinel: had B been subscribed, it would have
    // them by now.
    assert_eq!(sink_b.messages().len(), 1, "B has the sentinel only");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unreplicated_is_unavailable_and_a_retry_finds_it_once() {
    let cluster = crate::shared();
    let sink = RecordingSink::new();
    // The retrying node keeps the suite's generous WAIT timeout: its one replica does confirm,
    // but a replica starved of CPU can take well over 100 ms to (it did, about one run in four
    // with both cores busy), and the test would then fail on a timing, not on the behaviour.
    let normal = crate::config(cluster);
    let mut strict = normal.clone();
    strict.node_id = format!("{}-s", normal.node_id);
    // Each master has one replica: two can never confirm, so this WAIT always runs to its
    // timeout and the outcome does not depend on it; 100 ms keeps the test short.
    strict.wait_replicas = 2;
    strict.wait_timeout = Duration::from_millis(100);
    let s = connect(strict, RecordingSink::new().as_sink()).await;
    let n = connect(normal, sink.as_sink()).await;
    let room = Conv::room("durable");
    n.subscribe(&room).await.unwrap();

    let err = s
        .append(keyed(&room, 1))
        .await
        .expect_err("not replicated twice");
    assert!(matches!(err, BackendError::Unavailable(_)), "{err:?}");
    let q = HistoryQuery {
        limit: 10,
        ..HistoryQuery::default()
    };
    let retried = n.append(keyed(&room, 1)).await.expect("the retry succeeds");
    assert_eq!(retried.receipt.seq, 1, "the first attempt's message");
    assert!(retried.stored.is_empty(), "nothing stored again");
    let history = n.history(&room, q).await.unwrap();
    assert_eq!(history.len(), 1, "in history once: {history:?}");
    let got = sink
        .wait_for_messages_in(&room, 1, WAIT)
        .await
        .expect("published once replicated");
    assert_eq!(got.len(), 1);
    n.append(req(&room, 2)).await.unwrap();
    let got = sink.wait_for_messages_in(&room, 2, WAIT).await.unwrap();
    let seqs: Vec<u64> = got.iter().map(|m| m.seq).collect();
    assert_eq!(seqs, vec![1, 2]);
}
