//! Measures a Socket.IO server's memory per idle WebSocket connection: opens N WebSocket
//! sessions (each connected to namespace `/`), holds them, and reports the growth of the
//! server's VmRSS divided by N (read before the first connection and after the last, settled).
//!
//! ```text
//! cargo run --release -p switchboard-socketio --example protocol-suite -- --listen 127.0.0.1:3000 --ping-interval-ms 60000 &
//! cargo run --release -p switchboard-socketio --example idle-clients -- --url ws://127.0.0.1:3000 --connections 5000 --server-pid $!
//! ```

use std::time::Duration;

use clap::Parser;
use futures_util::{SinkExt, StreamExt};
use tokio_tungstenite::tungstenite::Message;

#[derive(Parser)]
struct Args {
    /// The server's base URL (`ws://host:port`).
    #[arg(long, default_value = "ws://127.0.0.1:3000")]
    url: String,
    /// How many connections to open (at most 50,000).
    #[arg(long, default_value_t = 5000)]
    connections: usize,
    /// The server's process id, whose VmRSS is read.
    #[arg(long)]
    server_pid: u32,
    /// Open bare Engine.IO sessions at `/engine.io/` instead (no Socket.IO CONNECT).
    #[arg(long)]
    engine_only: bool,
    /// Seconds to let the server settle before the last reading.
    #[arg(long, default_value_t = 3.0)]
    settle: f64,
}

/// The VmRSS of `pid`, in KiB.
fn rss_kib(pid: u32) -> u64 {
    let status =
        std::fs::read_to_string(format!("/proc/{pid}/status")).expect("the server's /proc status");
    let line = status
        .lines()
        .find(|l| l.starts_with("VmRSS:"))
        .expect("a VmRSS line");
    line.split_whitespace()
        .nth(1)
        .and_then(|v| v.parse().ok())
        .expect("a VmRSS figure")
}

#[tokio::main]
async fn main() {
    let args = Args::parse();
    assert!(args.connections <= 50_000, "at most 50,000 connections");
    let path = if args.engine_only {
        "engine.io"
    } else {
        "socket.io"
    };
    let url = format!("{}/{path}/?EIO=4&transport=websocket", args.url);
    let engine_only = args.engine_only;
    let before = rss_kib(args.server_pid);
    let mut held = Vec::with_capacity(args.connections);
    let started = std::time::Instant::now();
    for chunk in 0..args.connections.div_ceil(100) {
        let batch = (chunk * 100..((chunk + 1) * 100).min(args.connections)).map(|_| {
            let url = url.clone();
            async move {
                let (mut ws, _) = tokio_tungstenite::connect_async(&url)
                    .await
                    .expect("WebSocket handshake");
                ws.next().await.expect("open packet").expect("open packet");
                if !engine_only {
                    ws.send(Message::Text("40".into())).await.expect("CONNECT");
                    ws.next()
                        .await
                        .expect("CONNECT reply")
                        .expect("CONNECT reply");
                }
                ws
            }
        });
        held.extend(futures_util::future::join_all(batch).await);
    }
    let opened = started.elapsed();
    tokio::time::sleep(Duration::from_secs_f64(args.settle)).await;
    let after = rss_kib(args.server_pid);
    let per = (after.saturating_sub(before)) as f64 / args.connections as f64;
    println!(
        "connections {} opened in {:.1} s; server VmRSS {} KiB -> {} KiB; {:.2} KiB per idle connection",
        args.connections,
        opened.as_secs_f64(),
        before,
        after,
        per
    );
    drop(held);
}
