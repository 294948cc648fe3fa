//! Store cases: users, auth sessions, rooms and members.

use crate::{BackendFactory, RecordingSink};
use switchboard_core::backend::{AuthSession, BackendError, Visibility};

/// Users: create, duplicate name, lookups by name and id, `ensure_user`.
pub async fn users(factory: &dyn BackendFactory) {
    let b = factory.make(RecordingSink::new()).await;
    let s = &b.store;

    let alice = s
        .create_user("alice", "hash-a")
        .await
        .expect("create alice");
    assert_eq!(alice.username.as_deref(), Some("alice"));
    assert!(!alice.user_id.is_empty(), "user ids are not empty");
    assert_eq!(
        s.create_user("alice", "hash-b").await,
        Err(BackendError::UsernameTaken),
        "a taken username is refused"
    );
    for variant in ["Alice", "ALICE", "ａｌｉｃｅ"] {
        assert_eq!(
            s.create_user(variant, "hash-c").await,
            Err(BackendError::UsernameTaken),
            "names compare NFKC-normalized, ignoring case: {variant}"
        );
    }
    let bob = s.create_user("Bob", "hash-b").await.expect("create Bob");
    assert_ne!(bob.user_id, alice.user_id, "each user gets its own id");
    assert_eq!(bob.username.as_deref(), Some("Bob"), "stored as given");
    let found = s
        .user_by_username("bob")
        .await
        .expect("lookup")
        .expect("Bob is found ignoring case");
    assert_eq!(found.user, bob);

    let creds = s
        .user_by_username("alice")
        .await
        .expect("user_by_username")
        .expect("alice is found by name");
    assert_eq!(creds.user, alice);
    assert_eq!(creds.password_hash.as_deref(), Some("hash-a"));
    assert!(
        s.user_by_username("nobody")
            .await
            .expect("lookup")
            .is_none()
    );
    assert_eq!(
        s.user(&alice.user_id).await.expect("user"),
        Some(alice.clone())
    );
    assert_eq!(s.user("u_nobody").await.expect("user"), None);

    let byo = s.ensure_user("app-user-1").await.expect("ensure_user");
    assert_eq!(byo.user_id, "app-user-1");
    assert_eq!(byo.username, None, "ensured users have no name");
    assert_eq!(
        s.ensure_user("app-user-1").await.expect("again"),
        byo,
        "idempotent"
    );
    assert_eq!(s.user("app-user-1").await.expect("user"), Some(byo));
    assert_eq!(
        s.ensure_user(&alice.user_id)
            .await
            .expect("ensure existing"),
        alice,
        "ensure_user keeps an existing user as it is"
    );
    b.lifecycle.close().await;
}

/// Auth sessions: create, get, delete; unknown token hashes are `None`.
pub async fn sessions(factory: &dyn BackendFactory) {
    let b = factory.make(RecordingSink::new()).await;
    let s = &b.store;
    let (h1, h2) = ([1u8; 32], [2u8; 32]);
    let s1 = AuthSession {
        session_id: "s_1".into(),
        user_id: "u_1".into(),
        expires_at_ms: 4_000_000_000_000,
    };
    s.create_session(h1, &s1).await.expect("create_session");
    assert_eq!(s.session(h1).await.expect("session"), Some(s1.clone()));
    assert_eq!(s.session(h2).await.expect("session"), None);
    assert_eq!(s.delete_session(h2).await.expect("delete unknown"), None);
    assert_eq!(s.delete_session(h1).await.expect("delete"), Some(s1));
    assert_eq!(s.session(h1).await.expect("session"), None, "deleted");
    assert_eq!(s.delete_session(h1).await.expect("delete again"), None);
    b.lifecycle.close().await;
}

/// Revocation: every session of a user, or all but one, are deleted (and no longer returned,
/// even after being read once); other users' sessions stay; password hashes are replaced.
pub async fn revocation(factory: &dyn BackendFactory) {
    let b = factory.make(RecordingSink::new()).await;
    let s = &b.store;
    let session = |id: &str, user: &str| AuthSession {
        session_id: id.into(),
        user_id: user.into(),
        expires_at_ms: 4_000_000_000_000,
    };
    let tokens = [
        ([11u8; 32], session("s_a", "u_1")),
        ([12u8; 32], session("s_b", "u_1")),
        ([13u8; 32], session("s_c", "u_1")),
        ([14u8; 32], session("s_d", "u_2")),
    ];
    for (hash, sess) in &tokens {
        s.create_session(*hash, sess).await.expect("create_session");
        // Read once, so that a backend that caches sessions has them cached.
        assert!(s.session(*hash).await.expect("session").is_some());
    }
    let mut deleted = s
        .delete_user_sessions("u_1", Some("s_b"))
        .await
        .expect("delete all but s_b");
    deleted.sort();
    assert_eq!(deleted, vec!["s_a".to_owned(), "s_c".to_owned()]);
    assert_eq!(s.session([11; 32]).await.expect("session"), None);
    assert_eq!(s.session([13; 32]).await.expect("session"), None);
    assert_eq!(
        s.session([12; 32]).await.expect("session"),
        Some(tokens[1].1.clone()),
        "the kept session stays"
    );
    assert_eq!(
        s.session([14; 32]).await.expect("session"),
        Some(tokens[3].1.clone()),
        "another user's session stays"
    );
    assert_eq!(
        s.delete_user_sessions("u_1", Some("s_b"))
            .await
            .expect("again, only the kept one left"),
        Vec::<String>::new()
    );
    let rest = s
        .delete_user_sessions("u_1", None)
        .await
        .expect("delete all");
    assert_eq!(rest, vec!["s_b".to_owned()]);
    assert_eq!(s.session([12; 32]).await.expect("session"), None);
    assert_eq!(
        s.delete_user_sessions("u_1", None)
            .await
            .expect("none left"),
        Vec::<String>::new()
    );

    let carol = s.create_user("carol", "old-hash").await.expect("carol");
    s.set_password(&carol.user_id, "new-hash")
        .await
        .expect("set_password");
    let creds = s
        .user_by_username("carol")
        .await
        .expect("lookup")
        .expect("carol");
    assert_eq!(creds.password_hash.as_deref(), Some("new-hash"));
    assert_eq!(
        s.set_password("u_nobody", "h").await,
        Err(BackendError::NotFound)
    );
    b.lifecycle.close().await;
}

/// Rooms: creation, owner membership, visibility, members and their order, unknown rooms.
pub async fn rooms(factory: &dyn BackendFactory) {
    let b = factory.make(RecordingSink::new()).await;
    let s = &b.store;
    let (a, bob, carol) = ("u_a", "u_b", "u_c");

    let lobby = s
        .create_room("lobby", Visibility::Public, a)
        .await
        .expect("create lobby");
    let secret = s
        .create_room("secret", Visibility::Private, a)
        .await
        .expect("create secret");
    let other = s
        .create_room("other", Visibility::Private, bob)
        .await
        .expect("create other");
    assert_eq!(lobby.name, "lobby");
    assert_eq!(lobby.visibility, Visibility::Public);
    assert_eq!(lobby.owner, a);
    assert!(lobby.created_at_ms > 0, "created_at_ms is set");
    assert_ne!(lobby.room_id, secret.room_id, "room ids are fresh");
    assert_eq!(
        s.room(&secret.room_id).await.expect("room"),
        Some(secret.clone())
    );
    assert_eq!(s.room("r_nope").await.expect("room"), None);

    assert_eq!(s.members(&lobby.room_id).await.expect("members"), vec![a]);
    assert!(
        s.is_member(&secret.room_id, a).await.expect("is_member"),
        "owner is a member"
    );
    assert!(!s.is_member(&secret.room_id, bob).await.expect("is_member"));

    let ids = |rooms: Vec<switchboard_core::backend::Room>| {
        rooms.into_iter().map(|r| r.room_id).collect::<Vec<_>>()
    };
    let visible = |u: &'static str| async move {
        ids(s.rooms_visible_to(u).await.expect("rooms_visible_to"))
    };
    assert_eq!(
        visible(a).await,
        vec![lobby.room_id.clone(), secret.room_id.clone()],
        "public rooms and own private rooms, oldest first"
    );
    assert_eq!(
        visible(bob).await,
        vec![lobby.room_id.clone(), other.room_id.clone()]
    );
    assert_eq!(
        visible(carol).await,
        vec![lobby.room_id.clone()],
        "no others' private rooms"
    );

    s.add_member(&secret.room_id, bob).await.expect("add bob");
    s.add_member(&secret.room_id, carol)
        .await
        .expect("add carol");
    s.add_member(&secret.room_id, bob)
        .await
        .expect("adding twice is no error");
    assert_eq!(
        s.members(&secret.room_id).await.expect("members"),
        vec![a, bob, carol],
        "members in join order"
    );
    assert_eq!(
        visible(bob).await,
        vec![
            lobby.room_id.clone(),
            secret.room_id.clone(),
            other.room_id.clone()
        ]
    );

    s.remove_member(&secret.room_id, bob)
        .await
        .expect("remove bob");
    s.remove_member(&secret.room_id, bob)
        .await
        .expect("removing twice is no error");
    assert!(!s.is_member(&secret.room_id, bob).await.expect("is_member"));
    assert_eq!(
        s.members(&secret.room_id).await.expect("members"),
        vec![a, carol]
    );
    s.add_member(&secret.room_id, bob)
        .await
        .expect("re-add bob");
    assert_eq!(
        s.members(&secret.room_id).await.expect("members"),
        vec![a, carol, bob],
        "a re-added member joins at the end"
    );

    assert_eq!(
        s.add_member("r_nope", bob).await,
        Err(BackendError::NotFound),
        "add_member to an unknown room"
    );
    assert!(s.members("r_nope").await.expect("members").is_empty());
    b.lifecycle.close().await;
}
