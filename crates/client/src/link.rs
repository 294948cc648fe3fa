//! One live connection to one node, whatever the transport: frames out through a channel,
//! frames in through another. Each transport runs as small tasks that end with the link.
//!
//! Both channels are bounded ([`INCOMING_BUFFER`], [`OUTGOING_BUFFER`]): when the driver falls
//! behind, the reader stops reading the socket (the server then sees a slow consumer), and a
//! driver sending faster than the socket takes waits. Nothing buffers without bound.

use crate::Transport;
use crate::net::Net;
use futures_util::{SinkExt, StreamExt};
use serde::Deserialize;
use serde_json::Value;
use serde_json::value::RawValue;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use switchboard_proto::{FrameError, ServerFrame};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tokio_tungstenite::tungstenite;
use tokio_tungstenite::tungstenite::Message as WsMessage;

/// Longest frame read from a TCP peer (the server's own hard limit is far lower).
const MAX_TCP_FRAME: usize = 16 * 1024 * 1024;
/// How long a long-poll GET asks the server to hold the request.
pub(crate) const POLL_WAIT_MS: u64 = 25_000;
/// Frames read from the server and not yet taken by the driver; when full, the reader waits.
pub(crate) const INCOMING_BUFFER: usize = 256;
/// Frames the driver queued and the writer has not sent yet; when full, the driver waits.
pub(crate) const OUTGOING_BUFFER: usize = 256;

/// Something that came from the server.
#[derive(Debug)]
pub(crate) enum Incoming {
    /// One server frame.
    Frame(ServerFrame),
    /// A frame that could not be decoded (with its `id`, when the envelope was readable).
    Unreadable(FrameError),
    /// A sign of life without a frame (a WebSocket ping or pong, an empty poll answer).
    Alive,
    /// The connection is over, and why.
    Closed(String),
}

/// What the driver hands the writer.
pub(crate) enum Out {
    /// One frame's JSON text.
    Frame(String),
    /// End the connection politely.
    Close,
}

/// Why a node could not be reached or refused the connection.
#[derive(Debug)]
pub(crate) enum OpenError {
    /// The token was refused: no other node will take it either.
    Unauthorized(String),
    /// The WebSocket upgrade was answered with this HTTP status (other than 503): something
    /// between us and the node does not do WebSocket. Long-polling may work.
    UpgradeRefused(u16),
    /// Anything else: try the next node.
    Failed(String),
}

/// A live connection.
pub(crate) struct Link {
    pub transport: Transport,
    out: mpsc::Sender<Out>,
    pub inc: mpsc::Receiver<Incoming>,
    writer: Option<JoinHandle<()>>,
    tasks: Vec<JoinHandle<()>>,
}

impl Link {
    /// Queues one frame, waiting while the outgoing buffer is full; false when the link is
    /// already gone.
    pub async fn send(&self, frame: &Value) -> bool {
        self.out.send(Out::Frame(frame.to_string())).await.is_ok()
    }

    /// Ends the connection politely (WebSocket close, TCP shutdown, `DELETE` of the poll
    /// session), waiting a moment for that to go out.
    pub async fn close(mut self) {
        // The writer may be gone or stuck; the close is a courtesy, so never wait for room.
        let _ = self.out.try_send(Out::Close);
        if let Some(w) = self.writer.take() {
            let _ = tokio::time::timeout(Duration::from_secs(1), w).await;
        }
    }
}

#[cfg(test)]
impl Link {
    /// A link with no connection behind it, for driver tests: what is fed into the returned
    /// sender comes in, what the driver sends stays in the returned receiver.
    pub(crate) fn for_test() -> (Link, mpsc::Sender<Incoming>, mpsc::Receiver<Out>) {
        let (out, out_rx) = mpsc::channel(OUTGOING_BUFFER);
        let (inc_tx, inc) = mpsc::channel(INCOMING_BUFFER);
        let link = Link {
            transport: Transport::Tcp,
            out,
            inc,
            writer: None,
            tasks: Vec::new(),
        };
        (link, inc_tx, out_rx)
    }
}

impl Drop for Link {
    fn drop(&mut self) {
        for t in &self.tasks {
            t.abort();
        }
        if let Some(w) = &self.writer {
            w.abort();
        }
    }
}

/// Opens a WebSocket to a `ws://` or `wss://` `url` (not yet authenticated).
pub(crate) async fn open_ws(net: &Net, url: &str, timeout: Duration) -> Result<Link, OpenError> {
    let (tls, rest) = match (url.strip_prefix("wss://"), url.strip_prefix("ws://")) {
        (Some(rest), _) => (true, rest),
        (None, Some(rest)) => (false, rest),
        _ => return Err(OpenError::Failed(format!("not a ws:// URL: {url}"))),
    };
    let host_port = rest.split('/').next().unwrap_or(rest);
    let connect = async {
        let io = net
            .open(host_port, tls)
            .await
            .map_err(|e| tungstenite::Error::Io(std::io::Error::other(e)))?;
        tokio_tungstenite::client_async(url, io).await
    };
    let ws = match tokio::time::timeout(timeout, connect).await {
        Err(_) => return Err(OpenError::Failed(format!("{url}: connect timed out"))),
        Ok(Err(tungstenite::Error::Http(resp))) => {
            let status = resp.status().as_u16();
            return Err(match status {
                503 => OpenError::Failed(format!("{url}: node overloaded or draining")),
                s => OpenError::UpgradeRefused(s),
            });
        }
        Ok(Err(e)) => return Err(OpenError::Failed(format!("{url}: {e}"))),
        Ok(Ok((ws, _))) => ws,
    };
    let (mut sink, mut stream) = ws.split();
    let (out_tx, mut out_rx) = mpsc::channel::<Out>(OUTGOING_BUFFER);
    let (inc_tx, inc_rx) = mpsc::channel(INCOMING_BUFFER);
    let inc = inc_tx.clone();
    let writer = tokio::spawn(async move {
        while let Some(o) = out_rx.recv().await {
            match o {
                Out::Frame(text) => {
                    if let Err(e) = sink.send(WsMessage::text(text)).await {
                        closed(&inc, format!("write failed: {e}"));
                        return;
                    }
                }
                Out::Close => {
                    let _ = sink.send(WsMessage::Close(None)).await;
                    let _ = sink.close().await;
                    return;
                }
            }
        }
    });
    let reader = tokio::spawn(async move {
        let reason = loop {
            match stream.next().await {
                None => break "connection closed".to_owned(),
                Some(Err(e)) => break format!("read failed: {e}"),
                Some(Ok(WsMessage::Text(t))) => forward(&inc_tx, t.as_bytes()).await,
                Some(Ok(WsMessage::Binary(b))) => forward(&inc_tx, &b).await,
                Some(Ok(WsMessage::Close(_))) => break "closed by the server".to_owned(),
                Some(Ok(_)) => {
                    let _ = inc_tx.send(Incoming::Alive).await;
                }
            }
        };
        let _ = inc_tx.send(Incoming::Closed(reason)).await;
    });
    Ok(Link {
        transport: Transport::WebSocket,
        out: out_tx,
        inc: inc_rx,
        writer: Some(writer),
        tasks: vec![reader],
    })
}

/// Decodes one frame and hands it to the driver, waiting while the incoming buffer is full.
async fn forward(inc: &mpsc::Sender<Incoming>, bytes: &[u8]) {
    let _ = inc.send(decode(bytes)).await;
}

fn decode(bytes: &[u8]) -> Incoming {
    match ServerFrame::decode(bytes) {
        Ok(f) => Incoming::Frame(f),
        Err(e) => Incoming::Unreadable(e),
    }
}

/// A writer's last word. It must not wait: the driver may itself be waiting for the writer's
/// room, and the writer ending (dropping its receiver) is what frees it. The reader reports
/// the closed connection anyway.
fn closed(inc: &mpsc::Sender<Incoming>, reason: String) {
    let _ = inc.try_send(Incoming::Closed(reason));
}

/// Opens a TCP connection to `tcp://host:port`, or a TLS one to `tls://host:port` (not yet
/// authenticated).
pub(crate) async fn open_tcp(net: &Net, url: &str, timeout: Duration) -> Result<Link, OpenError> {
    let (tls, addr) = match (url.strip_prefix("tls://"), url.strip_prefix("tcp://")) {
        (Some(addr), _) => (true, addr),
        (None, Some(addr)) => (false, addr),
        _ => return Err(OpenError::Failed(format!("not a tcp:// endpoint: {url}"))),
    };
    let addr = addr.trim_end_matches('/');
    let stream = match tokio::time::timeout(timeout, net.open(addr, tls)).await {
        Err(_) => return Err(OpenError::Failed(format!("{url}: connect timed out"))),
        Ok(Err(e)) => return Err(OpenError::Failed(format!("{url}: {e}"))),
        Ok(Ok(s)) => s,
    };
    let (mut rd, mut wr) = tokio::io::split(stream);
    let (out_tx, mut out_rx) = mpsc::channel::<Out>(OUTGOING_BUFFER);
    let (inc_tx, inc_rx) = mpsc::channel(INCOMING_BUFFER);
    let inc = inc_tx.clone();
    let writer = tokio::spawn(async move {
        while let Some(o) = out_rx.recv().await {
            match o {
                Out::Frame(text) => {
                    let mut buf = Vec::with_capacity(4 + text.len());
                    buf.extend_from_slice(&(text.len() as u32).to_be_bytes());
                    buf.extend_from_slice(text.as_bytes());
                    if let Err(e) = wr.write_all(&buf).await {
                        closed(&inc, format!("write failed: {e}"));
                        return;
                    }
                }
                Out::Close => {
                    let _ = wr.shutdown().await;
                    return;
                }
            }
        }
    });
    let reader = tokio::spawn(async move {
        let reason = loop {
            let mut len = [0u8; 4];
            if let Err(e) = rd.read_exact(&mut len).await {
                break format!("connection closed: {e}");
            }
            let len = u32::from_be_bytes(len) as usize;
            if len > MAX_TCP_FRAME {
                break format!("server frame of {len} bytes is too large");
            }
            let mut frame = vec![0u8; len];
            if let Err(e) = rd.read_exact(&mut frame).await {
                break format!("connection closed: {e}");
            }
            forward(&inc_tx, &frame).await;
        };
        let _ = inc_tx.send(Incoming::Closed(reason)).await;
    });
    Ok(Link {
        transport: Transport::Tcp,
        out: out_tx,
        inc: inc_rx,
        writer: Some(writer),
        tasks: vec![reader],
    })
}

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
