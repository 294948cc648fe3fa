//! Usernames an older version stored under their exact spelling are indexed by their
//! case-insensitive key at start, so that nobody registers another spelling next to them.

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
