//! Starting against a Redis that is not there fails quickly with a message naming it.

use std::time::{Duration, Instant};
use switchboard_backend_redis::{RedisBackend, RedisConfig};
use switchboard_conformance::RecordingSink;
use switchboard_core::backend::BackendError;

async fn fails_fast(url: &str) -> String {
    let t = Instant::now();
    let r = RedisBackend::connect(RedisConfig::new(url, "n1"), RecordingSink::new()).await;
    let took = t.elapsed();
    assert!(took < Duration::from_secs(5), "{url}: took {took:?}");
    match r {
        Err(BackendError::Unavailable(msg)) => msg,
        Err(other) => panic!("{url}: expected Unavailable, got {other:?}"),
        Ok(_) => panic!("{url}: connected to nothing"),
    }
}

#[tokio::test]
async fn nothing_listening_fails_within_seconds_naming_the_url() {
    let closed = switchboard_testkit::closed_port();
    let url = format!("redis://127.0.0.1:{}/", closed.port());
    let msg = fails_fast(&url).await;
    assert!(msg.contains(&url), "{msg}");
}

#[tokio::test]
async fn a_malformed_url_fails_naming_it() {
    let msg = fails_fast("http://not-redis").await;
    assert!(msg.contains("http://not-redis"), "{msg}");
}

#[tokio::test]
async fn an_unroutable_address_fails_within_seconds() {
    // TEST-NET-1 (RFC 5737): nothing answers, connection attempts hang until their timeout.
    let msg = fails_fast("redis://192.0.2.1:6379/").await;
    assert!(msg.contains("192.0.2.1"), "{msg}");
}

#[tokio::test]
async fn a_password_is_not_shown() {
    let closed = switchboard_testkit::closed_port();
    let url = format!("redis://user:hunter2@127.0.0.1:{}/", closed.port());
    let msg = fails_fast(&url).await;
    assert!(!msg.contains("hunter2"), "{msg}");
    assert!(msg.contains("user:***@127.0.0.1"), "{msg}");
}
