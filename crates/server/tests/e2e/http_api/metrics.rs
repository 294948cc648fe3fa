//! The node's metrics over HTTP: the contract's series are exported and count publishes and
//! errors; group commits are counted with the messages in them.

use crate::common;
use common::*;
use serde_json::json;

async fn metrics_text(node: &TestNode) -> String {
    let resp = node
        .http
        .client
        .get(format!("{}/metrics", node.http.base))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status().as_u16(), 200);
    resp.text().await.unwrap()
}

#[tokio::test]
async fn metrics_expose_the_contract_series_and_count_publishes() {
    let node = TestNode::start().await;
    let (_, alice) = node.user("alice").await;
    let room = node.http.room(&alice, "lobby", "public").await;
    let _ws = node.connect(&alice).await;

    let text = metrics_text(&node).await;
    for name in [
        "switchboard_connections",
        "switchboard_messages_published_total",
        "switchboard_messages_delivered_total",
        "switchboard_bus_messages_received_total",
        "switchboard_publish_latency_seconds_count",
    ] {
        assert!(metric(&text, name).is_finite(), "{name} in\n{text}");
    }
    assert_eq!(metric(&text, "switchboard_connections"), 1.0);
    let errors_before = metric(&text, "switchboard_errors_total{code=\"unauthorized\"}");
    let not_found_before = metric(&text, "switchboard_errors_total{code=\"not_found\"}");
    let published_before = metric(&text, "switchboard_messages_published_total");
    let latency_before = metric(&text, "switchboard_publish_latency_seconds_count");

    node.http.publish(&alice, &room, json!("hello")).await;
    assert_error(
        node.http.get("/v1/me", "garbage-token").await,
        401,
        "unauthorized",
    );

    let text = metrics_text(&node).await;
    assert_eq!(
        metric(&text, "switchboard_messages_published_total"),
        published_before + 1.0
    );
    assert_eq!(
        metric(&text, "switchboard_publish_latency_seconds_count"),
        latency_before + 1.0
    );
    assert_eq!(
        metric(&text, "switchboard_errors_total{code=\"unauthorized\"}"),
        errors_before + 1.0
    );
    // Every HTTP error is counted, not only authentication failures.
    assert_error(
        node.http.get("/v1/rooms/r_missing", &alice).await,
        404,
        "not_found",
    );
    let text = metrics_text(&node).await;
    assert_eq!(
        metric(&text, "switchboard_errors_total{code=\"not_found\"}"),
        not_found_before + 1.0
    );
    node.stop().await;
}

#[tokio::test]
async fn metrics_count_group_commits_and_the_messages_in_them() {
    let node = TestNode::start().await;
    let (_, alice) = node.user("alice").await;
    let (bob_id, _) = node.user("bob").await;
    let room = node.http.room(&alice, "commits", "public").await;

    let text = metrics_text(&node).await;
    let commits_before = metric(&text, "switchboard_commit_seconds_count");
    let message_commits_before = metric(&text, "switchboard_commit_messages_count");
    let messages_before = metric(&text, "switchboard_commit_messages_sum");
    assert!(
        commits_before >= 1.0,
        "creating users and a room committed:\n{text}"
    );

    // One at a time: each publish is answered after its own commit.
    for i in 0..3 {
        node.http.publish(&alice, &room, json!({"i": i})).await;
    }
    let (s, _) = node
        .http
        .post(
            &format!("/v1/users/{bob_id}/messages"),
            &alice,
            json!({"body": "dm"}),
        )
        .await;
    assert_eq!(s, 201);

    let text = metrics_text(&node).await;
    let message_commits =
        metric(&text, "switchboard_commit_messages_count") - message_commits_before;
    assert!(
        (1.0..=4.0).contains(&message_commits),
        "4 publishes took {message_commits} commits with messages"
    );
    assert_eq!(
        metric(&text, "switchboard_commit_messages_sum") - messages_before,
        5.0,
        "three room messages and a DM's two copies"
    );
    assert!(metric(&text, "switchboard_commit_seconds_count") - commits_before >= message_commits);
    assert!(metric(&text, "switchboard_commit_seconds_sum") > 0.0);
    // Exported from the start (a small test database never reaches a checkpoint).
    assert!(metric(&text, "switchboard_checkpoint_seconds_count") >= 0.0);
    // The commit delay is off by default: its counters are exported, and stay at zero.
    assert_eq!(metric(&text, "switchboard_commit_delay_waits_total"), 0.0);
    assert_eq!(metric(&text, "switchboard_commit_delay_passes_total"), 0.0);
    assert!(
        metric(&text, "switchboard_commit_messages_bucket{le=\"1.0\"}").is_finite(),
        "a histogram with buckets:\n{text}"
    );
    node.stop().await;
}
