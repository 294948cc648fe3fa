//! The dispatcher over real gateway processes on a real Redis: even shares, weights, full
//! nodes skipped, everyone full answered 503, a killed gateway dropped within 5 s, a drained
//! gateway's clients told to reconnect and landing elsewhere.

use crate::common;
use common::*;
use serde_json::{Value, json};
use std::collections::HashMap;
use std::path::Path;
use std::time::{Duration, Instant};
use switchboard_testkit::RedisServer;

async fn gateway(redis: &RedisServer, dir: &Path, id: &str, extra: &[&str]) -> NodeProcess {
    let url = redis.url();
    let mut args = vec![
        "--roles",
        "gateway",
        "--redis",
        url.as_str(),
        "--node-id",
        id,
        "--lease-ms",
        "2000",
        "--drain-window-ms",
        "1000",
    ];
    args.extend_from_slice(extra);
    NodeProcess::start(dir, &args).await
}

async fn dispatcher(redis: &RedisServer, dir: &Path) -> NodeProcess {
    let url = redis.url();
    let args = [
        "--roles",
        "api,dispatcher",
        "--redis",
        url.as_str(),
        "--node-id",
        "d1",
        "--probe-interval-ms",
        "200",
        "--lease-ms",
        "2000",
    ];
    NodeProcess::start(dir, &args).await
}

/// Dispatches `n` times (no affinity); counts answers per node id (503s under "503").
async fn shares(d: &Http, n: usize, user: Option<&str>) -> HashMap<String, usize> {
    let mut counts = HashMap::new();
    for i in 0..n {
        let path = match user {
            Some(u) => format!("/v1/dispatch?user_id={u}{i}"),
            None => "/v1/dispatch".to_owned(),
        };
        let (s, v) = d.call("GET", &path, None, None).await;
        let key = if s == 200 {
            v["node_id"].as_str().unwrap().to_owned()
        } else {
            s.to_string()
        };
        *counts.entry(key).or_default() += 1;
    }
    counts
}

/// Waits until dispatching hands out exactly `ids` (sampling `per_check` dispatches a round:
/// every placement counts towards a gateway's load until its next probe).
async fn until_rotation(d: &Http, ids: &[&str], within: Duration) {
    until_rotation_sampled(d, ids, within, 40).await
}

async fn until_rotation_sampled(d: &Http, ids: &[&str], within: Duration, per_check: usize) {
    let deadline = Instant::now() + within;
    loop {
        let seen = shares(d, per_check, None).await;
        let mut got: Vec<&str> = seen.keys().map(String::as_str).collect();
        got.sort();
        let mut want = ids.to_vec();
        want.sort();
        if got == want {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "rotation is {got:?}, expected {want:?}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn equal_weights_share_evenly_and_weight_three_gets_the_most() {
    let redis = RedisServer::start();
    let dirs: Vec<_> = (0..5).map(|_| tempfile::tempdir().unwrap()).collect();
    let _g1 = gateway(&redis, dirs[0].path(), "g1", &[]).await;
    let _g2 = gateway(&redis, dirs[1].path(), "g2", &[]).await;
    let _g3 = gateway(&redis, dirs[2].path(), "g3", &[]).await;
    let d = dispatcher(&redis, dirs[3].path()).await;
    until_rotation(&d.http, &["g1", "g2", "g3"], Duration::from_secs(10)).await;

    for user in [None, Some("u")] {
        let counts = shares(&d.http, 900, user).await;
        for g in ["g1", "g2", "g3"] {
            let c = counts.get(g).copied().unwrap_or(0);
            assert!(
                (180..=423).contains(&c),
                "{g} got {c} of 900 (affinity {user:?}): {counts:?}"
            );
        }
    }

    // A fourth gateway with weight 3 takes the largest share.
    let _g4 = gateway(&redis, dirs[4].path(), "g4", &["--weight", "3"]).await;
    until_rotation(&d.http, &["g1", "g2", "g3", "g4"], Duration::from_secs(10)).await;
    for user in [None, Some("w")] {
        let counts = shares(&d.http, 900, user).await;
        let heavy = counts["g4"];
        assert!(
            counts.iter().all(|(g, c)| g == "g4" || *c < heavy),
            "weight 3 must lead: {counts:?}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_gateway_is_skipped_and_all_full_is_503_with_retry_after() {
    let redis = RedisServer::start();
    let dirs: Vec<_> = (0..3).map(|_| tempfile::tempdir().unwrap()).collect();
    // Capacity 40 each; 36 connections (90%) is the high-water mark.
    let g1 = gateway(&redis, dirs[0].path(), "g1", &["--max-connections", "40"]).await;
    let g2 = gateway(&redis, dirs[1].path(), "g2", &["--max-connections", "40"]).await;
    let d = dispatcher(&redis, dirs[2].path()).await;
    until_rotation_sampled(&d.http, &["g1", "g2"], Duration::from_secs(10), 10).await;
    let (_, token) = d.http.user("filler").await;

    let mut held = Vec::new();
    for _ in 0..36 {
        let mut c = WsClient::connect(&format!("{}?token={token}", g1.ws_url())).await;
        c.expect("welcome").await;
        held.push(c);
    }
    until_rotation_sampled(&d.http, &["g2"], Duration::from_secs(5), 6).await;

    // Fill g2 too: nobody can take a client.
    for _ in 0..36 {
        let mut c = WsClient::connect(&format!("{}?token={token}", g2.ws_url())).await;
        c.expect("welcome").await;
        held.push(c);
    }
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let resp = reqwest::get(format!("{}/v1/dispatch", d.http.base))
            .await
            .unwrap();
        if resp.status() == 503 {
            let retry: u64 = resp.headers()["retry-after"]
                .to_str()
                .unwrap()
                .parse()
                .unwrap();
            assert!((1..=5).contains(&retry));
            let v: Value = resp.json().await.unwrap();
            assert_eq!(v["error"]["code"], "overloaded");
            break;
        }
        assert!(
            Instant::now() < deadline,
            "dispatch kept placing clients on full gateways"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_gateway_is_no_longer_handed_out_within_5_s() {
    let redis = RedisServer::start();
    let dirs: Vec<_> = (0..4).map(|_| tempfile::tempdir().unwrap()).collect();
    let _g1 = gateway(&redis, dirs[0].path(), "g1", &[]).await;
    let mut g2 = gateway(&redis, dirs[1].path(), "g2", &[]).await;
    let _g3 = gateway(&redis, dirs[2].path(), "g3", &[]).await;
    let d = dispatcher(&redis, dirs[3].path()).await;
    until_rotation(&d.http, &["g1", "g2", "g3"], Duration::from_secs(10)).await;
    g2.signal("KILL");
    g2.wait(WAIT).await;
    let killed = Instant::now();
    until_rotation(&d.http, &["g1", "g3"], Duration::from_secs(5)).await;
    let gone_after = killed.elapsed();
    assert!(gone_after < Duration::from_secs(5), "{gone_after:?}");
    let counts = shares(&d.http, 300, None).await;
    assert!(!counts.contains_key("g2"), "{counts:?}");
    // The answer names alternates, none of them the dead gateway.
    let (_, v) = d.http.call("GET", "/v1/dispatch", None, None).await;
    let alternates: Vec<&str> = v["alternates"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a["node_id"].as_str().unwrap())
        .collect();
    assert_eq!(alternates.len(), 1);
    assert!(!alternates.contains(&"g2"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_drained_gateway_tells_its_clients_to_reconnect_and_they_land_elsewhere() {
    let redis = RedisServer::start();
    let dirs: Vec<_> = (0..3).map(|_| tempfile::tempdir().unwrap()).collect();
    let _g1 = gateway(&redis, dirs[0].path(), "g1", &[]).await;
    let mut g2 = gateway(&redis, dirs[1].path(), "g2", &[]).await;
    let d = dispatcher(&redis, dirs[2].path()).await;
    until_rotation(&d.http, &["g1", "g2"], Duration::from_secs(10)).await;
    let (_, token) = d.http.user("traveller").await;
    let room = d.http.room(&token, "moving", "public").await;
    let conv = format!("room:{room}");
    let mut clients = Vec::new();
    for _ in 0..5 {
        let mut c = WsClient::connect(&format!("{}?token={token}", g2.ws_url())).await;
        c.expect("welcome").await;
        c.request(json!({"type": "subscribe", "conv": conv}), 1)
            .await;
        clients.push(c);
    }
    d.http.publish(&token, &room, json!("before")).await;

    let resp = reqwest::Client::new()
        .post(format!("{}/v1/server/nodes/self/drain", g2.http.base))
        .header("x-api-key", API_KEY)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 202);
    for c in &mut clients {
        let frames = c.until_closed().await;
        let kinds: Vec<&str> = frames.iter().filter_map(|f| f["type"].as_str()).collect();
        assert_eq!(
            &kinds[kinds.len() - 2..],
            ["reconnect", "disconnect"],
            "{frames:?}"
        );
    }
    assert_eq!(
        g2.wait(Duration::from_secs(30)).await,
        Some(0),
        "a drained node exits cleanly"
    );

    // Back through the dispatcher: g2 is never handed out, and the clients resume on g1.
    until_rotation(&d.http, &["g1"], Duration::from_secs(5)).await;
    d.http.publish(&token, &room, json!("meanwhile")).await;
    let (_, v) = d.http.call("GET", "/v1/dispatch", None, None).await;
    assert_eq!(v["node_id"], "g1");
    let ws = v["endpoints"]["ws"].as_str().unwrap();
    let mut c = WsClient::connect(&format!("{ws}?token={token}")).await;
    c.expect("welcome").await;
    let r = c
        .request(json!({"type": "subscribe", "conv": conv, "since": 1}), 2)
        .await;
    assert_eq!(r["recovered"], true);
    assert_eq!(c.messages(&conv, 1).await[0]["body"], "meanwhile");
}
