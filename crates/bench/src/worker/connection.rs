//! A worker's client connections: opened `connect_concurrency` at a time, each then reading
//! frames (counting deliveries, latency, order and errors) and writing what the load hands it.

use super::{ConnSpec, Event, Plan, Shared, emit};
use crate::error::BenchError;
use crate::latency;
use crate::proto::{self, Incoming};
use crate::ws::{self, Ws};
use futures_util::{SinkExt, StreamExt};
use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::Ordering::Relaxed;
use std::time::{Duration, Instant};
use tokio::sync::{Semaphore, mpsc, oneshot, watch};
use tokio_tungstenite::tungstenite::Message;

/// Opens every connection of the plan (`connect_concurrency` at a time), then reports.
pub(super) async fn connect_all(
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
