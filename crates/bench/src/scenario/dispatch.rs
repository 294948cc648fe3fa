//! `dispatch`: closed-loop `GET /v1/dispatch` from keep-alive connections; requests per second
//! and server CPU per request. Switchboard only: the Socket.IO peer has no dispatcher.

use super::{Ctx, check_bounds, finish, merge_results};
use crate::cli::DispatchArgs;
use crate::coord::Workers;
use crate::error::{BenchError, Result};
use crate::proto::Protocol;
use crate::worker::{Event, HttpLoadPlan};
use serde_json::json;
use std::time::Duration;

/// Runs the scenario; true when it passed.
pub async fn run(a: DispatchArgs) -> Result<bool> {
    check_bounds(a.connections, a.duration, 0.0, 0)?;
    if a.common.protocol != Protocol::Switchboard {
        return Err(BenchError::Config(
            "dispatch: the Socket.IO peer has no dispatcher (Switchboard only)".into(),
        ));
    }
    let ctx = Ctx::new(&a.common)?;
    let mut plans = ctx.plans(Vec::new());
    let w_count = plans.len();
    for (i, p) in plans.iter_mut().enumerate() {
        let conns = a.connections / w_count + usize::from(i < a.connections % w_count);
        p.http_load = Some(HttpLoadPlan {
            addr: ctx.addr,
            path: "/v1/dispatch".into(),
            conns,
            duration_s: a.duration,
            srcs: ctx.srcs.clone(),
        });
    }
    let mut w = Workers::spawn(plans).await?;
    w.command("connect").await?;
    w.collect("ready", Duration::from_secs(30), |ev| match ev {
        Event::Connected { .. } => Some(()),
        _ => None,
    })
    .await?;
    eprintln!(
        "dispatch: {} connections for {} s",
        a.connections, a.duration
    );
    let before = ctx.probe.sample();
    w.command("run").await?;
    let done = w
        .collect(
            "end of requests",
            Duration::from_secs_f64(a.duration + 60.0),
            |ev| match ev {
                Event::Done {
                    requests,
                    request_errors,
                    elapsed_s,
                    first_error,
                    ..
                } => Some((requests, request_errors, elapsed_s, first_error)),
                _ => None,
            },
        )
        .await?;
    let usage = ctx.probe.usage_since(&before);
    let results = w.stop().await?;
    let mut r = ctx.report(
        "dispatch",
        json!({"connections": a.connections, "duration_s": a.duration,
               "workers": a.common.workers}),
    );
    r.connections = a.connections as u64;
    merge_results(&mut r, &results);
    let requests: u64 = done.iter().map(|d| d.0).sum();
    let errors: u64 = done.iter().map(|d| d.1).sum();
    r.elapsed_s = done.iter().map(|d| d.2).fold(0.0, f64::max);
    r.requests = Some(requests);
    // The latency of interest here is the request time.
    r.latency_us = r.request_latency_us.clone();
    if r.elapsed_s > 0.0 {
        r.requests_per_s = Some(requests as f64 / r.elapsed_s);
    }
    r.publish_errors = errors;
    for d in &done {
        if let Some(e) = &d.3 {
            r.errors.push(format!("request: {e}"));
        }
    }
    r.server = usage.map(|u| u.per_op(requests));
    let mut hard = Vec::new();
    if requests == 0 {
        hard.push("no request answered".into());
    }
    finish(&a.common.output, r, hard)
}
