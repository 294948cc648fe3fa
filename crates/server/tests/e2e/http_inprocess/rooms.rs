//! Rooms and their members: creation, listing, visibility, who may add and remove whom.

use crate::common::*;
use serde_json::json;

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
