//! Worker processes: the part of a scenario that holds client connections. The coordinator
//! re-executes this binary with the hidden `--worker` flag (one process per `--workers`, so
//! each stays below the per-process open-file limit), writes the worker's [`Plan`] as one JSON
//! line on its stdin, then steps it through phases with the commands `connect`, `run` and
//! `stop`, one per line. The worker answers with JSON [`Event`] lines on stdout.

use crate::error::{BenchError, Result};
use crate::http::HttpConn;
use crate::latency::{self, Encoded};
use crate::proto::{self, Incoming, Protocol};
use crate::rng::Rng;
use crate::ws::{self, Ws};
use futures_util::{SinkExt, StreamExt};
use hdrhistogram::Histogram;
use serde::{Deserialize, Serialize};
use std::collections::HashMap;
use std::net::{Ipv4Addr, SocketAddr};
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::io::AsyncBufReadExt;
use tokio::sync::{Semaphore, mpsc, oneshot, watch};
use tokio_tungstenite::tungstenite::Message;

/// Everything a worker needs, sent by the coordinator.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Plan {
    /// How to speak to the server.
    pub protocol: Protocol,
    /// This worker's index (for messages).
    pub worker: usize,
    /// Tokio worker threads (1 = a current-thread runtime).
    pub threads: usize,
    /// Connections opened at the same time.
    pub connect_concurrency: usize,
    /// The WebSocket connections to open.
    pub conns: Vec<ConnSpec>,
    /// Direct messages to send during `run`, if any.
    pub dm: Option<DmPlan>,
    /// An HTTP request loop to run during `run`, if any.
    pub http_load: Option<HttpLoadPlan>,
}

/// One client connection.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ConnSpec {
    /// Server address.
    pub addr: SocketAddr,
    /// Source address to bind.
    pub src: Option<Ipv4Addr>,
    /// The user's token.
    pub token: String,
    /// The user's index (user id = prefix + index); messages from it are its own echoes.
    pub user: u64,
    /// Conversations (rooms) to subscribe to after connecting.
    pub convs: Vec<String>,
}

/// Direct messages sent by this worker's connections to random users.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct DmPlan {
    /// Messages per second sent by this worker.
    pub rate: f64,
    /// Seconds of sending.
    pub duration_s: f64,
    /// Padding bytes in each body.
    pub payload: usize,
    /// User ids are this prefix followed by the index.
    pub user_prefix: String,
    /// Number of users in the whole run (recipients are drawn from all of them).
    pub users: u64,
}

/// Closed-loop HTTP requests (the dispatch scenario).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct HttpLoadPlan {
    /// Server address.
    pub addr: SocketAddr,
    /// Path to GET.
    pub path: String,
    /// Keep-alive connections, each with one request in flight.
    pub conns: usize,
    /// Seconds of load.
    pub duration_s: f64,
    /// Source addresses, used in turn.
    pub srcs: Vec<Ipv4Addr>,
}

/// A line a worker prints.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(tag = "event", rename_all = "snake_case")]
pub enum Event {
    /// The `connect` phase finished.
    Connected {
        /// Connections open and subscribed.
        ok: usize,
        /// Connections that failed.
        failed: usize,
        /// Seconds from the command to the last connection.
        elapsed_s: f64,
        /// The first failure, to show.
        first_error: Option<String>,
    },
    /// Deliveries so far (printed every 100 ms during `run`).
    Progress {
        /// Messages received from other senders.
        deliveries: u64,
    },
    /// The `run` phase's own load (direct messages, HTTP requests) is done.
    Done {
        /// Direct messages handed to connections.
        sent: u64,
        /// Direct messages not sent because the connection's queue was full or gone.
        dropped: u64,
        /// HTTP requests answered 2xx.
        requests: u64,
        /// HTTP requests failed.
        request_errors: u64,
        /// Seconds of load.
        elapsed_s: f64,
        /// The first request failure, to show.
        first_error: Option<String>,
    },
    /// Final figures, printed after `stop`.
    Result(Box<WorkerResult>),
}

/// A worker's final figures.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct WorkerResult {
    /// Messages received from someone else.
    pub deliveries: u64,
    /// Copies of a connection's own direct messages (Switchboard's sender copy).
    pub echoes: u64,
    /// Answers to publishes.
    pub acks: u64,
    /// Error frames received.
    pub error_frames: u64,
    /// Deliveries whose seq was not above the last one the connection got in that
    /// conversation (a duplicate or a reordering; Switchboard only, Socket.IO has no seq).
    #[serde(default)]
    pub out_of_order: u64,
    /// Sessions ended by the server before `stop`.
    pub closed: u64,
    /// The first error frame, to show.
    pub first_error_frame: Option<String>,
    /// The first server-ended session, to show.
    pub first_close: Option<String>,
    /// End-to-end latency of deliveries (µs).
    pub latency: Encoded,
    /// Connect + authenticate + subscribe time per connection (µs).
    pub connect_latency: Encoded,
    /// HTTP request latency (µs).
    pub request_latency: Encoded,
}

/// Counters shared by a worker's connection tasks.
struct Shared {
    protocol: Protocol,
    deliveries: AtomicU64,
    echoes: AtomicU64,
    acks: AtomicU64,
    error_frames: AtomicU64,
    out_of_order: AtomicU64,
    closed: AtomicU64,
    first_error_frame: Mutex<Option<String>>,
    first_close: Mutex<Option<String>>,
    latency: Mutex<Histogram<u64>>,
    connect_latency: Mutex<Histogram<u64>>,
    request_latency: Mutex<Histogram<u64>>,
}

fn emit(ev: &Event) {
    // One println! per event: lines never interleave.
    println!(
        "{}",
        serde_json::to_string(ev).expect("events always serialize")
    );
}

/// Entry point of a worker process: reads the plan from stdin and runs it.
pub fn main() -> std::process::ExitCode {
    let mut line = String::new();
    if std::io::stdin().read_line(&mut line).is_err() {
        eprintln!("worker: no plan on stdin");
        return std::process::ExitCode::from(2);
    }
    let plan: Plan = match serde_json::from_str(&line) {
        Ok(p) => p,
        Err(e) => {
            eprintln!("worker: bad plan: {e}");
            return std::process::ExitCode::from(2);
        }
    };
    let rt = if plan.threads <= 1 {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
    } else {
        tokio::runtime::Builder::new_multi_thread()
            .worker_threads(plan.threads)
            .enable_all()
            .build()
    };
    let rt = match rt {
        Ok(r) => r,
        Err(e) => {
            eprintln!("worker: runtime: {e}");
            return std::process::ExitCode::from(1);
        }
    };
    match rt.block_on(run(plan)) {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("worker: {e}");
            std::process::ExitCode::from(1)
        }
    }
}

async fn run(plan: Plan) -> Result<()> {
    let shared = Arc::new(Shared {
        protocol: plan.protocol,
        deliveries: AtomicU64::new(0),
        echoes: AtomicU64::new(0),
        acks: AtomicU64::new(0),
        error_frames: AtomicU64::new(0),
        out_of_order: AtomicU64::new(0),
        closed: AtomicU64::new(0),
        first_error_frame: Mutex::new(None),
        first_close: Mutex::new(None),
        latency: Mutex::new(latency::histogram()),
        connect_latency: Mutex::new(latency::histogram()),
        request_latency: Mutex::new(latency::histogram()),
    });
    let mut commands = tokio::io::BufReader::new(tokio::io::stdin()).lines();
    let (stop_tx, stop_rx) = watch::channel(false);
    let mut senders: Vec<(u64, mpsc::Sender<String>)> = Vec::new();
    let mut tasks = tokio::task::JoinSet::new();
    let mut progress: Option<tokio::task::JoinHandle<()>> = None;
    loop {
        let cmd = match commands.next_line().await {
            Ok(Some(c)) => c,
            // The coordinator went away: stop like on `stop`.
            Ok(None) | Err(_) => "stop".to_owned(),
        };
        match cmd.trim() {
            "connect" => {
                senders = connect_all(&plan, &shared, &stop_rx, &mut tasks).await;
            }
            "run" => {
                let s = shared.clone();
                progress.get_or_insert_with(|| {
                    tokio::spawn(async move {
                        let mut tick = tokio::time::interval(Duration::from_millis(100));
                        loop {
                            tick.tick().await;
                            emit(&Event::Progress {
                                deliveries: s.deliveries.load(Relaxed),
                            });
                        }
                    })
                });
                let (plan, shared, senders) = (plan.clone(), shared.clone(), senders.clone());
                tokio::spawn(async move {
                    let done = run_load(&plan, &shared, &senders).await;
                    emit(&done);
                });
            }
            "stop" => {
                let _ = stop_tx.send(true);
                drop(senders);
                // Give the connections a moment to close cleanly; then go.
                let _ = tokio::time::timeout(Duration::from_secs(5), async {
                    while tasks.join_next().await.is_some() {}
                })
                .await;
                if let Some(p) = progress.take() {
                    p.abort();
                }
                let enc = |h: &Mutex<Histogram<u64>>| latency::encode(&h.lock().expect("lock"));
                let result = WorkerResult {
                    deliveries: shared.deliveries.load(Relaxed),
                    echoes: shared.echoes.load(Relaxed),
                    acks: shared.acks.load(Relaxed),
                    error_frames: shared.error_frames.load(Relaxed),
                    out_of_order: shared.out_of_order.load(Relaxed),
                    closed: shared.closed.load(Relaxed),
                    first_error_frame: shared.first_error_frame.lock().expect("lock").clone(),
                    first_close: shared.first_close.lock().expect("lock").clone(),
                    latency: enc(&shared.latency),
                    connect_latency: enc(&shared.connect_latency),
                    request_latency: enc(&shared.request_latency),
                };
                emit(&Event::Result(Box::new(result)));
                return Ok(());
            }
            "" => {}
            other => {
                return Err(BenchError::Run(format!("unknown command {other:?}")));
            }
        }
    }
}

/// Opens every connection of the plan (`connect_concurrency` at a time), then reports.
async fn connect_all(
    plan: &Plan,
    shared: &Arc<Shared>,
    stop: &watch::Receiver<bool>,
    tasks: &mut tokio::task::JoinSet<()>,
) -> Vec<(u64, mpsc::Sender<String>)> {
    let start = Instant::now();
    let sem = Arc::new(Semaphore::new(plan.connect_concurrency.max(1)));
    let mut pending = Vec::with_capacity(plan.conns.len());
    for spec in plan.conns.iter().cloned() {
        let (ready_tx, ready_rx) = oneshot::channel();
        let (out_tx, out_rx) = mpsc::channel::<String>(64);
        let (sem, shared, stop) = (sem.clone(), shared.clone(), stop.clone());
        let user = spec.user;
        tasks.spawn(connection(spec, shared, sem, ready_tx, out_rx, stop));
        pending.push((user, out_tx, ready_rx));
    }
    let (mut ok, mut failed, mut first_error) = (0, 0, None);
    let mut senders = Vec::with_capacity(pending.len());
    for (user, tx, rx) in pending {
        match rx.await {
            Ok(Ok(())) => {
                ok += 1;
                senders.push((user, tx));
            }
            Ok(Err(e)) => {
                failed += 1;
                first_error.get_or_insert(e);
            }
            Err(_) => {
                failed += 1;
                first_error.get_or_insert_with(|| "connection task ended".to_owned());
            }
        }
    }
    emit(&Event::Connected {
        ok,
        failed,
        elapsed_s: start.elapsed().as_secs_f64(),
        first_error,
    });
    senders
}

/// One client connection: connect, authenticate, subscribe, then read until told to stop.
async fn connection(
    spec: ConnSpec,
    shared: Arc<Shared>,
    sem: Arc<Semaphore>,
    ready: oneshot::Sender<std::result::Result<(), String>>,
    mut out: mpsc::Receiver<String>,
    mut stop: watch::Receiver<bool>,
) {
    let proto = shared.protocol;
    let opened = {
        let _permit = sem.acquire().await;
        let t0 = Instant::now();
        let r = async {
            let mut ws = ws::connect(spec.addr, spec.src, &proto.ws_path(&spec.token)).await?;
            proto.handshake(&mut ws, &spec.token).await?;
            for (i, conv) in spec.convs.iter().enumerate() {
                proto.subscribe(&mut ws, conv, i as u64 + 1).await?;
            }
            Ok::<Ws, BenchError>(ws)
        }
        .await;
        if r.is_ok() {
            latency::record(
                &mut shared.connect_latency.lock().expect("lock"),
                t0.elapsed().as_micros() as u64,
            );
        }
        r
    };
    let mut ws = match opened {
        Ok(ws) => {
            let _ = ready.send(Ok(()));
            ws
        }
        Err(e) => {
            let _ = ready.send(Err(e.to_string()));
            return;
        }
    };
    let mut out_open = true;
    // The last seq this connection got per conversation.
    let mut heads: HashMap<String, u64> = HashMap::new();
    loop {
        tokio::select! {
            _ = stop.changed() => {
                let _ = tokio::time::timeout(Duration::from_secs(2), ws.close(None)).await;
                return;
            }
            msg = ws.next() => match msg {
                Some(Ok(Message::Text(t))) => {
                    if !handle(&shared, &mut ws, spec.user, &mut heads, t.as_str()).await {
                        return;
                    }
                }
                Some(Ok(Message::Binary(b))) => {
                    let t = String::from_utf8_lossy(&b).into_owned();
                    if !handle(&shared, &mut ws, spec.user, &mut heads, &t).await {
                        return;
                    }
                }
                Some(Ok(Message::Close(c))) => {
                    note_close(&shared, format!("close frame {c:?}"));
                    // Wait for `stop`, so the count of live connections stays honest.
                    let _ = stop.changed().await;
                    return;
                }
                Some(Ok(_)) => {}
                Some(Err(e)) => {
                    note_close(&shared, format!("read error: {e}"));
                    let _ = stop.changed().await;
                    return;
                }
                None => {
                    note_close(&shared, "connection ended".into());
                    let _ = stop.changed().await;
                    return;
                }
            },
            frame = out.recv(), if out_open => match frame {
                Some(f) => {
                    if ws.send(Message::text(f)).await.is_err() {
                        note_close(&shared, "write failed".into());
                        let _ = stop.changed().await;
                        return;
                    }
                }
                None => out_open = false,
            },
        }
    }
}

fn note_close(shared: &Shared, why: String) {
    shared.closed.fetch_add(1, Relaxed);
    shared.first_close.lock().expect("lock").get_or_insert(why);
}

/// Handles one frame; false when the connection should end.
async fn handle(
    shared: &Shared,
    ws: &mut Ws,
    me: u64,
    heads: &mut HashMap<String, u64>,
    text: &str,
) -> bool {
    match shared.protocol.classify(text) {
        Incoming::Delivery { ts_us, src } => {
            if let Some((conv, seq)) = proto::conv_seq(text) {
                let in_order = match heads.get_mut(conv) {
                    Some(last) => std::mem::replace(last, seq) < seq,
                    None => {
                        heads.insert(conv.to_owned(), seq);
                        true
                    }
                };
                if !in_order {
                    shared.out_of_order.fetch_add(1, Relaxed);
                }
            }
            if src == Some(me) {
                shared.echoes.fetch_add(1, Relaxed);
            } else {
                let lat = latency::now_us().saturating_sub(ts_us);
                shared.deliveries.fetch_add(1, Relaxed);
                latency::record(&mut shared.latency.lock().expect("lock"), lat);
            }
        }
        Incoming::Ping => {
            if ws.send(Message::text("3")).await.is_err() {
                note_close(shared, "write failed".into());
                return false;
            }
        }
        Incoming::Ack => {
            shared.acks.fetch_add(1, Relaxed);
        }
        Incoming::Error(t) => {
            shared.error_frames.fetch_add(1, Relaxed);
            shared
                .first_error_frame
                .lock()
                .expect("lock")
                .get_or_insert(t);
        }
        Incoming::Closed(t) => note_close(shared, t),
        Incoming::Other => {}
    }
    true
}

/// The `run` phase's own load: direct messages, or HTTP requests.
async fn run_load(plan: &Plan, shared: &Shared, senders: &[(u64, mpsc::Sender<String>)]) -> Event {
    let start = Instant::now();
    let (mut sent, mut dropped) = (0u64, 0u64);
    if let Some(dm) = &plan.dm
        && !senders.is_empty()
        && dm.rate > 0.0
        && dm.users > 1
    {
        let pad = "x".repeat(dm.payload);
        let mut rng = Rng::seeded(plan.worker as u64 + 1);
        let end = start + Duration::from_secs_f64(dm.duration_s);
        let mut k: u64 = 0;
        loop {
            let now = Instant::now();
            if now >= end {
                break;
            }
            let mut due = start + Duration::from_secs_f64(k as f64 / dm.rate);
            while due <= now {
                let (me, tx) = &senders[rng.below(senders.len() as u64) as usize];
                let mut to = rng.below(dm.users);
                if to == *me {
                    to = (to + 1) % dm.users;
                }
                let to = format!("{}{to}", dm.user_prefix);
                let body = proto::body(latency::now_us(), *me as i64, &pad);
                let frame = plan.protocol.dm_frame(&to, &body, k + 1);
                match tx.try_send(frame) {
                    Ok(()) => sent += 1,
                    Err(_) => dropped += 1,
                }
                k += 1;
                due = start + Duration::from_secs_f64(k as f64 / dm.rate);
            }
            tokio::time::sleep_until(due.into()).await;
        }
    }
    let (mut requests, mut request_errors, mut first_error) = (0u64, 0u64, None);
    if let Some(load) = &plan.http_load {
        let end = start + Duration::from_secs_f64(load.duration_s);
        let mut set = tokio::task::JoinSet::new();
        for i in 0..load.conns.max(1) {
            let src = (!load.srcs.is_empty()).then(|| load.srcs[i % load.srcs.len()]);
            let (addr, path) = (load.addr, load.path.clone());
            set.spawn(async move {
                let mut conn = HttpConn::new(addr, src);
                let mut h = latency::histogram();
                let (mut ok, mut err, mut first) = (0u64, 0u64, None::<String>);
                while Instant::now() < end {
                    let t0 = Instant::now();
                    match conn.request("GET", &path, &[], b"").await {
                        Ok(r) if (200..300).contains(&r.status) => {
                            ok += 1;
                            latency::record(&mut h, t0.elapsed().as_micros() as u64);
                        }
                        Ok(r) => {
                            err += 1;
                            first.get_or_insert_with(|| {
                                format!("status {}: {}", r.status, String::from_utf8_lossy(&r.body))
                            });
                        }
                        Err(e) => {
                            err += 1;
                            first.get_or_insert_with(|| e.to_string());
                            tokio::time::sleep(Duration::from_millis(10)).await;
                        }
                    }
                }
                (ok, err, first, latency::encode(&h))
            });
        }
        while let Some(r) = set.join_next().await {
            if let Ok((ok, err, first, h)) = r {
                requests += ok;
                request_errors += err;
                if first_error.is_none() {
                    first_error = first;
                }
                latency::merge(&mut shared.request_latency.lock().expect("lock"), &h);
            }
        }
    }
    Event::Done {
        sent,
        dropped,
        requests,
        request_errors,
        elapsed_s: start.elapsed().as_secs_f64(),
        first_error,
    }
}
