//! Retention by age (the background pass, run on demand here) and message details the
//! conformance suite leaves out.

use crate::common;

use common::{connect, keyed, req};
use std::time::Duration;
use switchboard_conformance::RecordingSink;
use switchboard_core::backend::{AppendRequest, Broker, HistoryQuery, Lifecycle};
use switchboard_proto::Conv;
use switchboard_testkit::RedisServer;

fn all() -> HistoryQuery {
    HistoryQuery {
        after: Some(0),
        before: None,
        limit: 500,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn messages_older_than_the_age_limit_are_trimmed() {
    let redis = RedisServer::start();
    let mut config = common::config(&redis, "sb:", "n1");
    config.history_max_age_ms = 1000;
    let b = connect(config, RecordingSink::new()).await;
    let (old, mixed, fresh) = (Conv::room("old"), Conv::room("mixed"), Conv::room("fresh"));
    for i in 1..=3 {
        b.append(keyed(&old, i)).await.unwrap();
        b.append(keyed(&mixed, i)).await.unwrap();
    }
    tokio::time::sleep(Duration::from_millis(1200)).await;
    b.append(req(&mixed, 4)).await.unwrap();
    b.append(req(&fresh, 1)).await.unwrap();

    b.trim_by_age_for_test().await.expect("trim pass");
    assert!(
        b.history(&old, all()).await.unwrap().is_empty(),
        "all of `old` is past the limit"
    );
    let p = b.position(&old).await.unwrap();
    assert_eq!(
        (p.head_seq, p.oldest_seq),
        (3, 4),
        "the head stays; history is empty"
    );
    let kept: Vec<u64> = b
        .history(&mixed, all())
        .await
        .unwrap()
        .iter()
        .map(|m| m.seq)
        .collect();
    assert_eq!(kept, vec![4], "only the young message of `mixed` is kept");
    assert_eq!(b.history(&fresh, all()).await.unwrap().len(), 1);
    // Conversations left empty are no longer listed for trimming; the others are.
    let listed = redis.command("ZRANGE sb:convs 0 -1");
    assert!(!listed.contains("room:old\r"), "{listed}");
    assert!(listed.contains("room:mixed\r"), "{listed}");
    // Idempotency outlives trimming; seqs go on.
    let again = b.append(keyed(&old, 1)).await.unwrap();
    assert_eq!(again.receipt.seq, 1);
    assert!(again.stored.is_empty());
    assert_eq!(b.append(req(&old, 9)).await.unwrap().receipt.seq, 4);
    b.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_direct_message_to_oneself_gets_two_seqs_in_one_stream() {
    let redis = RedisServer::start();
    let sink = RecordingSink::new();
    let b = connect(common::config(&redis, "sb:", "n1"), sink.as_sink()).await;
    let me = Conv::user("me");
    b.subscribe(&me).await.unwrap();
    let done = b
        .append(AppendRequest {
            from: Some("me".into()),
            to: Some("me".into()),
            copy_to: Some(me.clone()),
            ..req(&me, 1)
        })
        .await
        .unwrap();
    let seqs: Vec<u64> = done.stored.iter().map(|m| m.seq).collect();
    assert_eq!(seqs, vec![1, 2]);
    let got = sink
        .wait_for_messages_in(&me, 2, Duration::from_secs(5))
        .await
        .expect("both copies published");
    assert_eq!(got.iter().map(|m| m.seq).collect::<Vec<_>>(), vec![1, 2]);
    assert_eq!(b.position(&me).await.unwrap().head_seq, 2);
    b.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn timestamps_never_go_back_within_a_conversation() {
    let redis = RedisServer::start();
    let b = connect(common::config(&redis, "sb:", "n1"), RecordingSink::new()).await;
    let conv = Conv::room("clock");
    // Another node with a clock far ahead stored the latest message.
    let future = 4_000_000_000_000u64;
    assert!(
        redis
            .command(&format!("HSET sb:{{room:clock}}:meta seq 0 ts {future}"))
            .starts_with(':')
    );
    let m = b.append(req(&conv, 1)).await.unwrap();
    assert_eq!(m.receipt.ts, future, "ts is never below the previous one");
    b.close().await;
}
