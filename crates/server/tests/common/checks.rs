//! Checks of JSON answers shared by the HTTP tests: the error shape, message lists, and
//! polling until a condition holds.

use serde_json::Value;
use std::future::Future;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// Asserts an error answer: the status, and the contract's JSON shape with `code`.
#[track_caller]
pub fn assert_error(got: (u16, Value), status: u16, code: &str) {
    let (s, v) = got;
    assert_eq!(s, status, "status of {v}");
    assert_eq!(v["error"]["code"], code, "error code in {v}");
    let message = v["error"]["message"]
        .as_str()
        .unwrap_or_else(|| panic!("error.message is not a string in {v}"));
    assert!(!message.is_empty(), "empty error.message in {v}");
}

/// Polls `check` until it returns `Ok`, for at most 5 s; panics with the last complaint.
pub async fn eventually<F, Fut>(mut check: F)
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<(), String>>,
{
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    loop {
        match check().await {
            Ok(()) => return,
            Err(why) if tokio::time::Instant::now() >= deadline => {
                panic!("not reached within 5 s: {why}")
            }
            Err(_) => tokio::time::sleep(Duration::from_millis(25)).await,
        }
    }
}

/// The wall clock in milliseconds, as tokens' `expires_at` counts.
pub fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_millis() as u64
}

/// The seqs of a `messages` list.
pub fn seqs(v: &Value) -> Vec<u64> {
    v["messages"]
        .as_array()
        .unwrap_or_else(|| panic!("no messages in {v}"))
        .iter()
        .map(|m| m["seq"].as_u64().unwrap())
        .collect()
}

/// The strings at `field` of each item of `list` (the items themselves when `field` is empty).
pub fn ids(v: &Value, list: &str, field: &str) -> Vec<String> {
    v[list]
        .as_array()
        .unwrap_or_else(|| panic!("no {list} in {v}"))
        .iter()
        .map(|x| {
            if field.is_empty() { x } else { &x[field] }
                .as_str()
                .unwrap()
                .to_owned()
        })
        .collect()
}
