//! The long-polling transport: a session opened by `POST` with the resume, then `GET`s that
//! wait for frames and `POST`s that carry ours, following the session to its node when a
//! request lands on another (`421 wrong_node`).

use super::{INCOMING_BUFFER, Incoming, Link, OUTGOING_BUFFER, OpenError, Out, closed, decode};
use crate::Transport;
use serde::Deserialize;
use serde_json::Value;
use serde_json::value::RawValue;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::mpsc;

/// How long a long-poll GET asks the server to hold the request.
pub(crate) const POLL_WAIT_MS: u64 = 25_000;

/// Opens a long-poll session at `poll` (the node's `endpoints.poll`) with `resume`; the session
/// is authenticated at once and its first frame is `welcome`.
pub(crate) async fn open_poll(
    http: &reqwest::Client,
    poll: &str,
    token: &str,
    resume: Value,
    timeout: Duration,
) -> Result<Link, OpenError> {
    let body = serde_json::json!({ "resume": resume });
    let resp = http
        .post(poll)
        .bearer_auth(token)
        .json(&body)
        .timeout(timeout)
        .send()
        .await
        .map_err(|e| OpenError::Failed(format!("{poll}: {e}")))?;
    let status = resp.status().as_u16();
    let answer: Value = resp.json().await.unwrap_or(Value::Null);
    match status {
        200 | 201 => {}
        401 => {
            return Err(OpenError::Unauthorized(
                answer["error"]["message"]
                    .as_str()
                    .unwrap_or("token refused")
                    .to_owned(),
            ));
        }
        s => {
            return Err(OpenError::Failed(format!(
                "{poll}: {s} {}",
                answer["error"]["code"].as_str().unwrap_or("")
            )));
        }
    }
    let session = answer["session"].as_str().unwrap_or_default();
    let url = match answer["poll"].as_str() {
        Some(u) => u.to_owned(),
        None if !session.is_empty() => format!("{}/{session}", poll.trim_end_matches('/')),
        None => {
            return Err(OpenError::Failed(format!(
                "{poll}: no session in the answer"
            )));
        }
    };
    let url = Arc::new(Mutex::new(url));
    let (out_tx, out_rx) = mpsc::channel::<Out>(OUTGOING_BUFFER);
    let (inc_tx, inc_rx) = mpsc::channel(INCOMING_BUFFER);
    let poller = tokio::spawn(poll_loop(
        http.clone(),
        url.clone(),
        inc_tx.clone(),
        timeout,
    ));
    let writer = tokio::spawn(post_loop(http.clone(), url, out_rx, inc_tx, timeout));
    Ok(Link {
        transport: Transport::LongPoll,
        out: out_tx,
        inc: inc_rx,
        writer: Some(writer),
        tasks: vec![poller],
    })
}

fn current(url: &Mutex<String>) -> String {
    url.lock().expect("poll url lock").clone()
}

/// Follows a `421 wrong_node` answer to the session's real node; false when it names none.
fn follow_wrong_node(url: &Mutex<String>, answer: &Value) -> bool {
    match answer["error"]["poll"].as_str() {
        Some(u) if !u.is_empty() => {
            tracing::debug!(poll = u, "wrong_node: following the session to its node");
            *url.lock().expect("poll url lock") = u.to_owned();
            true
        }
        _ => false,
    }
}

/// `GET {poll}?after=N&wait_ms=W` in a loop, acknowledging what was received.
async fn poll_loop(
    http: reqwest::Client,
    url: Arc<Mutex<String>>,
    inc: mpsc::Sender<Incoming>,
    timeout: Duration,
) {
    let mut after = 0u64;
    let mut redirects = 0;
    let reason = loop {
        let u = current(&url);
        let resp = http
            .get(&u)
            .query(&[("after", after), ("wait_ms", POLL_WAIT_MS)])
            .timeout(Duration::from_millis(POLL_WAIT_MS) + timeout)
            .send()
            .await;
        let resp = match resp {
            Ok(r) => r,
            Err(e) => break format!("poll failed: {e}"),
        };
        let status = resp.status().as_u16();
        match status {
            200 => {}
            404 => break "the poll session ended".to_owned(),
            421 => {
                let answer: Value = resp.json().await.unwrap_or(Value::Null);
                redirects += 1;
                if redirects <= 3 && follow_wrong_node(&url, &answer) {
                    continue;
                }
                break "poll session on another node, which is not known".to_owned();
            }
            s => break format!("poll answered {s}"),
        }
        redirects = 0;
        let text = match resp.bytes().await {
            Ok(t) => t,
            Err(e) => break format!("poll answer unreadable: {e}"),
        };
        let frames: Vec<Box<RawValue>> = match serde_json::from_slice(&text) {
            Ok(f) => f,
            Err(e) => break format!("poll answer unreadable: {e}"),
        };
        if frames.is_empty() && inc.send(Incoming::Alive).await.is_err() {
            return;
        }
        for f in frames {
            // `pseq` numbers the session's frames; the frame decoder ignores it.
            if let Ok(PollSeq { pseq: Some(p) }) = serde_json::from_str(f.get()) {
                if p <= after {
                    continue;
                }
                after = p;
            }
            if inc.send(decode(f.get().as_bytes())).await.is_err() {
                return;
            }
        }
    };
    let _ = inc.send(Incoming::Closed(reason)).await;
}

/// The sequence number a long-poll answer puts on each frame.
#[derive(Deserialize)]
struct PollSeq {
    #[serde(default)]
    pseq: Option<u64>,
}

/// `POST {poll}` with the frames to send, batching what is queued.
async fn post_loop(
    http: reqwest::Client,
    url: Arc<Mutex<String>>,
    mut out: mpsc::Receiver<Out>,
    inc: mpsc::Sender<Incoming>,
    timeout: Duration,
) {
    let mut closing = false;
    while let Some(first) = out.recv().await {
        let mut batch = Vec::new();
        match first {
            Out::Frame(f) => batch.push(f),
            Out::Close => closing = true,
        }
        while let Ok(o) = out.try_recv() {
            match o {
                Out::Frame(f) => batch.push(f),
                Out::Close => closing = true,
            }
        }
        let mut attempts = 0;
        while !batch.is_empty() {
            attempts += 1;
            let body = format!("[{}]", batch.join(","));
            let resp = http
                .post(current(&url))
                .header(reqwest::header::CONTENT_TYPE, "application/json")
                .body(body)
                .timeout(timeout)
                .send()
                .await;
            let resp = match resp {
                Ok(r) => r,
                Err(e) => {
                    closed(&inc, format!("poll send failed: {e}"));
                    return;
                }
            };
            let status = resp.status().as_u16();
            let answer: Value = resp.json().await.unwrap_or(Value::Null);
            match status {
                200..=299 => batch.clear(),
                421 if attempts <= 3 && follow_wrong_node(&url, &answer) => {}
                429 if attempts <= 20 => {
                    // The session's input queue is full; the first `n` frames were taken.
                    let taken = answer["error"]["message"]
                        .as_str()
                        .and_then(|m| m.split_whitespace().next())
                        .and_then(|n| n.parse::<usize>().ok())
                        .unwrap_or(0)
                        .min(batch.len());
                    batch.drain(..taken);
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
                s => {
                    closed(&inc, format!("poll send answered {s}"));
                    return;
                }
            }
        }
        if closing {
            let _ = http.delete(current(&url)).timeout(timeout).send().await;
            return;
        }
    }
}
