//! Room and direct messages: seqs, idempotent retries, history pages and limits, refusals.

use crate::common::*;
use serde_json::{Value, json};

// ----- room messages -----

#[tokio::test]
async fn room_messages_get_consecutive_seqs_and_retries_store_nothing_new() {
    let node = InProcess::start().await;
    let (alice_id, alice) = node.user("alice").await;
    let (_, bob) = node.user("bob").await;
    let room = node.room(&alice, "lobby", "public").await;
    let path = format!("/v1/rooms/{room}/messages");

    let (s, first) = node
        .post(
            &path,
            &alice,
            json!({"body": {"text": "one"}, "client_msg_id": "c-1"}),
        )
        .await;
    assert_eq!(s, 201, "{first}");
    assert_eq!(first["conv"], format!("room:{room}"));
    assert_eq!(first["seq"], 1);
    assert!(
        first["message_id"].as_str().is_some_and(|m| !m.is_empty()),
        "{first}"
    );
    assert!(first["ts"].as_u64().is_some_and(|t| t > 0), "{first}");
    for (i, text) in ["two", "three"].into_iter().enumerate() {
        let (s, v) = node
            .post(&path, &alice, json!({"body": {"text": text}}))
            .await;
        assert_eq!(s, 201);
        assert_eq!(v["seq"], i as u64 + 2);
    }

    let (s, retry) = node
        .post(
            &path,
            &alice,
            json!({"body": {"text": "one"}, "client_msg_id": "c-1"}),
        )
        .await;
    assert_eq!(s, 201);
    assert_eq!(retry, first, "a retry gets the first answer");
    let (s, other) = node
        .post(
            &path,
            &bob,
            json!({"body": {"text": "bob's"}, "client_msg_id": "c-1"}),
        )
        .await;
    assert_eq!(s, 201);
    assert_eq!(
        other["seq"], 4,
        "another user's client_msg_id is a new message: {other}"
    );

    let (s, v) = node.get(&path, &alice).await;
    assert_eq!(s, 200);
    assert_eq!(seqs(&v), vec![1, 2, 3, 4]);
    let m = &v["messages"][0];
    assert_eq!(m["body"], json!({"text": "one"}));
    assert_eq!(m["from"], alice_id);
    assert_eq!(m["client_msg_id"], "c-1");
    assert_eq!(m["message_id"], first["message_id"]);
    assert_eq!(m["conv"], format!("room:{room}"));
    node.stop().await;
}

#[tokio::test]
async fn publishing_is_refused_to_strangers_unknown_rooms_and_bodiless_requests() {
    let node = InProcess::start().await;
    let (_, alice) = node.user("alice").await;
    let (_, bob) = node.user("bob").await;
    let private = node.room(&alice, "secret", "private").await;
    let public = node.room(&alice, "lobby", "public").await;

    let got = node
        .post(
            &format!("/v1/rooms/{private}/messages"),
            &bob,
            json!({"body": "hi"}),
        )
        .await;
    assert_error(got, 403, "not_member");
    assert_error(
        node.get(&format!("/v1/rooms/{private}/messages"), &bob)
            .await,
        403,
        "not_member",
    );
    assert_error(
        node.post("/v1/rooms/r_nope/messages", &alice, json!({"body": "hi"}))
            .await,
        404,
        "not_found",
    );
    assert_error(
        node.get("/v1/rooms/r_nope/messages", &alice).await,
        404,
        "not_found",
    );
    assert_error(
        node.post(
            &format!("/v1/rooms/{public}/messages"),
            &alice,
            json!({"text": "no body"}),
        )
        .await,
        400,
        "bad_request",
    );
    let nothing = node
        .call(
            "POST",
            &format!("/v1/rooms/{public}/messages"),
            Some(&alice),
            None,
        )
        .await;
    assert_error(nothing, 400, "bad_request");
    assert_error(
        node.call(
            "POST",
            &format!("/v1/rooms/{public}/messages"),
            None,
            Some(json!({"body": 1})),
        )
        .await,
        401,
        "unauthorized",
    );
    let huge = json!({"body": {"text": "x".repeat(70_000)}});
    assert_error(
        node.post(&format!("/v1/rooms/{public}/messages"), &alice, huge)
            .await,
        413,
        "too_large",
    );
    let long_id = json!({"body": 1, "client_msg_id": "c".repeat(200)});
    assert_error(
        node.post(&format!("/v1/rooms/{public}/messages"), &alice, long_id)
            .await,
        400,
        "bad_request",
    );

    // Nothing was stored by the refusals.
    let (_, v) = node
        .get(&format!("/v1/rooms/{public}/messages"), &alice)
        .await;
    assert_eq!(seqs(&v), Vec::<u64>::new());
    let (_, v) = node
        .get(&format!("/v1/rooms/{private}/messages"), &alice)
        .await;
    assert_eq!(seqs(&v), Vec::<u64>::new());
    node.stop().await;
}

#[tokio::test]
async fn history_pages_after_and_before_a_seq_in_ascending_order() {
    let node = InProcess::start().await;
    let (_, alice) = node.user("alice").await;
    let room = node.room(&alice, "lobby", "public").await;
    for i in 1..=10 {
        assert_eq!(node.publish(&alice, &room, json!({"n": i})).await, i);
    }
    let path = format!("/v1/rooms/{room}/messages");

    let (s, v) = node.get(&format!("{path}?after=7"), &alice).await;
    assert_eq!(s, 200, "{v}");
    assert_eq!(seqs(&v), vec![8, 9, 10]);
    let (_, v) = node.get(&format!("{path}?after=2&limit=3"), &alice).await;
    assert_eq!(seqs(&v), vec![3, 4, 5]);
    let (_, v) = node.get(&format!("{path}?before=8&limit=3"), &alice).await;
    assert_eq!(seqs(&v), vec![5, 6, 7]);
    let (_, v) = node.get(&format!("{path}?before=3"), &alice).await;
    assert_eq!(seqs(&v), vec![1, 2]);
    let (_, v) = node.get(&format!("{path}?after=10"), &alice).await;
    assert_eq!(seqs(&v), Vec::<u64>::new());
    assert_eq!(v["messages"][0], Value::Null);
    node.stop().await;
}

#[tokio::test]
async fn history_limits_are_clamped_to_500_and_nonsense_is_refused() {
    let node = InProcess::start().await;
    let (_, alice) = node.user("alice").await;
    let room = node.room(&alice, "busy", "public").await;
    for i in 1..=520u64 {
        let (s, v) = node
            .server(
                "/v1/server/publish",
                json!({"conv": format!("room:{room}"), "body": i}),
            )
            .await;
        assert_eq!(s, 201, "{v}");
        assert_eq!(v["seq"], i);
    }
    let path = format!("/v1/rooms/{room}/messages");

    let (s, v) = node
        .get(&format!("{path}?after=0&limit=1000"), &alice)
        .await;
    assert_eq!(s, 200, "{v}");
    let got = seqs(&v);
    assert_eq!(got.len(), 500, "limit over 500 is clamped");
    assert_eq!(got, (1..=500).collect::<Vec<u64>>());
    let (_, v) = node.get(&path, &alice).await;
    let got = seqs(&v);
    assert_eq!(got.len(), 50, "the default page is 50");
    assert!(
        got.windows(2).all(|w| w[1] == w[0] + 1),
        "ascending and consecutive: {got:?}"
    );

    assert_error(
        node.get(&format!("{path}?limit=0"), &alice).await,
        400,
        "bad_request",
    );
    assert_error(
        node.get(&format!("{path}?limit=abc"), &alice).await,
        400,
        "bad_request",
    );
    assert_error(
        node.get(&format!("{path}?after=-1"), &alice).await,
        400,
        "bad_request",
    );
    node.stop().await;
}

// ----- direct messages -----

#[tokio::test]
async fn a_direct_message_lands_in_both_personal_streams() {
    let node = InProcess::start().await;
    let (alice_id, alice) = node.user("alice").await;
    let (bob_id, bob) = node.user("bob").await;

    let (s, r) = node
        .post(
            &format!("/v1/users/{bob_id}/messages"),
            &alice,
            json!({"body": {"text": "psst"}}),
        )
        .await;
    assert_eq!(s, 201, "{r}");
    assert_eq!(r["conv"], format!("user:{bob_id}"));
    assert_eq!(r["seq"], 1);
    assert!(r["message_id"].is_string() && r["ts"].is_u64(), "{r}");

    let (s, v) = node.get("/v1/users/me/messages", &bob).await;
    assert_eq!(s, 200, "{v}");
    let got = v["messages"].as_array().unwrap();
    assert_eq!(got.len(), 1, "{v}");
    assert_eq!(got[0]["conv"], format!("user:{bob_id}"));
    assert_eq!(got[0]["from"], alice_id);
    assert_eq!(got[0]["to"], bob_id);
    assert_eq!(got[0]["body"], json!({"text": "psst"}));
    assert_eq!(got[0]["message_id"], r["message_id"]);

    let (s, v) = node.get("/v1/users/me/messages", &alice).await;
    assert_eq!(s, 200, "{v}");
    let copy = v["messages"].as_array().unwrap();
    assert_eq!(copy.len(), 1, "{v}");
    assert_eq!(copy[0]["conv"], format!("user:{alice_id}"));
    assert_eq!(copy[0]["from"], alice_id);
    assert_eq!(copy[0]["to"], bob_id);
    assert_eq!(copy[0]["body"], json!({"text": "psst"}));

    let (_, v) = node.get("/v1/users/me/messages?after=1", &bob).await;
    assert_eq!(seqs(&v), Vec::<u64>::new());
    assert_error(
        node.get("/v1/users/me/messages?limit=0", &bob).await,
        400,
        "bad_request",
    );
    assert_error(
        node.post("/v1/users/u_nobody/messages", &alice, json!({"body": "hi"}))
            .await,
        404,
        "not_found",
    );
    assert_error(
        node.post(&format!("/v1/users/{bob_id}/messages"), &alice, json!({}))
            .await,
        400,
        "bad_request",
    );
    assert_error(
        node.call("GET", "/v1/users/me/messages", None, None).await,
        401,
        "unauthorized",
    );
    node.stop().await;
}

#[tokio::test]
async fn a_retried_direct_message_is_stored_once_on_both_sides() {
    let node = InProcess::start().await;
    let (_, alice) = node.user("alice").await;
    let (bob_id, bob) = node.user("bob").await;
    let path = format!("/v1/users/{bob_id}/messages");
    let (s, first) = node
        .post(
            &path,
            &alice,
            json!({"body": "hi", "client_msg_id": "dm-1"}),
        )
        .await;
    assert_eq!(s, 201, "{first}");
    let (s, retry) = node
        .post(
            &path,
            &alice,
            json!({"body": "hi", "client_msg_id": "dm-1"}),
        )
        .await;
    assert_eq!(s, 201);
    assert_eq!(retry, first);
    for token in [&alice, &bob] {
        let (_, v) = node.get("/v1/users/me/messages", token).await;
        assert_eq!(seqs(&v), vec![1], "{v}");
    }
    node.stop().await;
}
