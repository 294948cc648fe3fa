//! Connection-state recovery records: stored with an owner, read back, renewed, expired, and
//! written or deleted only as their guard allows, atomically.

use crate::{BackendFactory, RecordingSink};
use std::sync::Arc;
use std::time::Duration;
use switchboard_core::backend::{RecoveryGuard, RecoveryRecord};

/// The record under `key` as (owner, value), for short asserts.
async fn read(
    r: &Arc<dyn switchboard_core::backend::Registry>,
    key: &str,
) -> Option<(String, String)> {
    r.recovery(key)
        .await
        .expect("recovery")
        .map(|RecoveryRecord { owner, value }| (owner, value))
}

fn pair(owner: &str, value: &str) -> Option<(String, String)> {
    Some((owner.to_owned(), value.to_owned()))
}

/// Records: stored and read back with their owner, replaced, kept alive by `touch_recoveries`,
/// gone after their time to live; writes and deletes happen only as their guard allows.
pub async fn recovery_records(factory: &dyn BackendFactory) {
    use RecoveryGuard::*;
    let b = factory.make(RecordingSink::new()).await;
    let r = &b.registry;
    let long = Duration::from_secs(60);
    let short = Duration::from_millis(300);
    let put = |key: &'static str, owner: &'static str, value: &'static str, ttl, guard| async move {
        r.put_recovery(key, owner, value, ttl, guard)
            .await
            .expect("put")
    };
    assert_eq!(read(r, "p1").await, None, "none yet");
    assert!(
        !put("p1", "a", "v0", long, OwnedBy("a")).await,
        "OwnedBy needs a record"
    );
    assert_eq!(read(r, "p1").await, None, "a refused write stores nothing");
    assert!(put("p1", "a", r#"{"v":1}"#, long, Always).await);
    assert_eq!(read(r, "p1").await, pair("a", r#"{"v":1}"#));
    assert!(put("p1", "a", r#"{"v":2}"#, long, OwnedBy("a")).await);
    assert_eq!(
        read(r, "p1").await,
        pair("a", r#"{"v":2}"#),
        "the owner replaces it"
    );
    assert!(!put("p1", "c", "stale", long, OwnedByOrAbsent("c")).await);
    assert!(!put("p1", "c", "stale", long, OwnedBy("c")).await);
    assert_eq!(
        read(r, "p1").await,
        pair("a", r#"{"v":2}"#),
        "another owner may not"
    );
    assert!(
        put("p1", "b", r#"{"v":3}"#, long, OwnedBy("a")).await,
        "a take-over"
    );
    assert_eq!(read(r, "p1").await, pair("b", r#"{"v":3}"#));
    assert!(
        !put("p1", "a", "old", long, OwnedBy("a")).await,
        "the old owner is out"
    );
    assert!(
        !r.delete_recovery("p1", "a").await.expect("delete"),
        "and may not delete"
    );
    assert_eq!(read(r, "p1").await, pair("b", r#"{"v":3}"#));
    assert!(
        put("p4", "d", "new", long, OwnedByOrAbsent("d")).await,
        "absent: stored"
    );
    assert_eq!(read(r, "p4").await, pair("d", "new"));

    assert!(put("p2", "a", "kept", short, Always).await);
    assert!(put("p3", "a", "dropped", short, Always).await);
    r.touch_recoveries(&["p2".into(), "absent".into()], long)
        .await
        .expect("touch");
    tokio::time::sleep(Duration::from_millis(1200)).await;
    assert_eq!(read(r, "p2").await, pair("a", "kept"), "touched");
    assert_eq!(read(r, "p3").await, None, "expired");
    assert_eq!(read(r, "absent").await, None, "touch creates nothing");
    assert!(
        put("p3", "z", "again", long, OwnedByOrAbsent("z")).await,
        "an expired record is absent"
    );
    assert!(r.delete_recovery("p1", "b").await.expect("delete"));
    assert!(!r.delete_recovery("p1", "b").await.expect("deleting twice"));
    assert_eq!(read(r, "p1").await, None, "deleted");
    b.lifecycle.close().await;
}

/// Of many concurrent take-overs of one record from the same owner, exactly one succeeds, and
/// the record is the winner's.
pub async fn recovery_takeover(factory: &dyn BackendFactory) {
    let b = factory.make(RecordingSink::new()).await;
    let r = b.registry.clone();
    let long = Duration::from_secs(60);
    for round in 0..5 {
        let key = format!("race{round}");
        assert!(
            r.put_recovery(&key, "old", "ended", long, RecoveryGuard::Always)
                .await
                .expect("put")
        );
        let tries: Vec<_> = (0..8)
            .map(|i| {
                let (r, key) = (r.clone(), key.clone());
                tokio::spawn(async move {
                    let owner = format!("new{i}");
                    let won = r
                        .put_recovery(&key, &owner, &owner, long, RecoveryGuard::OwnedBy("old"))
                        .await
                        .expect("take over");
                    won.then_some(owner)
                })
            })
            .collect();
        let mut winners = Vec::new();
        for t in tries {
            winners.extend(t.await.expect("task"));
        }
        assert_eq!(
            winners.len(),
            1,
            "round {round}: one take-over wins: {winners:?}"
        );
        assert_eq!(read(&r, &key).await, pair(&winners[0], &winners[0]));
    }
    b.lifecycle.close().await;
}
