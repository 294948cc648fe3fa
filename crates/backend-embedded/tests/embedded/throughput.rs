//! Append throughput (ignored by default; run in release):
//! `cargo test --release -p switchboard-backend-embedded -- --ignored --nocapture`.
//! Each measurement also checks that every append was stored and delivered, in order.

use crate::common;

use std::sync::Arc;
use std::time::Instant;
use switchboard_conformance::RecordingSink;
use switchboard_proto::Conv;

/// 50 tasks append 20,000 messages into one conversation; group commit makes this far faster
/// than one fsync per message (compare with the sequential baseline printed first).
#[tokio::test(flavor = "multi_thread")]
#[ignore = "benchmark; run in release with --ignored --nocapture"]
async fn throughput_one_conversation_50_tasks() {
    const TASKS: u64 = 50;
    const TOTAL: u64 = 20_000;
    // Under the target dir, so on a real disk rather than a tmpfs.
    let dir = tempfile::tempdir_in(env!("CARGO_TARGET_TMPDIR")).expect("tempdir");
    let sink = RecordingSink::new();
    let eb = common::open(dir.path(), 0, sink.as_sink());
    let b = eb.backend();

    let base = Conv::room("baseline");
    let n_seq = 200u64;
    let t0 = Instant::now();
    for n in 0..n_seq {
        b.broker
            .append(common::keyed(&base, 900_000_000 + n))
            .await
            .expect("append");
    }
    let seq_rate = n_seq as f64 / t0.elapsed().as_secs_f64();
    println!("sequential (1 task, one commit each): {seq_rate:.0} messages/s");

    let conv = Conv::room("bench");
    let t0 = Instant::now();
    let mut tasks = Vec::new();
    for t in 0..TASKS {
        let broker = b.broker.clone();
        let conv = conv.clone();
        tasks.push(tokio::spawn(async move {
            for i in 0..TOTAL / TASKS {
                broker
                    .append(common::keyed(&conv, t * 1_000_000 + i))
                    .await
                    .expect("append");
            }
        }));
    }
    for t in tasks {
        t.await.expect("task");
    }
    let elapsed = t0.elapsed();
    let rate = TOTAL as f64 / elapsed.as_secs_f64();
    println!(
        "concurrent ({TASKS} tasks, one conversation): {TOTAL} messages in {:.2} s = {rate:.0} messages/s",
        elapsed.as_secs_f64()
    );
    let pos = b.broker.position(&conv).await.expect("position");
    assert_eq!(pos.head_seq, TOTAL);
    assert_eq!(sink.messages_in(&conv).len() as u64, TOTAL);
    let base_head = b.broker.position(&base).await.expect("position").head_seq;
    assert_eq!(base_head, n_seq, "every sequential append stored");
    assert_in_task_order(&sink.messages_in(&conv), TOTAL);
    b.lifecycle.close().await;
}

/// `delivered` holds seqs 1..=`total` once each, and each task's appends (keys `k<t*1e6+i>`,
/// made one after another) have increasing seqs.
fn assert_in_task_order(delivered: &[Arc<switchboard_proto::Message>], total: u64) {
    let mut by_seq: Vec<(u64, u64)> = delivered
        .iter()
        .map(|m| {
            let key = m.client_msg_id.as_deref().expect("a keyed append");
            (m.seq, key[1..].parse().expect("k<n>"))
        })
        .collect();
    by_seq.sort_unstable();
    let seqs: Vec<u64> = by_seq.iter().map(|m| m.0).collect();
    assert_eq!(
        seqs,
        (1..=total).collect::<Vec<_>>(),
        "each seq delivered once"
    );
    let mut last = std::collections::HashMap::new();
    for (seq, n) in by_seq {
        let (task, i) = (n / 1_000_000, n % 1_000_000);
        if let Some(before) = last.insert(task, i) {
            assert!(
                before < i,
                "task {task}: append {i} got seq {seq}, before append {before}"
            );
        }
    }
}

/// A bus that drops what it is given (a recording one would hold every message).
struct Discard;

impl switchboard_core::backend::BusSink for Discard {
    fn deliver(&self, _message: Arc<switchboard_proto::Message>) {}
    fn control(&self, _event: switchboard_core::backend::ControlEvent) {}
}

/// CPU time (user + system) of this process's thread named `name` (the kernel keeps the first
/// 15 bytes of a name), in seconds (Linux only).
fn thread_cpu_s(name: &str) -> f64 {
    let tick = 100.0; // USER_HZ on Linux
    let mut total = 0.0;
    for task in std::fs::read_dir("/proc/self/task").expect("/proc/self/task") {
        let path = task.expect("task").path();
        let comm = std::fs::read_to_string(path.join("comm")).unwrap_or_default();
        if !name.starts_with(comm.trim()) || comm.trim().is_empty() {
            continue;
        }
        let stat = std::fs::read_to_string(path.join("stat")).unwrap_or_default();
        // Fields after the parenthesised name: state is field 3, utime 14, stime 15.
        let rest = stat.rsplit_once(')').map(|(_, r)| r).unwrap_or("");
        let f: Vec<&str> = rest.split_whitespace().collect();
        let ticks: f64 = f[11].parse::<f64>().unwrap_or(0.0) + f[12].parse::<f64>().unwrap_or(0.0);
        total += ticks / tick;
    }
    total
}

/// Bytes this process has caused to be written to storage (Linux only).
fn write_bytes() -> u64 {
    std::fs::read_to_string("/proc/self/io")
        .unwrap_or_default()
        .lines()
        .find_map(|l| l.strip_prefix("write_bytes: "))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(0)
}

/// The `dm` pattern at the writer: direct messages between random users of `SB_DM_USERS`
/// (10,000) at `SB_DM_RATE` (5,000/s) for `SB_DM_SECONDS` (10 s), each stored twice (the
/// recipient's stream and the sender's copy), as the server does; with `SB_DM_KEYED=1` each has
/// a `client_msg_id`, as the client library sends. With `SB_DM_ROOMS=n` the messages go instead
/// to random rooms of `n` (the `rooms` pattern: one stream each, no copy). With `SB_DM_BATCH=k`
/// every message is sent at once and the writer commits `k` at a time: the same commits in every
/// run, for instruction counts (`valgrind --tool=callgrind`) that compare. Prints the writer
/// thread's CPU and the bytes written per message, the figures that the write path's layout
/// changes, and the append latency.
#[tokio::test(flavor = "multi_thread", worker_threads = 1)]
#[ignore = "benchmark; run in release with --ignored --nocapture"]
async fn dm_pattern_writer_cost() {
    let env = |k: &str, d: u64| {
        std::env::var(k)
            .ok()
            .and_then(|v| v.parse().ok())
            .unwrap_or(d)
    };
    let (users, rate, seconds) = (
        env("SB_DM_USERS", 10_000),
        env("SB_DM_RATE", 5_000),
        env("SB_DM_SECONDS", 10),
    );
    let keyed = env("SB_DM_KEYED", 0) != 0;
    let rooms = env("SB_DM_ROOMS", 0);
    let batch = env("SB_DM_BATCH", 0);
    let dir = tempfile::tempdir_in(env!("CARGO_TARGET_TMPDIR")).expect("tempdir");
    let mut config = switchboard_backend_embedded::EmbeddedConfig::new(dir.path());
    if batch > 0 {
        config.max_batch = batch as usize;
    }
    let eb = switchboard_backend_embedded::EmbeddedBackend::open(config, Arc::new(Discard))
        .expect("open the embedded backend");
    let b = eb.backend();
    let ids: Vec<String> = (0..users)
        .map(|_| switchboard_proto::ids::new_id("u"))
        .collect();
    let padding = "x".repeat(100);
    let mut rng = 0x9e37_79b9_7f4a_7c15u64;
    let mut next = move || {
        // xorshift64: the same sequence every run.
        rng ^= rng << 13;
        rng ^= rng >> 7;
        rng ^= rng << 17;
        rng
    };
    let total = rate * seconds;
    let (cpu0, io0) = (thread_cpu_s("sb-sqlite-writer"), write_bytes());
    let t0 = Instant::now();
    let mut pending = tokio::task::JoinSet::new();
    let mut latencies = Vec::with_capacity(total as usize);
    for i in 0..total {
        if batch == 0 {
            let due = t0 + std::time::Duration::from_secs_f64(i as f64 / rate as f64);
            tokio::time::sleep_until(due.into()).await;
        }
        let from = &ids[(next() % users) as usize];
        let mut to = &ids[(next() % users) as usize];
        if to == from {
            to = &ids[((next() % (users - 1)) + 1) as usize];
        }
        let room = (rooms > 0).then(|| Conv::room(&format!("r{}", next() % rooms)));
        let request = switchboard_core::backend::AppendRequest {
            conv: room.clone().unwrap_or_else(|| Conv::user(to)),
            from: Some(from.clone()),
            to: Some(to.clone()),
            body: switchboard_proto::MessageBody::from_json(format!(
                r#"{{"i":{i},"p":"{padding}"}}"#
            ))
            .expect("json"),
            // Made as the client library makes them.
            client_msg_id: keyed.then(|| switchboard_proto::ids::new_id("c")),
            idempotency_owner: from.clone(),
            copy_to: room.is_none().then(|| Conv::user(from)),
        };
        let copies = if room.is_some() { 1 } else { 2 };
        let broker = b.broker.clone();
        pending.spawn(async move {
            let sent = Instant::now();
            let appended = broker.append(request).await.expect("append");
            assert_eq!(
                appended.stored.len(),
                copies,
                "the message and, for a DM, the sender's copy"
            );
            sent.elapsed()
        });
        while let Some(done) = pending.try_join_next() {
            latencies.push(done.expect("task"));
        }
    }
    while let Some(done) = pending.join_next().await {
        latencies.push(done.expect("task"));
    }
    let wall = t0.elapsed().as_secs_f64();
    assert_eq!(latencies.len() as u64, total, "every DM answered");
    latencies.sort();
    let at = |q: f64| latencies[((latencies.len() - 1) as f64 * q) as usize].as_secs_f64() * 1e3;
    let (cpu, io) = (thread_cpu_s("sb-sqlite-writer") - cpu0, write_bytes() - io0);
    println!(
        "{} pattern{}: {total} messages in {wall:.2} s; writer thread {:.1} µs CPU per message, \
         {:.0} bytes written per message; append latency p50 {:.2} ms, p99 {:.2} ms",
        if rooms > 0 { "rooms" } else { "dm" },
        if keyed { " (keyed)" } else { "" },
        cpu * 1e6 / total as f64,
        io as f64 / total as f64,
        at(0.5),
        at(0.99)
    );
    b.lifecycle.close().await;
}
