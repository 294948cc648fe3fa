//! Chaos: 300 SDK clients in 10 rooms on three gateways, a publisher sending 5,000 messages at a
//! steady rate, one gateway SIGKILLed and another drained while it runs. Every client must end
//! with every message of its room exactly once and in seq order, and must never connect to a
//! node after the dispatcher dropped it. Reconnect times are printed (p50/p99).

use crate::common;
use common::*;
use serde_json::json;
use std::collections::HashMap;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use switchboard_client::{Client, ClientConfig, Event, TransportChoice};
use switchboard_testkit::RedisServer;

const CLIENTS: usize = 300;
const ROOMS: usize = 10;
const MESSAGES: usize = 5_000;
const PER_ROOM: u64 = (MESSAGES / ROOMS) as u64;

async fn gateway(redis: &RedisServer, dir: &Path, id: &str) -> NodeProcess {
    let url = redis.url();
    let args = [
        "--roles",
        "gateway",
        "--redis",
        url.as_str(),
        "--node-id",
        id,
        "--lease-ms",
        "2000",
        "--drain-window-ms",
        "2000",
        "--reconnect-jitter-ms",
        "500",
        "--publish-rate",
        "0",
        "--tcp-listen",
        "127.0.0.1:0",
    ];
    NodeProcess::start(dir, &args).await
}

/// What one client saw.
#[derive(Default)]
struct Seen {
    /// (node id, when) of every connection made.
    connections: Vec<(String, Instant)>,
    /// How long each reconnect took, from losing the connection to the next welcome.
    reconnects: Vec<Duration>,
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn clients_lose_nothing_when_a_gateway_dies_and_another_drains() {
    let redis = RedisServer::start();
    let dirs: Vec<_> = (0..4).map(|_| tempfile::tempdir().unwrap()).collect();
    let g1 = gateway(&redis, dirs[0].path(), "g1").await;
    let g2 = gateway(&redis, dirs[1].path(), "g2").await;
    let _g3 = gateway(&redis, dirs[2].path(), "g3").await;
    let url = redis.url();
    let d = NodeProcess::start(
        dirs[3].path(),
        &[
            "--roles",
            "api,dispatcher",
            "--redis",
            url.as_str(),
            "--node-id",
            "d1",
            "--probe-interval-ms",
            "250",
        ],
    )
    .await;
    // Wait until the dispatcher places on all three gateways.
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let mut seen = std::collections::HashSet::new();
        for _ in 0..30 {
            let (_, v) = d.http.call("GET", "/v1/dispatch", None, None).await;
            if let Some(n) = v["node_id"].as_str() {
                seen.insert(n.to_owned());
            }
        }
        if seen.len() == 3 {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "gateways never all in rotation: {seen:?}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }

    let (_, owner) = d
        .http
        .server("/v1/server/users/owner/tokens", json!({}))
        .await;
    let owner = owner["token"].as_str().unwrap().to_owned();
    let mut rooms = Vec::new();
    for r in 0..ROOMS {
        rooms.push(format!(
            "room:{}",
            d.http.room(&owner, &format!("chaos-{r}"), "public").await
        ));
    }

    // 300 SDK clients, 30 per room, every transport choice the SDK has.
    let seen: Vec<Arc<Mutex<Seen>>> = (0..CLIENTS).map(|_| Arc::default()).collect();
    let mut readers = Vec::new();
    let mut clients = Vec::new();
    for i in 0..CLIENTS {
        let (_, t) = d
            .http
            .server(&format!("/v1/server/users/c{i}/tokens"), json!({}))
            .await;
        let mut config = ClientConfig::new(d.http.base.clone(), t["token"].as_str().unwrap());
        config.transport = match i % 3 {
            0 => TransportChoice::WebSocket,
            1 => TransportChoice::Tcp,
            _ => TransportChoice::LongPoll,
        };
        let (client, mut events) = Client::connect(config).await.expect("client connects");
        let conv = rooms[i % ROOMS].clone();
        client.subscribe(&conv).await.expect("subscribe");
        let me = seen[i].clone();
        me.lock()
            .unwrap()
            .connections
            .push((client.node_id().unwrap(), Instant::now()));
        readers.push(tokio::spawn(async move {
            let mut next = 1u64;
            let mut lost_at: Option<Instant> = None;
            while next <= PER_ROOM {
                let event = tokio::time::timeout(Duration::from_secs(60), events.next())
                    .await
                    .unwrap_or_else(|_| panic!("client {i} stalled at seq {next}"))
                    .unwrap_or_else(|| panic!("client {i}'s events ended at seq {next}"));
                match event {
                    Event::Message(m) if m.conv == conv => {
                        assert_eq!(
                            m.seq, next,
                            "client {i}: expected seq {next}, got {} (gap or repeat)",
                            m.seq
                        );
                        next += 1;
                    }
                    Event::Disconnected { .. } => {
                        lost_at.get_or_insert_with(Instant::now);
                    }
                    Event::Connected { node_id, .. } => {
                        let mut s = me.lock().unwrap();
                        s.connections.push((node_id, Instant::now()));
                        if let Some(at) = lost_at.take() {
                            s.reconnects.push(at.elapsed());
                        }
                    }
                    Event::ServerDisconnect { reason } => {
                        panic!("client {i} was signed out: {reason}")
                    }
                    _ => {}
                }
            }
        }));
        clients.push(client);
    }

    // The publisher: 5,000 messages at a steady 250/s, round-robin over the rooms.
    let http = d.http.clone();
    let rooms2 = rooms.clone();
    let publisher = tokio::spawn(async move {
        let mut tick = tokio::time::interval(Duration::from_millis(4));
        for k in 0..MESSAGES {
            tick.tick().await;
            let (s, v) = http
                .server(
                    "/v1/server/publish",
                    json!({"conv": rooms2[k % ROOMS], "body": k}),
                )
                .await;
            assert_eq!(s, 201, "{v}");
        }
    });

    tokio::time::sleep(Duration::from_secs(5)).await;
    g1.signal("KILL");
    let killed_at = Instant::now();
    tokio::time::sleep(Duration::from_secs(5)).await;
    let resp = reqwest::Client::new()
        .post(format!("{}/v1/server/nodes/self/drain", g2.http.base))
        .header("x-api-key", API_KEY)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 202);
    let drained_at = Instant::now();

    publisher.await.unwrap();
    for r in readers {
        r.await.unwrap();
    }

    let mut reconnects = Vec::new();
    for (i, s) in seen.iter().enumerate() {
        let s = s.lock().unwrap();
        for (node, at) in &s.connections {
            assert!(
                !(node == "g1" && *at > killed_at),
                "client {i} connected to the killed g1 after its death"
            );
            assert!(
                !(node == "g2" && *at > drained_at),
                "client {i} connected to the draining g2"
            );
        }
        reconnects.extend(s.reconnects.iter().copied());
    }
    assert!(
        reconnects.len() >= CLIENTS / 2,
        "most clients should have moved at least once: {}",
        reconnects.len()
    );
    reconnects.sort();
    let at =
        |p: f64| reconnects[((reconnects.len() as f64 * p) as usize).min(reconnects.len() - 1)];
    let mut by_node: HashMap<String, usize> = HashMap::new();
    for s in &seen {
        if let Some((n, _)) = s.lock().unwrap().connections.last() {
            *by_node.entry(n.clone()).or_default() += 1;
        }
    }
    println!(
        "chaos: {CLIENTS} clients, {MESSAGES} messages, {} reconnects; reconnect time p50 {:?} p99 {:?}; final placement {by_node:?}",
        reconnects.len(),
        at(0.5),
        at(0.99)
    );
    for c in clients {
        c.close().await;
    }
}
