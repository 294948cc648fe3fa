//! Measurements (ignored by default):
//! `cargo test -p switchboard-backend-redis --test bench -- --ignored --nocapture`.
//! They also check that every append was stored, and delivered in order to the subscriber.

mod common;

use common::{connect, keyed, req};
use std::collections::BTreeMap;
use std::time::Instant;
use switchboard_conformance::RecordingSink;
use switchboard_core::backend::{Broker, Lifecycle};
use switchboard_proto::Conv;
use switchboard_testkit::RedisServer;

/// `cmdstat_<name>:calls=<n>,...` lines of `INFO commandstats`.
fn command_calls(redis: &RedisServer) -> BTreeMap<String, u64> {
    redis
        .command("INFO commandstats")
        .lines()
        .filter_map(|l| {
            let (name, rest) = l.strip_prefix("cmdstat_")?.split_once(':')?;
            let calls = rest
                .strip_prefix("calls=")?
                .split(',')
                .next()?
                .parse()
                .ok()?;
            Some((name.to_owned(), calls))
        })
        .collect()
}

fn diff(before: &BTreeMap<String, u64>, after: &BTreeMap<String, u64>) -> BTreeMap<String, u64> {
    after
        .iter()
        .filter_map(|(k, v)| {
            let d = v - before.get(k).copied().unwrap_or(0);
            (d > 0).then(|| (k.clone(), d))
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread")]
#[ignore = "measurement; run with --ignored --nocapture"]
async fn redis_commands_per_message_and_append_rate() {
    const N: u64 = 1000;
    let redis = RedisServer::start();
    let sink = RecordingSink::new();
    let b = connect(common::config(&redis, "sb:", "n1"), sink.as_sink()).await;
    let conv = Conv::room("measure");
    b.subscribe(&conv).await.unwrap();
    b.append(req(&conv, 0)).await.unwrap(); // the conversation exists

    for (label, keyed_appends) in [
        ("without idempotency key", false),
        ("with idempotency key", true),
    ] {
        let before = command_calls(&redis);
        for i in 0..N {
            let r = if keyed_appends {
                keyed(&conv, i)
            } else {
                req(&conv, i)
            };
            b.append(r).await.unwrap();
        }
        let mut calls = diff(&before, &command_calls(&redis));
        // The `INFO` that read `before` is counted in `after`.
        if let Some(info) = calls.get_mut("info") {
            *info -= 1;
        }
        calls.retain(|_, v| *v > 0);
        let total: u64 = calls.values().sum();
        println!(
            "{label}: {total} Redis commands for {N} appends = {:.2} per message: {calls:?}",
            total as f64 / N as f64
        );
    }

    const TASKS: u64 = 50;
    const TOTAL: u64 = 20_000;
    let busy = Conv::room("busy");
    let t0 = Instant::now();
    let mut tasks = Vec::new();
    for t in 0..TASKS {
        let b = b.clone();
        let busy = busy.clone();
        tasks.push(tokio::spawn(async move {
            for i in 0..TOTAL / TASKS {
                b.append(keyed(&busy, t * 1_000_000 + i)).await.unwrap();
            }
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
    let elapsed = t0.elapsed();
    println!(
        "{TASKS} tasks, one conversation, keyed: {TOTAL} appends in {:.2} s = {:.0} appends/s",
        elapsed.as_secs_f64(),
        TOTAL as f64 / elapsed.as_secs_f64()
    );

    let t0 = Instant::now();
    let mut tasks = Vec::new();
    for t in 0..TASKS {
        let b = b.clone();
        tasks.push(tokio::spawn(async move {
            let conv = Conv::room(&format!("spread-{t}"));
            for i in 0..TOTAL / TASKS {
                b.append(req(&conv, i)).await.unwrap();
            }
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
    let elapsed = t0.elapsed();
    println!(
        "{TASKS} tasks, one conversation each: {TOTAL} appends in {:.2} s = {:.0} appends/s",
        elapsed.as_secs_f64(),
        TOTAL as f64 / elapsed.as_secs_f64()
    );
    let pos = b.position(&busy).await.unwrap();
    assert_eq!(pos.head_seq, TOTAL);
    for t in 0..TASKS {
        let conv = Conv::room(&format!("spread-{t}"));
        assert_eq!(b.position(&conv).await.unwrap().head_seq, TOTAL / TASKS);
    }
    // The subscribed conversation: every append delivered once, in seq order.
    let expected: Vec<u64> = (1..=2 * N + 1).collect();
    common::eventually(std::time::Duration::from_secs(10), "all delivered", || {
        let done = sink.messages_in(&conv).len() >= expected.len();
        async move { done }
    })
    .await;
    let seqs: Vec<u64> = sink.messages_in(&conv).iter().map(|m| m.seq).collect();
    assert_eq!(seqs, expected, "delivered once each, in order");
    b.close().await;
}
