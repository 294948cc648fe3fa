//! Worker processes: the part of a scenario that holds client connections. The coordinator
//! re-executes this binary with the hidden `--worker` flag (one process per `--workers`, so
//! each stays below the per-process open-file limit), writes the worker's [`Plan`] as one JSON
//! line on its stdin, then steps it through phases with the commands `connect`, `run` and
//! `stop`, one per line. The worker answers with JSON [`Event`] lines on stdout.
//!
//! This file holds the process's entry point and its command loop; [`connection`] holds the
//! client connections, [`load`] the `run` phase's own load.

mod connection;
mod event;
mod load;
mod plan;

pub use event::{Event, WorkerResult};
pub use plan::{ConnSpec, DmPlan, HttpLoadPlan, Plan};

use crate::error::{BenchError, Result};
use crate::latency;
use crate::proto::Protocol;
use connection::connect_all;
use event::emit;
use hdrhistogram::Histogram;
use load::run_load;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::io::AsyncBufReadExt;
use tokio::sync::{mpsc, watch};

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
