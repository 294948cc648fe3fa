//! Redis outages: appends fail fast while Redis is down, readiness follows, and when Redis comes
//! back everything heals: appends continue at the next seq and a subscribed sink receives what is
//! published afterwards, in order. A dropped pub/sub connection loses nothing: the gap is filled
//! from the stream.

use crate::common;

use common::{connect, eventually, keyed, req};
use std::time::{Duration, Instant};
use switchboard_conformance::RecordingSink;
use switchboard_core::backend::{BackendError, Broker, Lifecycle};
use switchboard_proto::{Conv, Message};
use switchboard_testkit::RedisServer;

fn seqs(m: &[std::sync::Arc<Message>]) -> Vec<u64> {
    m.iter().map(|m| m.seq).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn appends_fail_fast_during_an_outage_and_resume_after_it() {
    let mut redis = RedisServer::start_with(true);
    let sink = RecordingSink::new();
    let mut config = common::config(&redis, "sb:", "n1");
    config.lease = Duration::from_secs(2);
    let b = connect(config, sink.as_sink()).await;
    let conv = Conv::room("outage");
    b.subscribe(&conv).await.expect("subscribe");
    for i in 1..=5 {
        assert_eq!(b.append(keyed(&conv, i)).await.unwrap().receipt.seq, i);
    }
    sink.wait_for_messages_in(&conv, 5, Duration::from_secs(5))
        .await
        .expect("the first messages arrive");

    redis.stop();
    let t = Instant::now();
    let r = b.append(keyed(&conv, 100)).await;
    let failed_after = t.elapsed();
    assert!(
        matches!(r, Err(BackendError::Unavailable(_))),
        "append during the outage: {r:?}"
    );
    assert!(
        failed_after < Duration::from_secs(5),
        "failed after {failed_after:?}"
    );
    let not_ready = eventually(
        Duration::from_secs(5),
        "not ready during the outage",
        || async { !b.ready().await },
    )
    .await;
    // Reads and subscribes fail fast too.
    let t = Instant::now();
    assert!(matches!(
        b.position(&conv).await,
        Err(BackendError::Unavailable(_))
    ));
    assert!(matches!(
        b.subscribe(&Conv::room("other")).await,
        Err(BackendError::Unavailable(_))
    ));
    assert!(t.elapsed() < Duration::from_secs(10));

    redis.restart();
    let t = Instant::now();
    let ready_again = eventually(
        Duration::from_secs(10),
        "ready after the restart",
        || async { b.ready().await },
    )
    .await;
    let restored = t.elapsed();
    for i in 6..=8 {
        let done = b
            .append(keyed(&conv, i))
            .await
            .expect("append after the restart");
        assert_eq!(done.receipt.seq, i, "seqs continue after the restart");
    }
    let got = sink
        .wait_for_messages_in(&conv, 8, Duration::from_secs(10))
        .await
        .unwrap_or_else(|got| panic!("sink got {:?}", seqs(&got)));
    assert_eq!(
        seqs(&got),
        (1..=8).collect::<Vec<_>>(),
        "in order, nothing lost or doubled"
    );
    let pos = b.position(&conv).await.unwrap();
    assert_eq!((pos.head_seq, pos.oldest_seq), (8, 1));
    eprintln!(
        "append failed after {failed_after:?}; not ready after {not_ready:?}; \
         ready again {restored:?} after the restart (polled {ready_again:?})"
    );
    b.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dropped_pubsub_connection_loses_nothing() {
    let redis = RedisServer::start();
    let sink = RecordingSink::new();
    let publisher_sink = RecordingSink::new();
    let b = connect(common::config(&redis, "sb:", "n1"), sink.as_sink()).await;
    let publisher = connect(
        common::config(&redis, "sb:", "n2"),
        publisher_sink.as_sink(),
    )
    .await;
    let conv = Conv::room("gap");
    b.subscribe(&conv).await.expect("subscribe");

    // Keep publishing while the subscriber's pub/sub connection is killed (twice).
    let appender = tokio::spawn(async move {
        let mut n = 0;
        let until = Instant::now() + Duration::from_millis(1500);
        while Instant::now() < until {
            n += 1;
            publisher.append(req(&conv, n)).await.expect("append");
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
        publisher.close().await;
        n
    });
    tokio::time::sleep(Duration::from_millis(300)).await;
    let killed = redis.command("CLIENT KILL TYPE pubsub");
    assert!(killed.starts_with(':'), "{killed}");
    tokio::time::sleep(Duration::from_millis(500)).await;
    redis.command("CLIENT KILL TYPE pubsub");
    let total = appender.await.unwrap();

    let conv = Conv::room("gap");
    let got = sink
        .wait_for_messages_in(&conv, total as usize, Duration::from_secs(10))
        .await
        .unwrap_or_else(|got| panic!("got {} of {total}", got.len()));
    assert_eq!(
        seqs(&got),
        (1..=total).collect::<Vec<_>>(),
        "every message, in order, once"
    );
    eventually(Duration::from_secs(5), "ready", || async {
        b.ready().await
    })
    .await;
    eprintln!("{total} messages across two pub/sub disconnections, none lost");
    b.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hung_redis_fails_calls_within_the_response_timeout() {
    let redis = RedisServer::start();
    let sink = RecordingSink::new();
    let mut config = common::config(&redis, "sb:", "n1");
    config.response_timeout = Duration::from_millis(800);
    let b = connect(config, sink.as_sink()).await;
    let conv = Conv::room("hung");
    b.subscribe(&conv).await.expect("subscribe");
    assert_eq!(b.append(keyed(&conv, 1)).await.unwrap().receipt.seq, 1);

    // Redis accepts commands but answers none for 3 s.
    assert!(redis.command("CLIENT PAUSE 3000 ALL").starts_with("+OK"));
    let paused = Instant::now();
    let t = Instant::now();
    let r = b.append(keyed(&conv, 2)).await;
    let failed_after = t.elapsed();
    assert!(matches!(r, Err(BackendError::Unavailable(_))), "{r:?}");
    assert!(
        failed_after < Duration::from_millis(1500),
        "failed after {failed_after:?}"
    );

    // After the pause the command that timed out has run after all; a retry with the same key
    // gets its receipt instead of storing it twice.
    tokio::time::sleep_until((paused + Duration::from_millis(3100)).into()).await;
    eventually(Duration::from_secs(10), "ready after the pause", || async {
        b.ready().await
    })
    .await;
    let retry = b.append(keyed(&conv, 2)).await.expect("retry");
    assert_eq!(retry.receipt.seq, 2);
    assert_eq!(b.append(keyed(&conv, 3)).await.unwrap().receipt.seq, 3);
    let got = sink
        .wait_for_messages_in(&conv, 3, Duration::from_secs(10))
        .await
        .unwrap_or_else(|got| panic!("sink got {:?}", seqs(&got)));
    assert_eq!(seqs(&got), vec![1, 2, 3]);
    eprintln!("append to a paused Redis failed after {failed_after:?}");
    b.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn thousands_of_subscriptions_come_back_after_a_pubsub_drop() {
    const CONVS: u64 = 2000;
    let redis = RedisServer::start();
    let sink = RecordingSink::new();
    let b = connect(common::config(&redis, "sb:", "n1"), sink.as_sink()).await;
    let publisher = connect(common::config(&redis, "sb:", "n2"), RecordingSink::new()).await;
    let convs: Vec<Conv> = (0..CONVS).map(|i| Conv::user(&format!("u{i}"))).collect();

    // A burst of subscribes, as when many users connect at once.
    let t = Instant::now();
    let results = futures_util::future::join_all(convs.iter().map(|c| b.subscribe(c))).await;
    let subscribed_in = t.elapsed();
    assert!(
        results.iter().all(Result::is_ok),
        "every subscribe succeeds"
    );

    // Drop the pub/sub connection and publish to every conversation meanwhile.
    redis.command("CLIENT KILL TYPE pubsub");
    let t = Instant::now();
    for c in &convs {
        publisher.append(req(c, 1)).await.unwrap();
    }
    let got = sink
        .wait_for_messages(CONVS as usize, Duration::from_secs(20))
        .await
        .unwrap_or_else(|got| panic!("got {} of {CONVS}", got.len()));
    let received_in = t.elapsed();
    assert!(got.iter().all(|m| m.seq == 1));
    let distinct: std::collections::HashSet<_> = got.iter().map(|m| m.conv.clone()).collect();
    assert_eq!(
        distinct.len() as u64,
        CONVS,
        "one message per conversation, none twice"
    );
    eprintln!(
        "{CONVS} concurrent subscribes in {subscribed_in:?}; all messages across a pub/sub drop \
         received {received_in:?} after the first append"
    );
    publisher.close().await;
    b.close().await;
}
