//! A long-polling test client over HTTP.

use super::{Client, Http, JsonApi};
use serde_json::{Value, json};
use std::time::Duration;

/// A long-polling client: frames go out by `POST /v1/poll/{session}`, come back by
/// `GET /v1/poll/{session}?after=N&wait_ms=W`, acknowledged by the next GET's `after`.
pub struct PollClient {
    pub http: Http,
    /// The session URL (`.../v1/poll/<session>`) the node answered.
    pub url: String,
    pub session: String,
    pub after: u64,
    pending: std::collections::VecDeque<Value>,
    closed: bool,
    pub answer_pings: bool,
}

impl PollClient {
    /// Opens a session with a bearer token (and `resume`); `Err((status, body))` when refused.
    pub async fn open(
        http: &Http,
        token: &str,
        resume: Option<Value>,
    ) -> Result<PollClient, (u16, Value)> {
        let body = resume.map(|r| json!({"resume": r}));
        let (s, v) = http.call("POST", "/v1/poll", Some(token), body).await;
        if s != 201 {
            return Err((s, v));
        }
        Ok(PollClient {
            http: http.clone(),
            url: v["poll"].as_str().unwrap().to_owned(),
            session: v["session"].as_str().unwrap().to_owned(),
            after: 0,
            pending: Default::default(),
            closed: false,
            answer_pings: true,
        })
    }

    /// Follows an existing session at `url` (e.g. the node-specific URL a `wrong_node`
    /// answer named).
    pub fn attach(http: &Http, url: &str, session: &str) -> PollClient {
        PollClient {
            http: http.clone(),
            url: url.to_owned(),
            session: session.to_owned(),
            after: 0,
            pending: Default::default(),
            closed: false,
            answer_pings: true,
        }
    }

    /// POSTs a raw body to the session; returns the status.
    pub async fn post_raw(&self, body: String) -> (u16, Value) {
        let resp = self
            .http
            .client
            .post(&self.url)
            .body(body)
            .send()
            .await
            .expect("poll POST");
        let status = resp.status().as_u16();
        (status, resp.json().await.unwrap_or(Value::Null))
    }
}

impl Client for PollClient {
    async fn send(&mut self, frame: Value) {
        let (s, v) = self.post_raw(json!([frame]).to_string()).await;
        assert!(s == 202 || s == 404, "poll POST: {s} {v}");
    }

    async fn send_raw(&mut self, text: &str) {
        let _ = self.post_raw(format!("[{text}]")).await;
    }

    async fn next_within(&mut self, d: Duration) -> Result<Option<Value>, ()> {
        let deadline = tokio::time::Instant::now() + d;
        loop {
            if let Some(v) = self.pending.pop_front() {
                return Ok(Some(v));
            }
            if self.closed {
                return Ok(None);
            }
            let left = deadline.saturating_duration_since(tokio::time::Instant::now());
            if left.is_zero() {
                return Err(());
            }
            let wait_ms = left.as_millis().min(25_000) as u64;
            let url = format!("{}?after={}&wait_ms={wait_ms}", self.url, self.after);
            let sent = tokio::time::timeout(
                left + Duration::from_secs(2),
                self.http.client.get(&url).send(),
            )
            .await
            .map_err(|_| ())?;
            // The node went away (shutdown, crash): the session is over.
            let Ok(resp) = sent else {
                self.closed = true;
                continue;
            };
            match resp.status().as_u16() {
                200 => {}
                404 => {
                    self.closed = true;
                    continue;
                }
                other => panic!("poll GET answered {other}: {:?}", resp.text().await),
            }
            let frames: Vec<Value> = resp.json().await.expect("poll GET answers a JSON array");
            for f in frames {
                let pseq = f["pseq"].as_u64().expect("every polled frame has a pseq");
                assert!(
                    pseq > self.after,
                    "frame {pseq} repeated after {}",
                    self.after
                );
                self.after = pseq;
                if f["type"] == "ping" && self.answer_pings {
                    self.send(json!({"type": "pong"})).await;
                    continue;
                }
                self.pending.push_back(f);
            }
        }
    }
}
