//! What an older version stored is indexed at the first start of this one: usernames by their
//! case-insensitive key (so nobody registers another spelling next to them), and sessions by
//! their user (so a user-wide revoke reaches them).

use crate::common;

use switchboard_conformance::RecordingSink;
use switchboard_core::backend::BackendError;
use switchboard_testkit::RedisServer;

#[tokio::test]
async fn older_usernames_are_indexed_by_key_and_older_names_win() {
    let redis = RedisServer::start();
    // What an older version wrote: `Alice` first, then `alice` (names compared exactly).
    for line in [
        "HSET t:user:u_old created_at 1 username Alice password_hash h-old",
        "SET t:username:Alice u_old",
        "HSET t:user:u_new created_at 2 username alice password_hash h-new",
        "SET t:username:alice u_new",
        "HSET t:user:u_bob created_at 3 username BOB password_hash h-bob",
        "SET t:username:BOB u_bob",
    ] {
        redis.command(line);
    }
    let backend = common::connect(common::config(&redis, "t:", "n1"), RecordingSink::new()).await;
    let s = backend.backend().store;
    let id = |name: &'static str| {
        let s = s.clone();
        async move {
            s.user_by_username(name)
                .await
                .expect("lookup")
                .map(|c| c.user.user_id)
        }
    };
    assert_eq!(id("Alice").await.as_deref(), Some("u_old"));
    assert_eq!(
        id("alice").await.as_deref(),
        Some("u_new"),
        "exact spelling"
    );
    assert_eq!(id("bob").await.as_deref(), Some("u_bob"), "indexed by key");
    for taken in ["Bob", "bob", "ｂｏｂ"] {
        assert_eq!(
            s.create_user(taken, "h").await,
            Err(BackendError::UsernameTaken),
            "{taken}"
        );
    }
    backend.backend().lifecycle.close().await;
}

/// Sessions an older version stored (no per-user index) are indexed at start, so a user-wide
/// revoke reaches them too.
#[tokio::test]
async fn older_sessions_are_revoked_with_the_rest() {
    let redis = RedisServer::start();
    let hex = "ab".repeat(32);
    redis.command(&format!(
        "HSET t:session:{hex} session_id s_old user_id u_1 expires_at 4000000000000"
    ));
    let backend = common::connect(common::config(&redis, "t:", "n1"), RecordingSink::new()).await;
    let s = backend.backend().store;
    let hash = [0xab_u8; 32];
    assert!(s.session(hash).await.expect("read").is_some());
    assert_eq!(
        s.delete_user_sessions("u_1", None).await.expect("revoke"),
        vec!["s_old".to_owned()]
    );
    assert_eq!(s.session(hash).await.expect("read"), None);
    backend.backend().lifecycle.close().await;
}
