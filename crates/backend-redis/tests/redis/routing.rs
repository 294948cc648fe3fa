//! Targeted routing: a node receives only the conversations it subscribed to, and stops
//! receiving one when it unsubscribes. Each check uses a sentinel conversation: pub/sub delivers
//! one connection's messages in publication order, so once the sentinel arrives, anything
//! published before it would have arrived too.

use crate::common;

use common::{connect, req};
use std::time::Duration;
use switchboard_conformance::RecordingSink;
use switchboard_core::backend::{AppendRequest, Broker, Lifecycle};
use switchboard_proto::Conv;
use switchboard_testkit::RedisServer;

const WAIT: Duration = Duration::from_secs(5);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_receives_only_what_it_subscribed_to() {
    let redis = RedisServer::start();
    let (sink_a, sink_b) = (RecordingSink::new(), RecordingSink::new());
    let a = connect(common::config(&redis, "sb:", "a"), sink_a.as_sink()).await;
    let b = connect(common::config(&redis, "sb:", "b"), sink_b.as_sink()).await;
    let (x, y) = (Conv::room("x"), Conv::room("y"));
    let sentinel1 = Conv::room("sentinel-1");
    let sentinel2 = Conv::room("sentinel-2");
    a.subscribe(&x).await.unwrap();
    a.subscribe(&sentinel1).await.unwrap();
    a.subscribe(&sentinel2).await.unwrap();

    for i in 0..5 {
        b.append(req(&y, i)).await.unwrap();
    }
    for i in 0..3 {
        b.append(req(&x, i)).await.unwrap();
    }
    // A direct message to someone else, with a copy to another user: neither is A's business.
    b.append(AppendRequest {
        to: Some("bob".into()),
        copy_to: Some(Conv::user("u_1")),
        ..req(&Conv::user("bob"), 9)
    })
    .await
    .unwrap();
    b.append(req(&sentinel1, 0)).await.unwrap();
    sink_a
        .wait_for_messages_in(&sentinel1, 1, WAIT)
        .await
        .expect("the sentinel arrives");
    let got = sink_a.messages();
    assert_eq!(
        got.len(),
        4,
        "x's three messages and the sentinel only: {got:?}"
    );
    assert_eq!(sink_a.messages_in(&x).len(), 3);
    assert!(sink_a.messages_in(&y).is_empty(), "nothing of y reaches A");
    assert!(
        sink_b.messages().is_empty(),
        "B subscribed to nothing and got nothing"
    );

    a.unsubscribe(&x).await.unwrap();
    for i in 3..6 {
        b.append(req(&x, i)).await.unwrap();
    }
    b.append(req(&sentinel2, 0)).await.unwrap();
    sink_a
        .wait_for_messages_in(&sentinel2, 1, WAIT)
        .await
        .expect("the second sentinel arrives");
    assert_eq!(
        sink_a.messages_in(&x).len(),
        3,
        "nothing of x after the unsubscribe"
    );

    // Redis itself routes: only A's channels have a subscriber.
    let numsub =
        redis.command("PUBSUB NUMSUB sb:{room:x}:ch sb:{room:y}:ch sb:{room:sentinel-1}:ch");
    let counts: Vec<&str> = numsub.lines().filter(|l| l.starts_with(':')).collect();
    assert_eq!(counts, vec![":0", ":0", ":1"], "{numsub}");
    a.close().await;
    b.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_pubsub_connection_stays_up_across_health_pings() {
    let redis = RedisServer::start();
    let sink = RecordingSink::new();
    let mut config = common::config(&redis, "sb:", "a");
    config.lease = Duration::from_millis(600); // a ping every 200 ms
    let a = connect(config, sink.as_sink()).await;
    let conv = Conv::room("quiet");
    a.subscribe(&conv).await.unwrap();
    let clients = || {
        redis
            .command("CLIENT LIST TYPE pubsub")
            .split_whitespace()
            .find(|w| w.starts_with("id="))
            .map(str::to_owned)
    };
    let before = clients().expect("a pub/sub client");
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert_eq!(clients(), Some(before), "no reconnect after several pings");
    assert!(a.ready().await);
    a.append(req(&conv, 1)).await.unwrap();
    sink.wait_for_messages_in(&conv, 1, WAIT)
        .await
        .expect("still delivering");
    a.close().await;
}
