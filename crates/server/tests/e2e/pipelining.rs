//! Publishes pipelined on one connection: a client sends many before the first is answered,
//! and gets the answers in the order it sent them, seqs in that order, each `published` before
//! its own copy of the message, and other replies after the publishes sent before them.

use crate::common;
use common::*;
use serde_json::{Value, json};
use std::collections::HashMap;

/// Commits that stored messages so far (`switchboard_commit_messages_count`).
async fn commits_with_messages(node: &TestNode) -> f64 {
    let url = format!("{}/metrics", node.http.base);
    let text = node.http.client.get(url).send().await.unwrap();
    metric(
        &text.text().await.unwrap(),
        "switchboard_commit_messages_count",
    )
}

#[tokio::test]
async fn sixty_four_publishes_in_flight_are_answered_in_order_before_their_copies() {
    let node = TestNode::start().await;
    let (alice_id, alice) = node.user("alice").await;
    let (bob_id, bob) = node.user("bob").await;
    let room = node.http.room(&alice, "busy", "public").await;
    let secret = node.http.room(&bob, "secret", "private").await;
    let (room_conv, dm_conv) = (format!("room:{room}"), format!("user:{bob_id}"));
    let own = format!("user:{alice_id}");

    let mut c = node.connect(&alice).await;
    c.send(json!({"type": "subscribe", "id": "s", "conv": room_conv}))
        .await;
    c.expect("subscribed").await;
    let commits_before = commits_with_messages(&node).await;
    // 64 publishes without waiting: rooms and DMs alternate, and one that must fail
    // (a private room alice is not in) sits in the middle; then a history request.
    let mut sent = Vec::new();
    for i in 0..64u64 {
        let conv = match i {
            31 => format!("room:{secret}"),
            i if i % 2 == 0 => room_conv.clone(),
            _ => dm_conv.clone(),
        };
        c.send(json!({"type": "publish", "id": i, "conv": conv, "body": {"i": i}}))
            .await;
        sent.push(conv);
    }
    c.send(json!({"type": "history", "id": "h", "conv": room_conv, "limit": 1}))
        .await;

    let mut answers = Vec::new();
    let mut last_seq: HashMap<String, u64> = HashMap::new();
    let mut copies_seen = Vec::new();
    let history = loop {
        let f: Value = c.next().await.expect("a frame");
        match f["type"].as_str().unwrap() {
            "published" | "error" => {
                let id = f["id"].as_u64().expect("a publish's id");
                if f["type"] == "published" {
                    let conv = f["conv"].as_str().unwrap().to_owned();
                    let seq = f["seq"].as_u64().unwrap();
                    let prev = last_seq.insert(conv.clone(), seq).unwrap_or(0);
                    assert!(
                        seq > prev,
                        "seqs in the order sent: {conv} {prev} then {seq}"
                    );
                } else {
                    assert_eq!(id, 31);
                    assert_eq!(f["code"], "not_member");
                }
                answers.push(id);
            }
            "message" => {
                // The own copy of a publish comes after its answer.
                let conv = f["conv"].as_str().unwrap().to_owned();
                let seq = f["seq"].as_u64().unwrap();
                assert!(conv == room_conv || conv == own, "{f}");
                let answered = if conv == own {
                    true // the DM copy has a seq of its own stream; its answer came first
                } else {
                    last_seq.get(&conv).is_some_and(|s| *s >= seq)
                };
                assert!(answered, "the copy of {conv} #{seq} came before its answer");
                copies_seen.push((conv, seq));
            }
            "history" => break f,
            other => panic!("unexpected {other}: {f}"),
        }
    };
    assert_eq!(
        answers,
        (0..64).collect::<Vec<_>>(),
        "answers in the order sent, the failure included"
    );
    assert_eq!(history["id"], "h", "the history reply after every publish");
    // In flight together, they were committed together: fewer commits than publishes (one
    // publish per commit when a connection waited for each answer).
    let commits = commits_with_messages(&node).await - commits_before;
    eprintln!("63 publishes in {commits} commits");
    assert!(commits < 40.0, "63 publishes took {commits} commits");
    assert_eq!(last_seq.get(&room_conv), Some(&32));
    assert_eq!(
        last_seq.get(&dm_conv),
        Some(&31),
        "31 DMs: the odd ones but 31"
    );
    // Every copy arrives, once, in order.
    let rest = c
        .messages(
            &room_conv,
            32 - copies_seen.iter().filter(|(c, _)| *c == room_conv).count(),
        )
        .await;
    let mut room_seqs: Vec<u64> = copies_seen
        .iter()
        .filter(|(c, _)| *c == room_conv)
        .map(|(_, s)| *s)
        .collect();
    room_seqs.extend(rest.iter().map(|m| m["seq"].as_u64().unwrap()));
    assert_eq!(room_seqs, (1..=32).collect::<Vec<_>>());
    // Bob got his 32 DMs in order.
    let mut b = node.connect(&bob).await;
    b.send(json!({"type": "history", "id": 1, "conv": dm_conv, "limit": 100}))
        .await;
    let h = b.expect("history").await;
    let bodies: Vec<u64> = h["messages"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["body"]["i"].as_u64().unwrap())
        .collect();
    assert_eq!(
        bodies,
        (0..64)
            .filter(|i| i % 2 == 1 && *i != 31)
            .collect::<Vec<_>>()
    );
}
