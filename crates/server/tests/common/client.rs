//! The [`Client`] trait every transport's test client implements, with the waits and
//! request/reply helpers a scenario is written with.

use super::WAIT;
use serde_json::{Value, json};
use std::time::Duration;

/// What every test client can do, whatever its transport. The provided methods build on
/// `send` and `next_within`, so a scenario is written once and run over every transport.
#[allow(async_fn_in_trait)]
pub trait Client {
    /// Sends one JSON frame.
    async fn send(&mut self, frame: Value);
    /// Sends raw text as one frame (for malformed-input tests).
    async fn send_raw(&mut self, text: &str);
    /// The next JSON frame within `d`: `Err` on timeout, `Ok(None)` on close. Transport-level
    /// heartbeats are answered and skipped.
    async fn next_within(&mut self, d: Duration) -> Result<Option<Value>, ()>;

    /// The next JSON frame, or `None` when the connection closed. Panics after [`WAIT`].
    async fn next(&mut self) -> Option<Value> {
        self.next_within(WAIT)
            .await
            .expect("timed out waiting for a frame")
    }

    /// Waits for a frame of `kind`, skipping others; panics if the connection closes first.
    async fn expect(&mut self, kind: &str) -> Value {
        loop {
            match self.next().await {
                Some(v) if v["type"] == kind => return v,
                Some(_) => continue,
                None => panic!("connection closed while waiting for {kind}"),
            }
        }
    }

    /// Sends a request and waits for the reply with the same id (skipping message frames).
    async fn request(&mut self, mut frame: Value, id: u64) -> Value {
        frame["id"] = json!(id);
        self.send(frame).await;
        loop {
            let v = self
                .next()
                .await
                .expect("connection closed before the reply");
            if v["id"] == json!(id) {
                return v;
            }
        }
    }

    /// Collects `message` frames of `conv` until `n` have arrived.
    async fn messages(&mut self, conv: &str, n: usize) -> Vec<Value> {
        let mut out = Vec::new();
        while out.len() < n {
            let v = self
                .next()
                .await
                .unwrap_or_else(|| panic!("closed after {} of {n} messages", out.len()));
            if v["type"] == "message" && v["conv"] == conv {
                out.push(v);
            }
        }
        out
    }

    /// Waits until the server closes the connection; returns the frames seen before.
    async fn until_closed(&mut self) -> Vec<Value> {
        let mut seen = Vec::new();
        while let Some(v) = self.next().await {
            seen.push(v);
        }
        seen
    }
}
