//! Ordering and resume under load: while several publishers hammer one room, subscribers that
//! joined at different moments (live from the start, replaying from 0 midway, resuming from a
//! seq midway) each see every seq exactly once, ascending, with no gap between replay and live.
//! The same holds for a room large enough to be written from several fan-out threads, while it
//! grows past that size. And a slow consumer is cut off without hurting anyone, then resumes
//! with nothing lost.

use crate::common;
use common::*;
use serde_json::json;
use std::time::Duration;

const PUBLISHERS: u64 = 4;
const PER_PUBLISHER: u64 = 250;
const TOTAL: u64 = PUBLISHERS * PER_PUBLISHER;

/// Reads message frames of `conv` until seq `TOTAL`, checking strict +1 order from `first`.
async fn assert_contiguous(c: &mut WsClient, conv: &str, first: u64) {
    assert_contiguous_to(c, conv, first, TOTAL).await
}

/// Reads message frames of `conv` until seq `last`, checking strict +1 order from `first`.
async fn assert_contiguous_to(c: &mut WsClient, conv: &str, first: u64, last: u64) {
    let mut expected = first;
    while expected <= last {
        let v = c
            .next()
            .await
            .unwrap_or_else(|| panic!("closed at seq {expected}"));
        if v["type"] != "message" || v["conv"] != conv {
            continue;
        }
        let seq = v["seq"].as_u64().unwrap();
        assert_eq!(
            seq, expected,
            "gap or duplicate: expected seq {expected}, got {seq}"
        );
        expected += 1;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_subscriber_sees_every_seq_once_in_order_while_publishers_hammer() {
    let node = TestNode::start_with(|c| {
        c.limits.publish_rate = 0;
        c.limits.outbound_queue = 4096;
    })
    .await;
    let (_, owner) = node.user("owner").await;
    let room = node.http.room(&owner, "busy", "public").await;
    let conv = format!("room:{room}");

    // Subscriber 1: live from the start.
    let (_, s1_token) = node.user("live").await;
    let mut s1 = node.connect(&s1_token).await;
    let r = s1
        .request(json!({"type": "subscribe", "conv": conv}), 1)
        .await;
    assert_eq!(r["head_seq"], 0);

    // Publishers: WebSocket connections publishing concurrently, plus one over HTTP.
    let mut tasks = Vec::new();
    for p in 0..PUBLISHERS {
        let (_, token) = node.user(&format!("pub{p}")).await;
        let mut c = node.connect(&token).await;
        let conv = conv.clone();
        let http = node.http.clone();
        let room = room.clone();
        tasks.push(tokio::spawn(async move {
            for i in 0..PER_PUBLISHER {
                if p == 0 {
                    // One publisher goes through HTTP, the others pipeline over WebSocket.
                    http.publish(&token, &room, json!({"p": p, "i": i})).await;
                } else {
                    c.send(json!({"type": "publish", "id": i, "conv": conv, "body": {"p": p, "i": i}, "client_msg_id": format!("{p}-{i}")})).await;
                }
            }
            if p != 0 {
                let mut acks = 0;
                while acks < PER_PUBLISHER {
                    let v = c.next().await.expect("publisher connection closed");
                    assert_ne!(v["type"], "error", "{v}");
                    if v["type"] == "published" {
                        acks += 1;
                    }
                }
            }
        }));
    }

    // Subscribers 2 and 3 join while the publishers run.
    tokio::time::sleep(Duration::from_millis(150)).await;
    let (_, s2_token) = node.user("replayer").await;
    let mut s2 = node.connect(&s2_token).await;
    s2.send(json!({"type": "subscribe", "id": 1, "conv": conv, "since": 0}))
        .await;

    tokio::time::sleep(Duration::from_millis(150)).await;
    let (_, s3_token) = node.user("resumer").await;
    let (_, h) = node
        .http
        .get(&format!("/v1/rooms/{room}/messages?limit=1"), &s3_token)
        .await;
    let resume_from = h["messages"][0]["seq"].as_u64().unwrap_or(0);
    let mut s3 = WsClient::connect(&node.ws_url()).await;
    s3.send(json!({"type": "auth", "token": s3_token, "resume": {conv.clone(): resume_from}}))
        .await;

    let (r1, r2, r3) = tokio::join!(
        assert_contiguous(&mut s1, &conv, 1),
        assert_contiguous(&mut s2, &conv, 1),
        assert_contiguous(&mut s3, &conv, resume_from + 1),
    );
    let _ = (r1, r2, r3);
    for t in tasks {
        t.await.unwrap();
    }
    let (_, h) = node
        .http
        .get(
            &format!("/v1/rooms/{room}/messages?before={}&limit=1", TOTAL + 1),
            &owner,
        )
        .await;
    assert_eq!(
        h["messages"][0]["seq"], TOTAL,
        "head is exactly the number of publishes"
    );
    node.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_room_growing_past_the_inline_fanout_keeps_every_subscriber_in_order() {
    // Past 32 local subscribers a room is written from the fan-out threads; below, on the
    // delivering thread. This room starts below and grows past it while messages flow.
    const LIVE: usize = 24;
    const JOINING: usize = 24;
    const MESSAGES: u64 = 600;
    let node = TestNode::start_with(|c| {
        c.limits.publish_rate = 0;
        c.limits.outbound_queue = 4096;
        c.fanout_threads = 2;
    })
    .await;
    let (_, owner) = node.user("owner").await;
    let room = node.http.room(&owner, "big", "public").await;
    let conv = format!("room:{room}");
    let mut live = Vec::new();
    for i in 0..LIVE {
        let (_, token) = node.user(&format!("live{i}")).await;
        let mut c = node.connect(&token).await;
        c.request(json!({"type": "subscribe", "conv": conv}), 1)
            .await;
        live.push(c);
    }
    let http = node.http.clone();
    let (room2, owner2) = (room.clone(), owner.clone());
    let publisher = tokio::spawn(async move {
        for i in 1..=MESSAGES {
            http.publish(&owner2, &room2, json!({"i": i})).await;
        }
    });
    // The rest join one by one while it publishes, each replaying from the start.
    let mut joined = Vec::new();
    for i in 0..JOINING {
        let (_, token) = node.user(&format!("join{i}")).await;
        let mut c = node.connect(&token).await;
        c.send(json!({"type": "subscribe", "id": 1, "conv": conv, "since": 0}))
            .await;
        joined.push(c);
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let checks = live
        .iter_mut()
        .chain(joined.iter_mut())
        .map(|c| assert_contiguous_to(c, &conv, 1, MESSAGES));
    futures_util::future::join_all(checks).await;
    publisher.await.unwrap();
    node.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slow_consumer_is_cut_off_and_resumes_without_loss() {
    let node = TestNode::start_with(|c| {
        c.limits.outbound_queue = 16;
        c.limits.write_timeout = Duration::from_secs(1);
    })
    .await;
    let (_, alice) = node.user("alice").await;
    let room = node.http.room(&alice, "firehose", "public").await;
    let conv = format!("room:{room}");
    let mut fast = node.connect(&alice).await;
    fast.request(json!({"type": "subscribe", "conv": conv}), 1)
        .await;
    let mut slow = node.connect(&alice).await;
    slow.request(json!({"type": "subscribe", "conv": conv}), 1)
        .await;

    // ~12 MB of messages: far more than the socket buffers hold while `slow` reads nothing.
    let payload = "z".repeat(60_000);
    const N: u64 = 200;
    let http = node.http.clone();
    let publisher = tokio::spawn(async move {
        for i in 1..=N {
            let (s, _) = http
                .server(
                    "/v1/server/publish",
                    json!({"conv": format!("room:{room}"), "body": {"i": i, "pad": payload}}),
                )
                .await;
            assert_eq!(s, 201);
        }
    });
    // The fast consumer keeps up and gets everything.
    let got = fast.messages(&conv, N as usize).await;
    assert_eq!(got.last().unwrap()["seq"], N);
    publisher.await.unwrap();

    // The slow one was cut: reading now yields some messages, then the end.
    let mut last_seq = 0;
    let mut frames = Vec::new();
    while let Some(v) = slow.next().await {
        if v["type"] == "message" {
            let seq = v["seq"].as_u64().unwrap();
            assert_eq!(seq, last_seq + 1);
            last_seq = seq;
        }
        frames.push(v["type"].clone());
    }
    assert!(
        last_seq < N,
        "the slow consumer should have been disconnected before getting all {N}"
    );
    let text = reqwest::get(format!("http://{}/metrics", node.addr))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        text.lines().any(|l| l
            .starts_with("switchboard_disconnects_total{reason=\"slow_consumer\"}")
            && !l.ends_with(" 0")),
        "slow_consumer disconnect not counted:\n{text}"
    );

    // It resumes from its last seq and loses nothing.
    let mut again = WsClient::connect(&node.ws_url()).await;
    again
        .send(json!({"type": "auth", "token": alice, "resume": {conv.clone(): last_seq}}))
        .await;
    let w = again.expect("welcome").await;
    assert_eq!(w["resumed"][&conv]["recovered"], true);
    let rest = again.messages(&conv, (N - last_seq) as usize).await;
    assert_eq!(rest.first().unwrap()["seq"], last_seq + 1);
    assert_eq!(rest.last().unwrap()["seq"], N);
    node.stop().await;
}
