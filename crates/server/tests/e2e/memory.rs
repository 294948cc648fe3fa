//! Memory is bounded in bytes, not only in frames (issue 13, finding 2), tested the way the
//! audit attacked it: history replies are capped in bytes and say `more`, clients page on, and
//! a node under the attacks (history requests that are never read, bursts of large pages over
//! HTTP) keeps its resident memory within a bound and gives a burst's memory back.

use crate::common;
use common::*;
use serde_json::{Value, json};
use std::time::{Duration, Instant};
use switchboard_client::{Client as Sdk, ClientConfig};

/// The node's resident memory, from /proc (the node is a child process).
fn rss_mb(node: &NodeProcess) -> f64 {
    let pid = node.child.id().expect("running");
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).expect("proc status");
    let kb: f64 = status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .expect("VmRSS");
    kb / 1024.0
}

/// A node (a child process) with a public room of `n` messages of about `kb` KB each, stored
/// through the server API; returns the node, a member's token and the room.
async fn node_with_large_history(
    dir: &tempfile::TempDir,
    extra: &[&str],
    n: usize,
    kb: usize,
) -> (NodeProcess, String, String) {
    let node = NodeProcess::start(dir.path(), extra).await;
    let (_, token) = node.http.user("reader").await;
    let room = node.http.room(&token, "big", "public").await;
    let text = "x".repeat(kb * 1000);
    for i in 0..n {
        let body = json!({"conv": format!("room:{room}"), "body": {"i": i, "text": text}});
        let (status, v) = node.http.server("/v1/server/publish", body).await;
        assert_eq!(status, 201, "{v}");
    }
    (node, token, room)
}

fn seq_list(v: &Value) -> Vec<u64> {
    v["messages"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["seq"].as_u64().unwrap())
        .collect()
}

#[tokio::test]
async fn history_replies_are_capped_in_bytes_say_more_and_clients_page_on() {
    let node = TestNode::start_with(|c| c.limits.history_page_bytes = 40_000).await;
    let (_, token) = node.user("alice").await;
    let room = node.http.room(&token, "r", "public").await;
    let text = "y".repeat(9_000);
    for i in 1..=20 {
        node.http
            .publish(&token, &room, json!({"i": i, "text": text}))
            .await;
    }
    // HTTP, forward: cut after 4 messages of ~9 KB, `more`, then the rest page by page.
    let path = |q: &str| format!("/v1/rooms/{room}/messages?{q}");
    let (status, v) = node.http.get(&path("after=0&limit=500"), &token).await;
    assert_eq!(status, 200);
    assert_eq!(seq_list(&v), vec![1, 2, 3, 4]);
    assert_eq!(v["more"], true);
    let mut got = seq_list(&v);
    while got.len() < 20 {
        let (_, v) = node
            .http
            .get(
                &path(&format!("after={}&limit=500", got.last().unwrap())),
                &token,
            )
            .await;
        let page = seq_list(&v);
        assert!(!page.is_empty() && page.len() <= 4);
        assert_eq!(v["more"] == true, got.len() + page.len() < 20);
        got.extend(page);
    }
    assert_eq!(got, (1..=20).collect::<Vec<_>>());
    // Backwards (the latest, then before): the cut keeps the newest.
    let (_, v) = node.http.get(&path("limit=500"), &token).await;
    assert_eq!(seq_list(&v), vec![17, 18, 19, 20]);
    assert_eq!(v["more"], true);
    let (_, v) = node.http.get(&path("before=17&limit=500"), &token).await;
    assert_eq!(seq_list(&v), vec![13, 14, 15, 16]);
    // A page that fits says nothing more.
    let (_, v) = node.http.get(&path("after=0&limit=3"), &token).await;
    assert_eq!(seq_list(&v), vec![1, 2, 3]);
    assert!(v.get("more").is_none());

    // The same over a frame.
    let mut c = node.connect(&token).await;
    let conv = format!("room:{room}");
    c.send(json!({"type": "history", "id": 7, "conv": conv, "after": 0, "limit": 500}))
        .await;
    let h = c.expect("history").await;
    assert_eq!(seq_list(&h), vec![1, 2, 3, 4]);
    assert_eq!(h["more"], true);

    // The Rust SDK pages on by itself: asked for 20, it gets 20.
    let (client, _events) = Sdk::connect(ClientConfig::new(node.http.base.clone(), token.clone()))
        .await
        .expect("connect");
    let all = client
        .history(&conv, Some(0), None, Some(20))
        .await
        .unwrap();
    assert_eq!(
        all.iter().map(|m| m.seq).collect::<Vec<_>>(),
        (1..=20).collect::<Vec<_>>()
    );
    let latest = client.history(&conv, None, None, Some(10)).await.unwrap();
    assert_eq!(
        latest.iter().map(|m| m.seq).collect::<Vec<_>>(),
        (11..=20).collect::<Vec<_>>()
    );
    client.close().await;
}

#[tokio::test]
async fn history_requests_never_read_do_not_grow_the_node() {
    // 150 messages of ~60 KB (9 MB) in one room: uncapped, every `history` request of 500 was a
    // 9 MB frame, and a connection that never reads could queue 30 of them.
    let dir = tempfile::tempdir().unwrap();
    let (node, token, room) = node_with_large_history(&dir, &[], 150, 60).await;
    let before = rss_mb(&node);
    let mut attackers = Vec::new();
    for _ in 0..3 {
        let mut c = WsClient::connect(&node.ws_url()).await;
        c.send(json!({"type": "auth", "token": token})).await;
        for i in 0..30 {
            let f =
                json!({"type": "history", "id": i, "conv": format!("room:{room}"), "limit": 500});
            c.send(f).await;
        }
        attackers.push(c); // never read
    }
    // Give the node time to do what it will with them.
    let mut peak = before;
    for _ in 0..20 {
        tokio::time::sleep(Duration::from_millis(100)).await;
        peak = peak.max(rss_mb(&node));
    }
    eprintln!("history attack: RSS {before:.0} MB before, {peak:.0} MB at the peak");
    assert!(
        peak - before < 64.0,
        "RSS grew from {before:.0} MB to {peak:.0} MB"
    );
    // The node still serves others meanwhile.
    let (status, _) = node.http.get("/healthz", "").await;
    assert_eq!(status, 200);
    drop(attackers);
}

#[tokio::test]
async fn a_burst_of_large_history_pages_gives_its_memory_back() {
    let dir = tempfile::tempdir().unwrap();
    let (node, token, room) = node_with_large_history(&dir, &[], 150, 60).await;
    let before = rss_mb(&node);
    // 8 clients each read 5 pages of up to 300 messages of ~60 KB, at once.
    let mut readers = Vec::new();
    for _ in 0..8 {
        let http = node.http.clone();
        let (token, room) = (token.clone(), room.clone());
        readers.push(tokio::spawn(async move {
            let mut after = 0;
            for _ in 0..5 {
                let path = format!("/v1/rooms/{room}/messages?after={after}&limit=300");
                let (status, v) = http.get(&path, &token).await;
                assert_eq!(status, 200);
                after = seq_list(&v).last().copied().unwrap_or(0) % 140;
            }
        }));
    }
    for r in readers {
        r.await.unwrap();
    }
    eprintln!(
        "history burst: RSS {before:.0} MB before, {:.0} MB right after",
        rss_mb(&node)
    );
    // Within 30 s of the burst, the node is back within 64 MB of where it was.
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let now = rss_mb(&node);
        if now - before < 64.0 {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "RSS still {now:.0} MB 30 s after the burst (was {before:.0} MB)"
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}
