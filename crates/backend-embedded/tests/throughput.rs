//! Append throughput (ignored by default; run in release):
//! `cargo test --release -p switchboard-backend-embedded -- --ignored --nocapture`.

mod common;

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
    b.lifecycle.close().await;
}
