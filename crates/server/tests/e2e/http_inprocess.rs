//! The HTTP API in-process: the router a node serves, called with `tower::ServiceExt::oneshot`
//! (no socket), for every request/response check of the contract: success shapes, and error
//! cases (authorization, validation, limits, 404s) with the `{"error":{"code":..., "message":...}}`
//! body. What needs sockets, WebSocket clients or a restart is in `http_api.rs`.

use crate::common;
use axum::body::Bytes;
use common::*;
use serde_json::{Value, json};

// ----- users and sessions -----

#[tokio::test]
async fn a_new_user_registers_and_the_name_is_then_taken() {
    let node = InProcess::start().await;
    let (s, v) = node
        .call(
            "POST",
            "/v1/users",
            None,
            Some(json!({"username": "alice", "password": PASSWORD})),
        )
        .await;
    assert_eq!(s, 201, "{v}");
    assert_eq!(v["username"], "alice");
    assert!(
        v["user_id"].as_str().is_some_and(|id| !id.is_empty()),
        "{v}"
    );

    let again = node
        .call(
            "POST",
            "/v1/users",
            None,
            Some(json!({"username": "alice", "password": "another password"})),
        )
        .await;
    assert_error(again, 409, "username_taken");
    node.stop().await;
}

#[tokio::test]
async fn registration_rejects_bad_bodies_with_bad_request() {
    let node = InProcess::start().await;
    let missing = node
        .call(
            "POST",
            "/v1/users",
            None,
            Some(json!({"username": "alice"})),
        )
        .await;
    assert_error(missing, 400, "bad_request");
    let mistyped = node
        .call(
            "POST",
            "/v1/users",
            None,
            Some(json!({"username": 5, "password": PASSWORD})),
        )
        .await;
    assert_error(mistyped, 400, "bad_request");
    let short = node
        .call(
            "POST",
            "/v1/users",
            None,
            Some(json!({"username": "bob", "password": "short"})),
        )
        .await;
    assert_error(short, 400, "bad_request");

    let req = node
        .raw("POST", "/v1/users")
        .header("content-type", "application/json");
    let (s, _, v) = node.send(req, "{\"username\": \"carol\",").await;
    assert_error((s, v), 400, "bad_request");

    // The failures stored nothing: the names are still free.
    let (s, v) = node
        .call(
            "POST",
            "/v1/users",
            None,
            Some(json!({"username": "bob", "password": PASSWORD})),
        )
        .await;
    assert_eq!(s, 201, "{v}");
    node.stop().await;
}

#[tokio::test]
async fn a_body_over_64_kib_is_refused_as_too_large() {
    let node = InProcess::start().await;
    let huge = "x".repeat(70_000);
    let got = node
        .call(
            "POST",
            "/v1/users",
            None,
            Some(json!({"username": huge, "password": PASSWORD})),
        )
        .await;
    assert_error(got, 413, "too_large");
    node.stop().await;
}

#[tokio::test]
async fn login_gives_a_token_and_wrong_credentials_get_unauthorized() {
    let node = InProcess::start().await;
    let creds = json!({"username": "alice", "password": PASSWORD});
    let (s, reg) = node
        .call("POST", "/v1/users", None, Some(creds.clone()))
        .await;
    assert_eq!(s, 201);
    let (s, v) = node.call("POST", "/v1/sessions", None, Some(creds)).await;
    assert_eq!(s, 201, "{v}");
    assert!(v["token"].as_str().is_some_and(|t| !t.is_empty()), "{v}");
    assert_eq!(v["user_id"], reg["user_id"]);
    assert!(
        v["expires_at"].as_u64().is_some_and(|e| e > now_ms()),
        "{v}"
    );

    let wrong = node
        .call(
            "POST",
            "/v1/sessions",
            None,
            Some(json!({"username": "alice", "password": "not the password"})),
        )
        .await;
    assert_error(wrong, 401, "unauthorized");
    let unknown = node
        .call(
            "POST",
            "/v1/sessions",
            None,
            Some(json!({"username": "nobody", "password": PASSWORD})),
        )
        .await;
    assert_error(unknown, 401, "unauthorized");
    let missing = node
        .call(
            "POST",
            "/v1/sessions",
            None,
            Some(json!({"username": "alice"})),
        )
        .await;
    assert_error(missing, 400, "bad_request");
    node.stop().await;
}

#[tokio::test]
async fn me_needs_a_valid_bearer_token() {
    let node = InProcess::start().await;
    let (alice_id, alice) = node.user("alice").await;
    let (s, v) = node.get("/v1/me", &alice).await;
    assert_eq!(s, 200, "{v}");
    assert_eq!(v["user_id"], alice_id);
    assert_eq!(v["username"], "alice");

    assert_error(
        node.call("GET", "/v1/me", None, None).await,
        401,
        "unauthorized",
    );
    assert_error(
        node.get("/v1/me", "garbage-token").await,
        401,
        "unauthorized",
    );
    let basic = node
        .raw("GET", "/v1/me")
        .header("authorization", "Basic YWxpY2U6Y29ycmVjdCBob3JzZQ==");
    let (s, _, v) = node.send(basic, Bytes::new()).await;
    assert_error((s, v), 401, "unauthorized");
    node.stop().await;
}

#[tokio::test]
async fn a_user_profile_is_readable_by_id() {
    let node = InProcess::start().await;
    let (_, alice) = node.user("alice").await;
    let (bob_id, _) = node.user("bob").await;
    let (s, v) = node.get(&format!("/v1/users/{bob_id}"), &alice).await;
    assert_eq!(s, 200, "{v}");
    assert_eq!(v, json!({"user_id": bob_id, "username": "bob"}));
    assert_error(
        node.get("/v1/users/u_nobody", &alice).await,
        404,
        "not_found",
    );
    assert_error(
        node.call("GET", &format!("/v1/users/{bob_id}"), None, None)
            .await,
        401,
        "unauthorized",
    );
    node.stop().await;
}

// ----- rooms -----

#[tokio::test]
async fn a_room_is_created_with_its_fields_and_bad_input_is_refused() {
    let node = InProcess::start().await;
    let (alice_id, alice) = node.user("alice").await;
    let (s, v) = node
        .post(
            "/v1/rooms",
            &alice,
            json!({"name": "lobby", "visibility": "private"}),
        )
        .await;
    assert_eq!(s, 201, "{v}");
    assert!(
        v["room_id"].as_str().is_some_and(|id| !id.is_empty()),
        "{v}"
    );
    assert_eq!(v["name"], "lobby");
    assert_eq!(v["visibility"], "private");
    assert_eq!(v["owner"], alice_id);

    assert_error(
        node.post("/v1/rooms", &alice, json!({"visibility": "public"}))
            .await,
        400,
        "bad_request",
    );
    assert_error(
        node.post(
            "/v1/rooms",
            &alice,
            json!({"name": "x", "visibility": "secret"}),
        )
        .await,
        400,
        "bad_request",
    );
    assert_error(
        node.post(
            "/v1/rooms",
            &alice,
            json!({"name": "", "visibility": "public"}),
        )
        .await,
        400,
        "bad_request",
    );
    assert_error(
        node.call("POST", "/v1/rooms", None, Some(json!({"name": "x"})))
            .await,
        401,
        "unauthorized",
    );
    node.stop().await;
}

#[tokio::test]
async fn the_room_list_shows_public_rooms_and_my_private_ones_only() {
    let node = InProcess::start().await;
    let (_, alice) = node.user("alice").await;
    let (_, bob) = node.user("bob").await;
    let public = node.room(&alice, "public", "public").await;
    let alices = node.room(&alice, "alice-only", "private").await;
    let bobs = node.room(&bob, "bob-only", "private").await;

    let (s, v) = node.get("/v1/rooms", &alice).await;
    assert_eq!(s, 200, "{v}");
    let listed = ids(&v, "rooms", "room_id");
    assert!(listed.contains(&public) && listed.contains(&alices), "{v}");
    assert!(
        !listed.contains(&bobs),
        "alice sees bob's private room: {v}"
    );

    let (_, v) = node.get("/v1/rooms", &bob).await;
    let listed = ids(&v, "rooms", "room_id");
    assert!(listed.contains(&public) && listed.contains(&bobs), "{v}");
    assert!(
        !listed.contains(&alices),
        "bob sees alice's private room: {v}"
    );
    node.stop().await;
}

#[tokio::test]
async fn a_room_is_readable_unless_unknown_or_someone_elses_private() {
    let node = InProcess::start().await;
    let (alice_id, alice) = node.user("alice").await;
    let (_, bob) = node.user("bob").await;
    let public = node.room(&alice, "public", "public").await;
    let private = node.room(&alice, "private", "private").await;

    let (s, v) = node.get(&format!("/v1/rooms/{public}"), &bob).await;
    assert_eq!(s, 200, "{v}");
    assert_eq!(v["room_id"], public);
    assert_eq!(v["name"], "public");
    assert_eq!(v["visibility"], "public");
    assert_eq!(v["owner"], alice_id);
    let (s, _) = node.get(&format!("/v1/rooms/{private}"), &alice).await;
    assert_eq!(s, 200);

    assert_error(node.get("/v1/rooms/r_nope", &alice).await, 404, "not_found");
    assert_error(
        node.get(&format!("/v1/rooms/{private}"), &bob).await,
        403,
        "not_member",
    );
    node.stop().await;
}

// ----- members -----

#[tokio::test]
async fn anyone_joins_a_public_room_and_leaves_it() {
    let node = InProcess::start().await;
    let (alice_id, alice) = node.user("alice").await;
    let (bob_id, bob) = node.user("bob").await;
    let room = node.room(&alice, "lobby", "public").await;
    let path = format!("/v1/rooms/{room}/members/{bob_id}");

    let (s, v) = node.call("PUT", &path, Some(&bob), None).await;
    assert_eq!(s, 204, "{v}");
    let (s, v) = node.get(&format!("/v1/rooms/{room}/members"), &bob).await;
    assert_eq!(s, 200, "{v}");
    let members = ids(&v, "members", "");
    assert!(
        members.contains(&alice_id) && members.contains(&bob_id),
        "{v}"
    );

    let (s, v) = node.call("DELETE", &path, Some(&bob), None).await;
    assert_eq!(s, 204, "{v}");
    let (_, v) = node.get(&format!("/v1/rooms/{room}/members"), &alice).await;
    assert!(!ids(&v, "members", "").contains(&bob_id), "{v}");
    node.stop().await;
}

#[tokio::test]
async fn only_the_owner_adds_members_to_a_private_room() {
    let node = InProcess::start().await;
    let (alice_id, alice) = node.user("alice").await;
    let (bob_id, bob) = node.user("bob").await;
    let (carol_id, carol) = node.user("carol").await;
    let room = node.room(&alice, "secret", "private").await;

    // Self-join of a private room is refused.
    let got = node
        .call(
            "PUT",
            &format!("/v1/rooms/{room}/members/{bob_id}"),
            Some(&bob),
            None,
        )
        .await;
    assert_eq!(got.0, 403, "{}", got.1);
    assert!(
        got.1["error"]["code"] == "forbidden" || got.1["error"]["code"] == "not_member",
        "{}",
        got.1
    );

    // The owner adds bob; bob now sees the room.
    let (s, _) = node
        .call(
            "PUT",
            &format!("/v1/rooms/{room}/members/{bob_id}"),
            Some(&alice),
            None,
        )
        .await;
    assert_eq!(s, 204);
    let (s, _) = node.get(&format!("/v1/rooms/{room}"), &bob).await;
    assert_eq!(s, 200);
    let (_, v) = node.get("/v1/rooms", &bob).await;
    assert!(ids(&v, "rooms", "room_id").contains(&room), "{v}");

    // A member who is not the owner cannot add carol.
    let got = node
        .call(
            "PUT",
            &format!("/v1/rooms/{room}/members/{carol_id}"),
            Some(&bob),
            None,
        )
        .await;
    assert_error(got, 403, "forbidden");
    // The owner adding an unknown user, or to an unknown room.
    assert_error(
        node.call(
            "PUT",
            &format!("/v1/rooms/{room}/members/u_nobody"),
            Some(&alice),
            None,
        )
        .await,
        404,
        "not_found",
    );
    assert_error(
        node.call(
            "PUT",
            &format!("/v1/rooms/r_nope/members/{bob_id}"),
            Some(&alice),
            None,
        )
        .await,
        404,
        "not_found",
    );

    // Carol, not a member, cannot list the members.
    assert_error(
        node.get(&format!("/v1/rooms/{room}/members"), &carol).await,
        403,
        "not_member",
    );
    let (s, v) = node.get(&format!("/v1/rooms/{room}/members"), &bob).await;
    assert_eq!(s, 200);
    let mut members = ids(&v, "members", "");
    members.sort();
    let mut want = vec![alice_id, bob_id];
    want.sort();
    assert_eq!(members, want);
    node.stop().await;
}

#[tokio::test]
async fn the_owner_removes_members_and_others_cannot() {
    let node = InProcess::start().await;
    let (alice_id, alice) = node.user("alice").await;
    let (bob_id, bob) = node.user("bob").await;
    let (carol_id, carol) = node.user("carol").await;
    let room = node.room(&alice, "secret", "private").await;
    for id in [&bob_id, &carol_id] {
        let (s, _) = node
            .call(
                "PUT",
                &format!("/v1/rooms/{room}/members/{id}"),
                Some(&alice),
                None,
            )
            .await;
        assert_eq!(s, 204);
    }

    let got = node
        .call(
            "DELETE",
            &format!("/v1/rooms/{room}/members/{carol_id}"),
            Some(&bob),
            None,
        )
        .await;
    assert_error(got, 403, "forbidden");
    let (s, _) = node
        .call(
            "DELETE",
            &format!("/v1/rooms/{room}/members/{carol_id}"),
            Some(&alice),
            None,
        )
        .await;
    assert_eq!(s, 204);
    assert_error(
        node.get(&format!("/v1/rooms/{room}"), &carol).await,
        403,
        "not_member",
    );

    // The owner can neither leave nor be removed.
    assert_error(
        node.call(
            "DELETE",
            &format!("/v1/rooms/{room}/members/{alice_id}"),
            Some(&alice),
            None,
        )
        .await,
        403,
        "forbidden",
    );

    // Bob leaves by himself.
    let (s, _) = node
        .call(
            "DELETE",
            &format!("/v1/rooms/{room}/members/{bob_id}"),
            Some(&bob),
            None,
        )
        .await;
    assert_eq!(s, 204);
    assert_error(
        node.get(&format!("/v1/rooms/{room}/messages"), &bob).await,
        403,
        "not_member",
    );
    node.stop().await;
}

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

// ----- server API -----

#[tokio::test]
async fn the_server_publishes_with_its_key_as_nobody() {
    let node = InProcess::start().await;
    let (_, alice) = node.user("alice").await;
    let room = node.room(&alice, "news", "private").await;
    let conv = format!("room:{room}");
    let body =
        json!({"conv": conv, "body": {"text": "maintenance at noon"}, "client_msg_id": "srv-1"});

    let (s, first) = node.server("/v1/server/publish", body.clone()).await;
    assert_eq!(s, 201, "{first}");
    assert_eq!(first["conv"], conv);
    assert_eq!(first["seq"], 1);
    let (s, again) = node.server("/v1/server/publish", body.clone()).await;
    assert_eq!(s, 201);
    assert_eq!(
        again, first,
        "a retried server publish gets the first answer"
    );

    let (_, v) = node
        .get(&format!("/v1/rooms/{room}/messages"), &alice)
        .await;
    assert_eq!(seqs(&v), vec![1]);
    assert_eq!(v["messages"][0]["from"], Value::Null);
    assert_eq!(v["messages"][0]["body"]["text"], "maintenance at noon");

    let wrong = node
        .raw("POST", "/v1/server/publish")
        .header("x-api-key", "wrong");
    let (s, _, v) = node.send_json(wrong, &body).await;
    assert_error((s, v), 401, "unauthorized");
    let missing = node.raw("POST", "/v1/server/publish");
    let (s, _, v) = node.send_json(missing, &body).await;
    assert_error((s, v), 401, "unauthorized");
    // A user's bearer token is not an API key.
    assert_error(
        node.post("/v1/server/publish", &alice, body).await,
        401,
        "unauthorized",
    );

    assert_error(
        node.server(
            "/v1/server/publish",
            json!({"conv": "room:r_nope", "body": 1}),
        )
        .await,
        404,
        "not_found",
    );
    assert_error(
        node.server("/v1/server/publish", json!({"conv": "nonsense", "body": 1}))
            .await,
        400,
        "bad_request",
    );
    node.stop().await;
}

#[tokio::test]
async fn the_server_issues_tokens_for_its_own_users() {
    let node = InProcess::start().await;
    let before = now_ms();
    let (s, v) = node
        .server("/v1/server/users/ext-42/tokens", json!({"ttl_s": 120}))
        .await;
    assert_eq!(s, 201, "{v}");
    assert_eq!(v["user_id"], "ext-42");
    let token = v["token"].as_str().expect("token").to_owned();
    let expires_at = v["expires_at"].as_u64().expect("expires_at");
    assert!(
        expires_at >= before + 115_000 && expires_at <= now_ms() + 125_000,
        "expires_at {expires_at} is not about now + 120 s (now {before})"
    );

    let (s, me) = node.get("/v1/me", &token).await;
    assert_eq!(s, 200, "{me}");
    assert_eq!(me["user_id"], "ext-42");

    // Without a body: the default lifetime; the user already exists and keeps its id.
    let keyed = node
        .raw("POST", "/v1/server/users/ext-42/tokens")
        .header("x-api-key", API_KEY);
    let (s, _, v) = node.send(keyed, Bytes::new()).await;
    assert_eq!(s, 201, "{v}");
    assert_eq!(v["user_id"], "ext-42");
    assert!(
        v["expires_at"].as_u64().unwrap() > now_ms() + 3_600_000,
        "{v}"
    );

    let keyless = node.raw("POST", "/v1/server/users/ext-42/tokens");
    let (s, _, v) = node.send_json(keyless, &json!({})).await;
    assert_error((s, v), 401, "unauthorized");
    assert_error(
        node.server("/v1/server/users/has%20space/tokens", json!({}))
            .await,
        400,
        "bad_request",
    );
    node.stop().await;
}

#[tokio::test]
async fn server_and_user_publishes_do_not_share_idempotency_keys() {
    let node = InProcess::start().await;
    let (_, alice) = node.user("alice").await;
    let room = node.room(&alice, "lobby", "public").await;
    let conv = format!("room:{room}");
    let (s, srv) = node
        .server(
            "/v1/server/publish",
            json!({"conv": conv, "body": "from the server", "client_msg_id": "same"}),
        )
        .await;
    assert_eq!(s, 201);
    let (s, usr) = node
        .post(
            &format!("/v1/rooms/{room}/messages"),
            &alice,
            json!({"body": "from alice", "client_msg_id": "same"}),
        )
        .await;
    assert_eq!(s, 201);
    assert_eq!(
        (srv["seq"].as_u64(), usr["seq"].as_u64()),
        (Some(1), Some(2))
    );

    // "@server" is the server's own idempotency owner: the server API must not hand out a user
    // token for it, or that user's publishes would be answered with the server's receipts.
    assert_error(
        node.server("/v1/server/users/@server/tokens", json!({}))
            .await,
        400,
        "bad_request",
    );
    node.stop().await;
}

#[tokio::test]
async fn a_server_token_stops_working_when_its_ttl_runs_out() {
    let node = InProcess::start().await;
    let (s, v) = node
        .server("/v1/server/users/ext-short/tokens", json!({"ttl_s": 1}))
        .await;
    assert_eq!(s, 201, "{v}");
    let token = v["token"].as_str().unwrap().to_owned();
    let (s, me) = node.get("/v1/me", &token).await;
    assert_eq!(s, 200, "{me}");
    eventually(|| async {
        let (s, v) = node.get("/v1/me", &token).await;
        if s == 401 && v["error"]["code"] == "unauthorized" {
            Ok(())
        } else {
            Err(format!("{s} {v}"))
        }
    })
    .await;
    node.stop().await;
}

// ----- health -----

#[tokio::test]
async fn health_and_readiness_answer_200() {
    let node = InProcess::start().await;
    for path in ["/healthz", "/readyz"] {
        let (s, v) = node.call("GET", path, None, None).await;
        assert_eq!(s, 200, "{path}: {v}");
    }
    node.stop().await;
}

// ----- unknown routes and methods -----

#[tokio::test]
async fn unknown_routes_and_wrong_methods_get_json_errors() {
    let node = InProcess::start().await;
    let (_, alice) = node.user("alice").await;
    assert_error(
        node.call("GET", "/v1/nope", None, None).await,
        404,
        "not_found",
    );
    assert_error(
        node.get("/v1/rooms/r_1/nope", &alice).await,
        404,
        "not_found",
    );

    let delete_me = node
        .raw("DELETE", "/v1/me")
        .header("authorization", format!("Bearer {alice}"));
    let (s, headers, v) = node.send(delete_me, Bytes::new()).await;
    assert_eq!(s, 405, "wrong method status: {v}");
    assert!(
        v["error"]["code"].is_string() && v["error"]["message"].is_string(),
        "wrong method body: {v}"
    );
    let allow = headers
        .get("allow")
        .map(|a| a.to_str().unwrap().to_owned())
        .unwrap_or_default();
    assert!(allow.contains("GET"), "Allow header: {allow:?}");
    let (s, v) = node
        .call("PATCH", "/v1/rooms", Some(&alice), Some(json!({})))
        .await;
    assert_eq!(s, 405, "wrong method status: {v}");
    assert!(v["error"]["code"].is_string(), "wrong method body: {v}");
    node.stop().await;
}

#[tokio::test]
async fn errors_made_by_the_http_layer_still_use_the_json_shape() {
    let node = InProcess::start().await;
    let (_, token) = node.user("alice").await;
    // Bad percent-encoding in a path segment.
    let (s, v) = node.get("/v1/rooms/%FF", &token).await;
    assert_eq!(s, 400, "{v}");
    assert_eq!(v["error"]["code"], "bad_request");
    // A plain GET on the WebSocket route.
    let (s, v) = node.get("/v1/ws", &token).await;
    assert!((400..500).contains(&s), "{s}");
    assert!(v["error"]["code"].is_string(), "{v}");
    assert!(v["error"]["message"].is_string(), "{v}");
    // `me` is reserved and cannot be claimed through the server API.
    let (s, v) = node.server("/v1/server/users/me/tokens", json!({})).await;
    assert_eq!(s, 400, "{v}");
    node.stop().await;
}
