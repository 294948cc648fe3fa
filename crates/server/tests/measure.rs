//! Quick figures for one node (not benchmarks: those come with the bench tool). Ignored by
//! default; run in release:
//!
//! ```sh
//! cargo test --release -p switchboard-server --test measure -- --ignored --nocapture --test-threads 1
//! ```
//!
//! They start the real binary, so RSS and CPU are the server's alone (the clients run in this
//! test process on the same 2-core machine).

mod common;
use common::*;
use futures_util::StreamExt;
use serde_json::json;
use std::time::{Duration, Instant};

fn proc_rss_kib(pid: u32) -> u64 {
    let s = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    s.lines()
        .find(|l| l.starts_with("VmRSS:"))
        .unwrap()
        .split_whitespace()
        .nth(1)
        .unwrap()
        .parse()
        .unwrap()
}

fn proc_cpu_secs(pid: u32) -> f64 {
    let s = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap();
    let after = &s[s.rfind(')').unwrap() + 2..];
    let f: Vec<&str> = after.split_whitespace().collect();
    let ticks: u64 = f[11].parse::<u64>().unwrap() + f[12].parse::<u64>().unwrap();
    ticks as f64 / 100.0
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore]
async fn rss_per_idle_websocket_connection() {
    const N: usize = 5_000;
    let dir = tempfile::tempdir().unwrap();
    let proc = NodeProcess::start(dir.path(), &["--heartbeat-ms", "25000"]).await;
    let pid = proc.child.id().unwrap();
    let (_, token) = proc.http.user("idle").await;
    // Warm up allocator and one connection before the baseline.
    let mut warm = WsClient::connect(&format!("{}?token={token}", proc.ws_url())).await;
    warm.expect("welcome").await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    let before = proc_rss_kib(pid);
    let mut clients = Vec::with_capacity(N);
    for _ in 0..N {
        let mut c = WsClient::connect(&format!("{}?token={token}", proc.ws_url())).await;
        c.expect("welcome").await;
        clients.push(c);
    }
    tokio::time::sleep(Duration::from_secs(2)).await;
    let after = proc_rss_kib(pid);
    let per = (after - before) as f64 * 1024.0 / N as f64;
    println!(
        "idle WebSocket connections: {N}; server RSS {before} KiB -> {after} KiB; {per:.0} bytes per connection"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore]
async fn one_room_with_1000_subscribers() {
    const SUBS: usize = 1_000;
    const MESSAGES: usize = 300;
    let dir = tempfile::tempdir().unwrap();
    let proc = NodeProcess::start(dir.path(), &["--outbound-queue", "4096"]).await;
    let pid = proc.child.id().unwrap();
    let (_, token) = proc.http.user("fan").await;
    let room = proc.http.room(&token, "fanout", "public").await;
    let conv = format!("room:{room}");
    let mut readers = Vec::new();
    let (ready_tx, mut ready_rx) = tokio::sync::mpsc::channel::<()>(SUBS);
    let (done_tx, mut done_rx) = tokio::sync::mpsc::channel::<Vec<u64>>(SUBS);
    for _ in 0..SUBS {
        let mut c = WsClient::connect(&format!("{}?token={token}", proc.ws_url())).await;
        c.expect("welcome").await;
        c.request(json!({"type": "subscribe", "conv": conv}), 1)
            .await;
        let (ready_tx, done_tx, conv) = (ready_tx.clone(), done_tx.clone(), conv.clone());
        readers.push(tokio::spawn(async move {
            ready_tx.send(()).await.unwrap();
            let mut latencies = Vec::with_capacity(MESSAGES);
            let mut got = 0;
            while got < MESSAGES {
                let Some(Ok(m)) = c.ws.next().await else {
                    panic!("subscriber closed")
                };
                let tokio_tungstenite::tungstenite::Message::Text(t) = m else {
                    continue;
                };
                let v: serde_json::Value = serde_json::from_str(&t).unwrap();
                if v["type"] == "message" && v["conv"] == conv.as_str() {
                    got += 1;
                    let sent = v["body"]["t"].as_u64().unwrap();
                    latencies.push(now_us().saturating_sub(sent));
                }
            }
            done_tx.send(latencies).await.unwrap();
        }));
    }
    for _ in 0..SUBS {
        ready_rx.recv().await.unwrap();
    }
    let cpu0 = proc_cpu_secs(pid);
    let started = Instant::now();
    let http = proc.http.clone();
    let publisher = tokio::spawn(async move {
        for _ in 0..MESSAGES {
            let (s, _) = http
                .server(
                    "/v1/server/publish",
                    json!({"conv": conv, "body": {"t": now_us()}}),
                )
                .await;
            assert_eq!(s, 201);
        }
    });
    let mut all = Vec::with_capacity(SUBS * MESSAGES);
    for _ in 0..SUBS {
        all.extend(done_rx.recv().await.unwrap());
    }
    let elapsed = started.elapsed();
    let cpu = proc_cpu_secs(pid) - cpu0;
    publisher.await.unwrap();
    all.sort_unstable();
    let deliveries = (SUBS * MESSAGES) as f64;
    let pct = |p: f64| all[((all.len() as f64 * p) as usize).min(all.len() - 1)] as f64 / 1000.0;
    println!(
        "one room, {SUBS} subscribers, {MESSAGES} messages published one at a time over HTTP: {:.0} deliveries/s, \
         server CPU {:.2} us per delivery, publish-to-delivery latency p50 {:.1} ms p99 {:.1} ms",
        deliveries / elapsed.as_secs_f64(),
        cpu * 1e6 / deliveries,
        pct(0.5),
        pct(0.99)
    );
}

fn now_us() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_micros() as u64
}
