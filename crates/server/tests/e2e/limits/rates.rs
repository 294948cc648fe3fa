//! Finding 5: no rate limits over HTTP. 500 publishes of 65 KB in 0.4 s, 1,030 rooms by one
//! user in 0.8 s, unlimited registration and login, and bad logins queueing behind one
//! another for the password hash. Now each is limited (429 `rate_limited` with Retry-After),
//! and the hash queue is bounded (503 `overloaded` with Retry-After).

use super::{assert_limited, call, server};
use crate::common::{Client, JsonApi, PASSWORD, TestNode};
use serde_json::json;
use std::time::Duration;

#[tokio::test]
async fn http_publishes_are_limited_per_user_but_not_the_server_api() {
    let node = TestNode::start_with(|c| {
        c.limits.abuse.http_publish_rate = Some(5);
        c.limits.abuse.http_publish_burst = Some(10);
    })
    .await;
    let (_, alice) = node.user("alice").await;
    let (_, bob) = node.user("bob").await;
    let room = node.http.room(&alice, "lobby", "public").await;
    let path = format!("/v1/rooms/{room}/messages");
    let body = json!({"body": {"text": "x".repeat(1000)}});
    let mut ok = 0;
    for _ in 0..40 {
        let got = call(&node.http, "POST", &path, Some(&alice), Some(body.clone())).await;
        if got.0 == 201 {
            ok += 1;
        } else {
            assert_limited(&got);
        }
    }
    // The burst, and the odd token refilled while the loop ran.
    assert!((10..=14).contains(&ok), "{ok} of 40 accepted");
    // Bob has a bucket of his own; the application's back end is not limited.
    let (s, _, _) = call(&node.http, "POST", &path, Some(&bob), Some(body.clone())).await;
    assert_eq!(s, 201);
    for _ in 0..40 {
        let (s, v, _) = server(
            &node.http,
            "/v1/server/publish",
            json!({"conv": format!("room:{room}"), "body": {}}),
        )
        .await;
        assert_eq!(s, 201, "{v}");
    }
    node.stop().await;
}

#[tokio::test]
async fn direct_messages_are_limited_per_user_on_every_path() {
    let node = TestNode::start_with(|c| c.limits.abuse.dm_per_min = 5).await;
    let (_, alice) = node.user("alice").await;
    let (bob_id, _) = node.user("bob").await;
    let path = format!("/v1/users/{bob_id}/messages");
    for _ in 0..5 {
        let (s, v, _) = call(
            &node.http,
            "POST",
            &path,
            Some(&alice),
            Some(json!({"body": 1})),
        )
        .await;
        assert_eq!(s, 201, "{v}");
    }
    assert_limited(
        &call(
            &node.http,
            "POST",
            &path,
            Some(&alice),
            Some(json!({"body": 1})),
        )
        .await,
    );
    // The same bucket over a connection: an error frame, and the connection is kept.
    let mut ws = node.connect(&alice).await;
    let r = ws
        .request(
            json!({"type": "publish", "conv": format!("user:{bob_id}"), "body": 1}),
            1,
        )
        .await;
    assert_eq!(r["code"], "rate_limited", "{r}");
    let r = ws.request(json!({"type": "ping"}), 2).await;
    assert_eq!(r["type"], "pong");
    node.stop().await;
}

#[tokio::test]
async fn room_creation_is_limited_per_user() {
    let node = TestNode::start_with(|c| c.limits.abuse.rooms_per_min = 5).await;
    let (_, alice) = node.user("alice").await;
    let (_, bob) = node.user("bob").await;
    for i in 0..5 {
        node.http.room(&alice, &format!("r{i}"), "public").await;
    }
    for i in 5..50 {
        let got = call(
            &node.http,
            "POST",
            "/v1/rooms",
            Some(&alice),
            Some(json!({"name": format!("r{i}")})),
        )
        .await;
        assert_limited(&got);
        assert!(got.2.unwrap() <= 13, "Retry-After {:?}", got.2);
    }
    node.http.room(&bob, "bobs", "public").await;
    let (_, v) = node.http.get("/v1/rooms", &alice).await;
    assert_eq!(v["rooms"].as_array().unwrap().len(), 6, "{v}");
    node.stop().await;
}

#[tokio::test]
async fn registration_is_limited_per_address() {
    let node = TestNode::start_with(|c| c.limits.abuse.register_per_ip_per_min = 3).await;
    let register = |name: String| {
        call(
            &node.http,
            "POST",
            "/v1/users",
            None,
            Some(json!({"username": name, "password": PASSWORD})),
        )
    };
    for i in 0..3 {
        assert_eq!(register(format!("u{i}")).await.0, 201);
    }
    for i in 3..20 {
        assert_limited(&register(format!("u{i}")).await);
    }
    node.stop().await;
}

#[tokio::test]
async fn logins_are_limited_per_address() {
    let node = TestNode::start_with(|c| c.limits.abuse.login_per_ip_per_min = 4).await;
    node.user("alice").await; // one login
    let creds = json!({"username": "alice", "password": PASSWORD});
    for _ in 0..3 {
        let (s, v, _) = call(
            &node.http,
            "POST",
            "/v1/sessions",
            None,
            Some(creds.clone()),
        )
        .await;
        assert_eq!(s, 201, "{v}");
    }
    for _ in 0..10 {
        assert_limited(
            &call(
                &node.http,
                "POST",
                "/v1/sessions",
                None,
                Some(creds.clone()),
            )
            .await,
        );
    }
    node.stop().await;
}

#[tokio::test]
async fn failed_logins_back_off_per_username() {
    let node = TestNode::start_with(|c| c.limits.abuse.login_free_failures = 3).await;
    node.user("alice").await;
    node.user("bob").await;
    let login = |name: &str, password: &str| {
        call(
            &node.http,
            "POST",
            "/v1/sessions",
            None,
            Some(json!({"username": name, "password": password})),
        )
    };
    for _ in 0..3 {
        assert_eq!(login("alice", "wrong guess").await.0, 401);
    }
    // Guessing stops: even the right password waits, as the answer says.
    let got = login("Alice", PASSWORD).await;
    assert_limited(&got);
    assert_eq!(got.2, Some(1));
    // Bob is not affected (and an address gets four times a username's failures).
    assert_eq!(login("bob", PASSWORD).await.0, 201);
    tokio::time::sleep(Duration::from_millis(1100)).await;
    assert_eq!(login("alice", PASSWORD).await.0, 201);
    // A success forgets the failures.
    assert_eq!(login("alice", "wrong guess").await.0, 401);
    assert_eq!(login("alice", PASSWORD).await.0, 201);
    node.stop().await;
}

#[tokio::test]
async fn the_password_hash_queue_is_bounded() {
    let node = TestNode::start_with(|c| {
        c.limits.abuse.hash_queue = 2;
        c.limits.abuse.login_free_failures = 0;
    })
    .await;
    node.user("alice").await;
    // Bad logins all at once: a few wait for a core, the rest are refused at once.
    let answers = futures_util::future::join_all((0..40).map(|i| {
        call(
            &node.http,
            "POST",
            "/v1/sessions",
            None,
            Some(json!({"username": format!("nobody{i}"), "password": "wrong guess"})),
        )
    }))
    .await;
    let mut refused = 0;
    for (s, v, retry) in &answers {
        match s {
            401 => {}
            503 => {
                assert_eq!(v["error"]["code"], "overloaded", "{v}");
                assert!(retry.is_some_and(|r| r >= 1), "{v}");
                refused += 1;
            }
            other => panic!("{other}: {v}"),
        }
    }
    assert!(refused > 0, "no login was refused");
    // Once the flood is over, logins work again.
    let creds = json!({"username": "alice", "password": PASSWORD});
    let (s, v, _) = call(&node.http, "POST", "/v1/sessions", None, Some(creds)).await;
    assert_eq!(s, 201, "{v}");
    node.stop().await;
}

#[tokio::test]
async fn a_daily_message_quota_can_be_set_and_holds_on_every_path() {
    let node = TestNode::start_with(|c| c.limits.abuse.messages_per_day = 3).await;
    let (_, alice) = node.user("alice").await;
    let room = node.http.room(&alice, "lobby", "public").await;
    let path = format!("/v1/rooms/{room}/messages");
    for _ in 0..3 {
        let (s, v, _) = call(
            &node.http,
            "POST",
            &path,
            Some(&alice),
            Some(json!({"body": 1})),
        )
        .await;
        assert_eq!(s, 201, "{v}");
    }
    let got = call(
        &node.http,
        "POST",
        &path,
        Some(&alice),
        Some(json!({"body": 1})),
    )
    .await;
    assert_limited(&got);
    // A day's quota refills over the day: the wait is about 8 hours (a third of it).
    assert!(got.2.is_some_and(|r| r > 3600), "{:?}", got.2);
    let mut ws = node.connect(&alice).await;
    let r = ws
        .request(
            json!({"type": "publish", "conv": format!("room:{room}"), "body": 1}),
            1,
        )
        .await;
    assert_eq!(r["code"], "rate_limited", "{r}");
    // The application's back end has no quota.
    let (s, _, _) = server(
        &node.http,
        "/v1/server/publish",
        json!({"conv": format!("room:{room}"), "body": 1}),
    )
    .await;
    assert_eq!(s, 201);
    node.stop().await;
}
