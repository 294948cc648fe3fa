//! The `run` phase's own load: direct messages at a steady rate through the connections, or
//! closed-loop HTTP requests.

use super::{Event, Plan, Shared};
use crate::http::HttpConn;
use crate::latency;
use crate::proto;
use crate::rng::Rng;
use std::time::{Duration, Instant};
use tokio::sync::mpsc;

/// The `run` phase's own load: direct messages, or HTTP requests.
pub(super) async fn run_load(
    plan: &Plan,
    shared: &Shared,
    senders: &[(u64, mpsc::Sender<String>)],
) -> Event {
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
