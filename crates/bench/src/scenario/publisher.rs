//! The HTTP publisher the scenarios share: messages at a fixed rate through the server's
//! publish endpoint (open loop), and what it did, for the report.

use super::Ctx;
use crate::http::HttpConn;
use crate::latency::{self, Encoded};
use crate::proto;
use crate::report::Report;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// What the publisher did.
#[derive(Default)]
pub struct Published {
    /// Publishes answered 2xx.
    pub ok: u64,
    /// Publishes that failed.
    pub errors: u64,
    /// Successful publishes per conversation (same order as the list given).
    pub per_conv: Vec<u64>,
    /// HTTP publish latency, µs.
    pub latency: Encoded,
    /// The first failure.
    pub first_error: Option<String>,
    /// Seconds from the first to the last publish.
    pub elapsed_s: f64,
}

/// Publishes `rate` messages per second for `duration_s` seconds through the server's HTTP
/// publish endpoint, spread over `convs` in turn, from `publishers` keep-alive connections.
/// Each message is due at a fixed time (open loop); a late one is sent as soon as its
/// connection is free. The body's `bench_ts` is the moment it is sent.
pub async fn publish(
    ctx: &Ctx,
    addr: SocketAddr,
    convs: Arc<Vec<String>>,
    rate: f64,
    duration_s: f64,
    payload: usize,
    publishers: usize,
) -> Published {
    let total = (rate * duration_s).round() as u64;
    let k = (publishers.max(1) as u64).min(total.max(1));
    let start = tokio::time::Instant::now();
    let pad = Arc::new("x".repeat(payload));
    let mut set = tokio::task::JoinSet::new();
    for t in 0..k {
        let (convs, pad, proto, key) = (
            convs.clone(),
            pad.clone(),
            ctx.proto(),
            ctx.common.api_key.clone(),
        );
        let src = ctx.src(t as usize);
        set.spawn(async move {
            let mut http = HttpConn::new(addr, src);
            let mut h = latency::histogram();
            let mut per_conv = vec![0u64; convs.len()];
            let (mut ok, mut err, mut first) = (0u64, 0u64, None::<String>);
            let mut i = t;
            while i < total {
                tokio::time::sleep_until(start + Duration::from_secs_f64(i as f64 / rate)).await;
                let c = (i % convs.len() as u64) as usize;
                let body = proto::body(latency::now_us(), -1, &pad);
                let t0 = Instant::now();
                match proto.publish_http(&mut http, &key, &convs[c], &body).await {
                    Ok(()) => {
                        ok += 1;
                        per_conv[c] += 1;
                        latency::record(&mut h, t0.elapsed().as_micros() as u64);
                    }
                    Err(e) => {
                        err += 1;
                        first.get_or_insert_with(|| e.to_string());
                    }
                }
                i += k;
            }
            (ok, err, per_conv, latency::encode(&h), first)
        });
    }
    let mut out = Published {
        per_conv: vec![0; convs.len()],
        ..Default::default()
    };
    let mut h = latency::histogram();
    while let Some(r) = set.join_next().await {
        if let Ok((ok, err, per_conv, lat, first)) = r {
            out.ok += ok;
            out.errors += err;
            for (a, b) in out.per_conv.iter_mut().zip(per_conv) {
                *a += b;
            }
            latency::merge(&mut h, &lat);
            if out.first_error.is_none() {
                out.first_error = first;
            }
        }
    }
    out.latency = latency::encode(&h);
    out.elapsed_s = start.elapsed().as_secs_f64();
    out
}

/// Records the publisher's counts, first error and latency in `r`.
pub fn add_published(r: &mut Report, p: &Published) {
    r.published = p.ok;
    r.publish_errors = p.errors;
    if let Some(e) = &p.first_error {
        r.errors.push(format!("publish: {e}"));
    }
    let mut h = latency::histogram();
    latency::merge(&mut h, &p.latency);
    r.publish_latency_us = latency::percentiles(&h);
}
