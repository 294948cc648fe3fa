//! Issue 13, findings 3 to 5 and the long-poll part of 2, each reproduced from outside against
//! a node on 127.0.0.1: poisoned (too deep) bodies on every path, long-poll sessions that cost
//! nothing, and HTTP endpoints without rate limits. Limits are set small per test so that each
//! attack takes a fraction of a second.

mod depth;
mod poll;
mod rates;

use crate::common::{API_KEY, Http};
use serde_json::Value;

/// One HTTP call, with the `Retry-After` header of the answer (in seconds) when it has one.
pub async fn call(
    http: &Http,
    method: &str,
    path: &str,
    token: Option<&str>,
    body: Option<Value>,
) -> (u16, Value, Option<u64>) {
    let method = reqwest::Method::from_bytes(method.as_bytes()).unwrap();
    let mut req = http.client.request(method, format!("{}{path}", http.base));
    if let Some(t) = token {
        req = req.bearer_auth(t);
    }
    if let Some(b) = body {
        req = req.json(&b);
    }
    let resp = req.send().await.expect("HTTP request");
    answer(resp).await
}

/// A server API call, with `Retry-After`.
pub async fn server(http: &Http, path: &str, body: Value) -> (u16, Value, Option<u64>) {
    let resp = http
        .client
        .post(format!("{}{path}", http.base))
        .header("x-api-key", API_KEY)
        .json(&body)
        .send()
        .await
        .expect("HTTP request");
    answer(resp).await
}

async fn answer(resp: reqwest::Response) -> (u16, Value, Option<u64>) {
    let status = resp.status().as_u16();
    let retry = resp
        .headers()
        .get("retry-after")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse().ok());
    let text = resp.text().await.unwrap_or_default();
    (
        status,
        serde_json::from_str(&text).unwrap_or(Value::Null),
        retry,
    )
}

/// Asserts a `429 rate_limited` answer with a `Retry-After` of at least a second.
#[track_caller]
pub fn assert_limited(got: &(u16, Value, Option<u64>)) {
    let (s, v, retry) = got;
    assert_eq!(*s, 429, "{v}");
    assert_eq!(v["error"]["code"], "rate_limited", "{v}");
    assert!(
        retry.is_some_and(|r| r >= 1),
        "429 without a Retry-After: {v}"
    );
}
