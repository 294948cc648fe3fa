//! The offline webhook, against a real HTTP receiver started by the test: signed with
//! HMAC-SHA256 over its timestamp and body (so a receiver can refuse replays), retried after
//! failures, fired for recipients with no live connection only, and never for the sender's own
//! copy of a direct message. A node refuses to start with a short secret.

use crate::common;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::routing::post;
use common::*;
use serde_json::{Value, json};
use std::sync::{Arc, Mutex};
use std::time::Duration;

const SECRET: &str = "a-webhook-secret-of-32-bytes-or-more";

#[derive(Clone, Default)]
struct Receiver {
    /// Every request: (signature header, raw body, timestamp header).
    seen: Arc<Mutex<Vec<(String, Bytes, String)>>>,
    /// How many requests to fail with 500 before accepting.
    fail_first: Arc<Mutex<u32>>,
}

async fn hook(State(r): State<Receiver>, headers: HeaderMap, body: Bytes) -> StatusCode {
    let header = |name: &str| {
        headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
            .to_owned()
    };
    let (sig, ts) = (
        header("x-switchboard-signature"),
        header("x-switchboard-timestamp"),
    );
    r.seen.lock().unwrap().push((sig, body, ts));
    let mut fail = r.fail_first.lock().unwrap();
    if *fail > 0 {
        *fail -= 1;
        StatusCode::INTERNAL_SERVER_ERROR
    } else {
        StatusCode::NO_CONTENT
    }
}

async fn receiver(fail_first: u32) -> (Receiver, String) {
    let r = Receiver {
        fail_first: Arc::new(Mutex::new(fail_first)),
        ..Default::default()
    };
    let app = axum::Router::new()
        .route("/hook", post(hook))
        .with_state(r.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/hook", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    (r, url)
}

async fn wait_for(r: &Receiver, n: usize, within: Duration) -> Vec<(String, Bytes, String)> {
    let deadline = std::time::Instant::now() + within;
    loop {
        let seen = r.seen.lock().unwrap().clone();
        if seen.len() >= n {
            return seen;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "webhook got {} of {n} requests",
            seen.len()
        );
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
}

#[tokio::test]
async fn offline_recipient_fires_a_signed_hook_retried_after_failure() {
    let (rx, url) = receiver(1).await;
    let node = TestNode::start_with(|c| {
        c.webhook_url = Some(url);
        c.webhook_secret = Some(SECRET.into());
    })
    .await;
    let (alice_id, alice) = node.user("alice").await;
    let (bob_id, _bob) = node.user("bob").await;
    // Alice is offline too: her own copy must not fire the hook.
    let (s, r) = node
        .http
        .post(
            &format!("/v1/users/{bob_id}/messages"),
            &alice,
            json!({"body": {"text": "are you there?"}}),
        )
        .await;
    assert_eq!(s, 201);

    // First attempt fails with 500, the retry succeeds: two requests with identical bodies.
    let seen = wait_for(&rx, 2, Duration::from_secs(15)).await;
    assert_eq!(seen[0].1, seen[1].1, "a retry resends the same body");
    let now_s = now_ms() / 1000;
    for (sig, body, ts) in &seen {
        // What a receiver checks: a recent timestamp, and the signature of "<timestamp>.<body>".
        let ts: u64 = ts.parse().expect("X-Switchboard-Timestamp is Unix seconds");
        assert!(
            ts.abs_diff(now_s) <= 60,
            "timestamp {ts} is not now ({now_s})"
        );
        assert_eq!(
            sig,
            &switchboard_webhook::signature(SECRET, ts, body),
            "bad signature"
        );
        assert_ne!(
            sig,
            &switchboard_webhook::signature(SECRET, ts - 600, body),
            "the timestamp is part of what is signed"
        );
    }
    let v: Value = serde_json::from_slice(&seen[1].1).unwrap();
    assert_eq!(v["event"], "offline_message");
    assert_eq!(v["user_id"], bob_id.as_str());
    assert_eq!(v["message"]["conv"], format!("user:{bob_id}"));
    assert_eq!(v["message"]["seq"], r["seq"]);
    assert_eq!(v["message"]["from"], alice_id.as_str());
    assert_eq!(v["message"]["body"]["text"], "are you there?");

    // Nothing more arrives: in particular nothing for alice's copy.
    tokio::time::sleep(Duration::from_millis(800)).await;
    assert_eq!(rx.seen.lock().unwrap().len(), 2);
    node.stop().await;
}

#[tokio::test]
async fn an_online_recipient_gets_no_hook_and_server_pushes_to_offline_users_do() {
    let (rx, url) = receiver(0).await;
    let node = TestNode::start_with(|c| {
        c.webhook_url = Some(url);
        c.webhook_secret = Some(SECRET.into());
    })
    .await;
    let (_, alice) = node.user("alice").await;
    let (bob_id, bob) = node.user("bob").await;
    let mut b = node.connect(&bob).await;
    node.http
        .post(
            &format!("/v1/users/{bob_id}/messages"),
            &alice,
            json!({"body": "online"}),
        )
        .await;
    b.messages(&format!("user:{bob_id}"), 1).await;
    tokio::time::sleep(Duration::from_millis(800)).await;
    assert!(rx.seen.lock().unwrap().is_empty(), "bob is online: no hook");

    // Once bob's connection is gone, a server push to his stream fires the hook.
    drop(b);
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    loop {
        let (_, p) = node
            .http
            .get(&format!("/v1/presence/users?ids={bob_id}"), &alice)
            .await;
        if p["users"][&bob_id]["online"] == false {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "bob never went offline"
        );
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    let (s, _) = node
        .http
        .server(
            "/v1/server/publish",
            json!({"conv": format!("user:{bob_id}"), "body": "ping"}),
        )
        .await;
    assert_eq!(s, 201);
    let seen = wait_for(&rx, 1, Duration::from_secs(10)).await;
    let v: Value = serde_json::from_slice(&seen[0].1).unwrap();
    assert_eq!(v["user_id"], bob_id.as_str());
    assert_eq!(v["message"]["from"], Value::Null);
    node.stop().await;
}

/// `--webhook-secret ""` (or any key under 32 bytes) let anyone forge deliveries: the real
/// binary now exits at start with a message naming the flag.
#[tokio::test]
async fn a_short_webhook_secret_is_refused_at_start() {
    let dir = tempfile::tempdir().unwrap();
    for short in ["", "hook-secret"] {
        let out = tokio::process::Command::new(env!("CARGO_BIN_EXE_switchboard"))
            .args(["serve", "--listen", "127.0.0.1:0", "--tcp-listen", "off"])
            .args([
                "--webhook-url",
                "http://127.0.0.1:9/hook",
                "--webhook-secret",
                short,
            ])
            .arg("--data-dir")
            .arg(dir.path())
            .kill_on_drop(true)
            .output();
        let out = tokio::time::timeout(WAIT, out)
            .await
            .expect("exits at once")
            .expect("runs");
        assert!(!out.status.success(), "started with secret {short:?}");
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(
            stderr.contains("--webhook-secret must be at least 32 bytes"),
            "{stderr}"
        );
    }
}
