//! Quick figures for one node (not benchmarks: those come with the bench tool). Ignored by
//! default; run in release:
//!
//! ```sh
//! cargo test --release -p switchboard-server --test measure -- --ignored --nocapture --test-threads 1
//! ```
//!
//! They start the real binary, so RSS and CPU are the server's alone (the clients run in this
//! test process on the same 2-core machine). Each also checks what it measured: every
//! connection still served, every message delivered, in order.

mod common;
#[path = "measure_parts/tls.rs"]
mod tls;
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
    // Every connection measured is alive and served.
    for (i, c) in clients.iter_mut().enumerate() {
        let pong = c.request(json!({"type": "ping"}), i as u64).await;
        assert_eq!(pong["type"], "pong", "connection {i}");
    }
}

/// `seqs` are consecutive: each message delivered once, in order.
fn assert_consecutive(seqs: &[u64], what: &str) {
    let first = seqs.first().copied().unwrap_or(0);
    let expected: Vec<u64> = (first..first + seqs.len() as u64).collect();
    assert_eq!(seqs, expected, "{what}: delivered once each, in order");
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
            let mut seqs = Vec::with_capacity(MESSAGES);
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
                    seqs.push(v["seq"].as_u64().unwrap());
                }
            }
            assert_consecutive(&seqs, "a subscriber");
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
            publish_now(&http, &conv).await;
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

/// Publishes the current time (`{"t": now_us()}`) to `conv` through the server API.
async fn publish_now(http: &Http, conv: &str) {
    let (s, _) = http
        .server(
            "/v1/server/publish",
            json!({"conv": conv, "body": {"t": now_us()}}),
        )
        .await;
    assert_eq!(s, 201);
}

fn now_us() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_micros() as u64
}

fn percentiles(mut v: Vec<u64>) -> (f64, f64) {
    v.sort_unstable();
    let at = |p: f64| v[((v.len() as f64 * p) as usize).min(v.len() - 1)] as f64 / 1000.0;
    (at(0.5), at(0.99))
}

/// Publisher on node A, subscriber on node B, one Redis: publish-to-delivery latency across
/// nodes at a steady 1,000 messages/s, and Redis commands per published message.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore]
async fn cluster_latency_across_nodes_and_redis_commands_per_message() {
    let redis = switchboard_testkit::RedisServer::start();
    let url = redis.url();
    let args = [
        "--redis",
        url.as_str(),
        "--publish-rate",
        "0",
        "--frame-rate",
        "0",
    ];
    let (da, db) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let a = NodeProcess::start(da.path(), &args).await;
    let b = NodeProcess::start(db.path(), &args).await;
    let (_, token) = a.http.user("lat").await;
    let room = a.http.room(&token, "across", "public").await;
    let conv = format!("room:{room}");
    let mut sub = WsClient::connect(&format!("{}?token={token}", b.ws_url())).await;
    sub.expect("welcome").await;
    sub.request(json!({"type": "subscribe", "conv": conv}), 1)
        .await;
    let mut publ = WsClient::connect(&format!("{}?token={token}", a.ws_url())).await;
    publ.expect("welcome").await;
    const N: usize = 3000;
    let stats_before = redis.command("INFO commandstats");
    let conv2 = conv.clone();
    let publisher = tokio::spawn(async move {
        let mut tick = tokio::time::interval(Duration::from_millis(1));
        for i in 0..N {
            tick.tick().await;
            publ.send(json!({"type": "publish", "id": i, "conv": conv2, "body": {"t": now_us()}}))
                .await;
        }
        publ
    });
    let mut lat = Vec::with_capacity(N);
    let mut seqs = Vec::with_capacity(N);
    while lat.len() < N {
        let v = sub.next().await.expect("subscriber closed");
        if v["type"] == "message" {
            lat.push(now_us().saturating_sub(v["body"]["t"].as_u64().unwrap()));
            seqs.push(v["seq"].as_u64().unwrap());
        }
    }
    assert_consecutive(&seqs, "the subscriber on node B");
    let _publ = publisher.await.unwrap();
    let stats_after = redis.command("INFO commandstats");
    let calls = |s: &str| -> u64 {
        s.lines()
            .filter_map(|l| {
                l.split_once("calls=")
                    .and_then(|(_, r)| r.split(',').next()?.parse::<u64>().ok())
            })
            .sum()
    };
    let per_msg = (calls(&stats_after) - calls(&stats_before)) as f64 / N as f64;
    let (p50, p99) = percentiles(lat);
    println!(
        "cluster, 2 nodes, 1000 msg/s from node A to a subscriber on node B: latency p50 {p50:.2} ms p99 {p99:.2} ms; \
         {per_msg:.2} Redis commands per published message (all commands, script internals, leases and pub/sub included)"
    );
}

/// For each transport: memory per idle authenticated session, and publish-to-delivery latency
/// at 500 messages/s.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore]
async fn per_transport_latency_and_idle_memory() {
    let dir = tempfile::tempdir().unwrap();
    let proc = NodeProcess::start(
        dir.path(),
        // A thousand TCP clients and long polls from one address: past the per-address cap.
        &[
            "--tcp-listen",
            "127.0.0.1:0",
            "--publish-rate",
            "0",
            "--max-connections-per-ip",
            "0",
        ],
    )
    .await;
    let pid = proc.child.id().unwrap();
    let (_, token) = proc.http.user("t").await;
    let tcp_addr = {
        let (_, n) = proc.http.call("GET", "/v1/node", None, None).await;
        n["endpoints"]["tcp"]
            .as_str()
            .unwrap()
            .trim_start_matches("tcp://")
            .parse::<std::net::SocketAddr>()
            .unwrap()
    };
    const IDLE: usize = 1000;
    // WebSocket
    tokio::time::sleep(Duration::from_millis(300)).await;
    let r0 = proc_rss_kib(pid);
    let mut ws = Vec::new();
    for _ in 0..IDLE {
        let mut c = WsClient::connect(&format!("{}?token={token}", proc.ws_url())).await;
        c.expect("welcome").await;
        ws.push(c);
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    let r1 = proc_rss_kib(pid);
    let mut tcp = Vec::new();
    for _ in 0..IDLE {
        let mut c = TcpClient::connect(tcp_addr).await;
        c.send(json!({"type": "auth", "token": token})).await;
        c.expect("welcome").await;
        tcp.push(c);
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    let r2 = proc_rss_kib(pid);
    // Idle long-poll sessions, each with its GET held open (as a real client would).
    let mut polls = Vec::new();
    for _ in 0..IDLE {
        let mut p = PollClient::open(&proc.http, &token, None).await.unwrap();
        p.expect("welcome").await;
        let url = format!("{}?after={}&wait_ms=25000", p.url, p.after);
        polls.push((p, tokio::spawn(reqwest::get(url))));
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    let r3 = proc_rss_kib(pid);
    let per = |a: u64, b: u64| (b.saturating_sub(a)) as f64 * 1024.0 / IDLE as f64;
    println!(
        "idle sessions ({IDLE} each), server RSS per session: WebSocket {:.0} B, TCP {:.0} B, long-poll {:.0} B (with its GET held open)",
        per(r0, r1),
        per(r1, r2),
        per(r2, r3)
    );
    drop(ws);
    drop(tcp);
    for (_, g) in &polls {
        g.abort();
    }
    drop(polls);

    let room = proc.http.room(&token, "lat", "public").await;
    let conv = format!("room:{room}");
    for kind in ["websocket", "tcp", "long-poll"] {
        let mut c: AnyClient = match kind {
            "websocket" => {
                AnyClient::Ws(WsClient::connect(&format!("{}?token={token}", proc.ws_url())).await)
            }
            "tcp" => {
                let mut t = TcpClient::connect(tcp_addr).await;
                t.send(json!({"type": "auth", "token": token})).await;
                AnyClient::Tcp(t)
            }
            _ => AnyClient::Poll(PollClient::open(&proc.http, &token, None).await.unwrap()),
        };
        c.expect("welcome").await;
        c.request(json!({"type": "subscribe", "conv": conv}), 1)
            .await;
        const N: usize = 1000;
        let http = proc.http.clone();
        let conv2 = conv.clone();
        let publisher = tokio::spawn(async move {
            let mut tick = tokio::time::interval(Duration::from_millis(2));
            for _ in 0..N {
                tick.tick().await;
                publish_now(&http, &conv2).await;
            }
        });
        let mut lat = Vec::with_capacity(N);
        let mut seqs = Vec::with_capacity(N);
        while lat.len() < N {
            let v = c.next().await.expect("closed");
            if v["type"] == "message" {
                lat.push(now_us().saturating_sub(v["body"]["t"].as_u64().unwrap()));
                seqs.push(v["seq"].as_u64().unwrap());
            }
        }
        assert_consecutive(&seqs, kind);
        publisher.await.unwrap();
        let (p50, p99) = percentiles(lat);
        println!(
            "{kind}: publish (server API) to delivery at 500 msg/s: p50 {p50:.2} ms, p99 {p99:.2} ms"
        );
    }
}
