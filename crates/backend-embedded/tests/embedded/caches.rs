//! The embedded backend's in-memory caches stay exact when callers misbehave.

use crate::common;

use std::time::Duration;
use switchboard_conformance::RecordingSink;
use switchboard_core::backend::AuthSession;

/// A logout whose caller goes away right after queuing the delete (an HTTP client closing its
/// connection mid-request) still ends the token: the cached session does not outlive its row.
#[tokio::test]
async fn a_cancelled_logout_still_forgets_the_cached_session() {
    let dir = tempfile::tempdir().expect("temp dir");
    let backend = common::open(dir.path(), 0, RecordingSink::new());
    let b = backend.backend();
    let hash = [7u8; 32];
    let session = AuthSession {
        session_id: "s1".into(),
        user_id: "u1".into(),
        expires_at_ms: u64::MAX / 2,
    };
    b.store
        .create_session(hash, &session)
        .await
        .expect("create");
    // Cached by the create, and again by a read.
    assert!(b.store.session(hash).await.expect("read").is_some());

    // Polled once (the delete is queued), then dropped.
    let _ = tokio::time::timeout(Duration::ZERO, b.store.delete_session(hash)).await;

    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    loop {
        if b.store.session(hash).await.expect("read").is_none() {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "the logged-out token still authenticates from the cache"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    b.lifecycle.close().await;
}
