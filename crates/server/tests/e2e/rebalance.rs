//! Rebalancing after scale-out: 600 clients (the Rust SDK) on two gateways; a third gateway
//! joins; the dispatcher moves a paced share of the clients of the hot gateways to it, until
//! each gateway holds 150-250; meanwhile a publisher streams to every client's room and no
//! client misses, repeats or reorders a message.

use crate::common;
use common::*;
use serde_json::json;
use std::collections::HashMap;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use switchboard_client::{Client, ClientConfig, Event, TransportChoice};
use switchboard_testkit::RedisServer;

const CLIENTS: usize = 600;
const ROOMS: usize = 6;

async fn gateway(redis: &RedisServer, dir: &Path, id: &str) -> NodeProcess {
    let extra = ["--reconnect-jitter-ms", "300", "--publish-rate", "0"];
    redis_node(&redis.url(), dir, "gateway", id, &extra).await
}

/// Connections each gateway holds now.
async fn loads(gateways: &[&NodeProcess]) -> Vec<u64> {
    let mut out = Vec::new();
    for g in gateways {
        let (_, v) = g.http.call("GET", "/v1/node", None, None).await;
        out.push(v["connections"].as_u64().unwrap_or(0));
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_new_gateway_gets_its_share_and_no_client_loses_a_message() {
    let redis = RedisServer::start();
    let dirs: Vec<_> = (0..4).map(|_| tempfile::tempdir().unwrap()).collect();
    let g1 = gateway(&redis, dirs[0].path(), "g1").await;
    let g2 = gateway(&redis, dirs[1].path(), "g2").await;
    let d = redis_node(
        &redis.url(),
        dirs[3].path(),
        "api,dispatcher",
        "d1",
        &[
            "--probe-interval-ms",
            "250",
            "--rebalance-band",
            "0.2",
            "--rebalance-step",
            "0.1",
        ],
    )
    .await;
    let (_, owner) = d
        .http
        .server("/v1/server/users/owner/tokens", json!({}))
        .await;
    let owner = owner["token"].as_str().unwrap().to_owned();
    let mut rooms = Vec::new();
    for r in 0..ROOMS {
        let id = d.http.room(&owner, &format!("grow-{r}"), "public").await;
        rooms.push(format!("room:{id}"));
    }
    let deadline = Instant::now() + Duration::from_secs(10);
    while loads(&[&g1, &g2]).await.len() < 2
        || d.http.call("GET", "/v1/dispatch", None, None).await.0 != 200
    {
        assert!(Instant::now() < deadline, "the dispatcher never placed");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    // Each client counts what it receives of its room: every seq once, in order.
    let setup = Instant::now();
    let next: Vec<Arc<Mutex<u64>>> = (0..CLIENTS).map(|_| Arc::new(Mutex::new(1))).collect();
    let mut clients = Vec::new();
    let mut readers = Vec::new();
    // Connected 50 at a time, to keep the setup short.
    for batch in (0..CLIENTS).collect::<Vec<_>>().chunks(50) {
        let mut joins = Vec::new();
        for &i in batch {
            let (http, conv, mine) = (d.http.clone(), rooms[i % ROOMS].clone(), next[i].clone());
            joins.push(tokio::spawn(async move {
                let (_, t) = http
                    .server(&format!("/v1/server/users/c{i}/tokens"), json!({}))
                    .await;
                let mut config = ClientConfig::new(http.base.clone(), t["token"].as_str().unwrap());
                config.transport = TransportChoice::WebSocket;
                let (client, mut events) = Client::connect(config).await.expect("client connects");
                client.subscribe(&conv).await.expect("subscribe");
                let reader = tokio::spawn(async move {
                    while let Some(event) = events.next().await {
                        match event {
                            Event::Message(m) if m.conv == conv => {
                                let mut n = mine.lock().unwrap();
                                assert_eq!(m.seq, *n, "client {i}: a gap, repeat or reorder");
                                *n += 1;
                            }
                            Event::ServerDisconnect { reason } => {
                                panic!("client {i} signed out: {reason}")
                            }
                            _ => {}
                        }
                    }
                });
                (client, reader)
            }));
        }
        for j in joins {
            let (client, reader) = j.await.unwrap();
            clients.push(client);
            readers.push(reader);
        }
    }
    let connected_in = setup.elapsed();
    let before = loads(&[&g1, &g2]).await;
    assert_eq!(before.iter().sum::<u64>(), CLIENTS as u64, "{before:?}");

    // A steady publisher over the whole scale-out.
    let published = Arc::new(Mutex::new(vec![0u64; ROOMS]));
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let (http, rooms2, count, stop2) = (
        d.http.clone(),
        rooms.clone(),
        published.clone(),
        stop.clone(),
    );
    let publisher = tokio::spawn(async move {
        let mut k = 0usize;
        while !stop2.load(std::sync::atomic::Ordering::SeqCst) {
            let r = k % ROOMS;
            let (s, v) = http
                .server("/v1/server/publish", json!({"conv": rooms2[r], "body": k}))
                .await;
            assert_eq!(s, 201, "{v}");
            count.lock().unwrap()[r] += 1;
            k += 1;
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    });

    let g3 = gateway(&redis, dirs[2].path(), "g3").await;
    let started = Instant::now();
    let gateways = [&g1, &g2, &g3];
    let mut now = loads(&gateways).await;
    while !now.iter().all(|&n| (150..=250).contains(&n))
        || now.iter().sum::<u64>() != CLIENTS as u64
    {
        assert!(
            started.elapsed() < Duration::from_secs(90),
            "not balanced within 90 s: {now:?}"
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
        now = loads(&gateways).await;
    }
    let balanced_in = started.elapsed();
    stop.store(true, std::sync::atomic::Ordering::SeqCst);
    publisher.await.unwrap();

    // Every client catches up to its room's last message.
    let published = published.lock().unwrap().clone();
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let behind: Vec<usize> = (0..CLIENTS)
            .filter(|&i| *next[i].lock().unwrap() <= published[i % ROOMS])
            .collect();
        if behind.is_empty() {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "{} clients never got their room's last message",
            behind.len()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let mut by_node: HashMap<String, usize> = HashMap::new();
    for c in &clients {
        *by_node.entry(c.node_id().unwrap_or_default()).or_default() += 1;
    }
    eprintln!(
        "rebalance: {CLIENTS} clients (connected in {connected_in:?}) {before:?} -> {now:?} in {balanced_in:?}; {} messages; clients see {by_node:?}",
        published.iter().sum::<u64>()
    );
    for c in clients {
        c.close().await;
    }
    for r in readers {
        r.abort();
    }
}
