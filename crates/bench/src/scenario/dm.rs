//! `dm`: every user holds one connection and the connections send direct messages to random
//! users at a fixed total rate (`publish` frames on Switchboard, `dm` events on Socket.IO).
//! Deliveries are the recipients' copies; Switchboard also sends each sender a copy of its own
//! message on its personal stream (counted as `echoes`, not as deliveries, but its cost is in
//! the server's CPU).

use super::{
    Ctx, add_connected, basic_failures, check_bounds, connect_all, finish, merge_results,
    plain_conns, set_elapsed,
};
use crate::cli::DmArgs;
use crate::coord::{Workers, drain};
use crate::error::{BenchError, Result};
use crate::worker::{DmPlan, Event};
use serde_json::json;
use std::time::Duration;

/// Runs the scenario; true when it passed.
pub async fn run(a: DmArgs) -> Result<bool> {
    check_bounds(a.connections, a.duration, a.rate, a.payload)?;
    if a.connections < 2 || a.rate <= 0.0 {
        return Err(BenchError::Config(
            "dm needs at least 2 connections and a rate above 0".into(),
        ));
    }
    let ctx = Ctx::new(&a.common)?;
    let n = a.connections;
    eprintln!("dm: {n} tokens");
    let tokens = ctx.tokens(ctx.addr, 0, n as u64).await?;
    let conns = plain_conns(&ctx, tokens);
    let mut plans = ctx.plans(conns);
    let workers = plans.len() as f64;
    for p in &mut plans {
        p.dm = Some(DmPlan {
            rate: a.rate / workers,
            duration_s: a.duration,
            payload: a.payload,
            user_prefix: ctx.user_prefix(),
            users: n as u64,
        });
    }
    let mut w = Workers::spawn(plans).await?;
    eprintln!("dm: connecting {n}");
    let connected = connect_all(&mut w, n).await?;
    tokio::time::sleep(Duration::from_millis(500)).await;
    eprintln!("dm: sending {}/s for {} s", a.rate, a.duration);
    let before = ctx.probe.sample();
    let since = tokio::time::Instant::now();
    w.command("run").await?;
    let done = w
        .collect(
            "end of sending",
            Duration::from_secs_f64(a.duration + 60.0),
            |ev| match ev {
                Event::Done { sent, dropped, .. } => Some((sent, dropped)),
                _ => None,
            },
        )
        .await?;
    let sent: u64 = done.iter().map(|d| d.0).sum();
    let dropped: u64 = done.iter().map(|d| d.1).sum();
    let elapsed = drain(&w, sent, since).await;
    let usage = ctx.probe.usage_since(&before);
    let results = w.stop().await?;
    let mut r = ctx.report(
        "dm",
        json!({"connections": n, "rate": a.rate, "duration_s": a.duration, "payload": a.payload,
               "workers": a.common.workers, "source_ips": ctx.srcs.len()}),
    );
    add_connected(&mut r, &connected);
    merge_results(&mut r, &results);
    r.published = sent;
    r.publish_errors = dropped;
    r.expected_deliveries = sent;
    set_elapsed(&mut r, elapsed.as_secs_f64().max(a.duration));
    r.server = usage.map(|u| u.per_op(r.deliveries));
    let hard = basic_failures(&r, true);
    finish(&a.common.output, r, hard)
}
