//! `dm`: every user holds one connection and the connections send direct messages to random
//! users at a fixed total rate (`publish` frames on Switchboard, `dm` events on Socket.IO).
//! Deliveries are the recipients' copies; Switchboard also sends each sender a copy of its own
//! message on its personal stream (counted as `echoes`, not as deliveries, but its cost is in
//! the server's CPU).
//!
//! With `--other-target` it runs on two nodes of one cluster (`dm_cluster`): the first half of
//! the users on `--target`, the rest on the other node, DMs to random users on either, and the
//! report counts both nodes' CPU and Redis's per delivered DM.

use super::{
    Ctx, add_connected, basic_failures, check_bounds, connect_all, conns_at, finish, merge_results,
    plain_conns, set_elapsed,
};
use crate::cli::DmArgs;
use crate::coord::{Workers, drain};
use crate::error::{BenchError, Result};
use crate::procfs::{Group, Probe};
use crate::worker::{ConnSpec, DmPlan, Event};
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
    let other = a
        .other_target
        .as_deref()
        .map(crate::target::parse_target)
        .transpose()?;
    let conns = match other {
        None => plain_conns(&ctx, ctx.tokens(ctx.addr, 0, n as u64).await?),
        Some(other) => split_conns(&ctx, other, n).await?,
    };
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
    let other_probe = Probe { pid: a.other_pid };
    let redis_probe = Group {
        pids: a.redis_pid.clone(),
    };
    let before = ctx.probe.sample();
    let (other_before, redis_before) = (other_probe.sample(), redis_probe.sample());
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
    let (other_usage, redis_usage) = (
        other_probe.usage_since(&other_before),
        redis_probe.usage_since(&redis_before),
    );
    let results = w.stop().await?;
    let mut r = ctx.report(
        if other.is_some() { "dm_cluster" } else { "dm" },
        json!({"connections": n, "rate": a.rate, "duration_s": a.duration, "payload": a.payload,
               "workers": a.common.workers, "source_ips": ctx.srcs.len(),
               "other_target": a.other_target, "redis_processes": a.redis_pid.len()}),
    );
    add_connected(&mut r, &connected);
    merge_results(&mut r, &results);
    r.published = sent;
    r.publish_errors = dropped;
    r.expected_deliveries = sent;
    set_elapsed(&mut r, elapsed.as_secs_f64().max(a.duration));
    r.server = usage.map(|u| u.per_op(r.deliveries));
    if other.is_some() {
        r.other_server = other_usage.map(|u| u.per_op(r.deliveries));
        r.redis = redis_usage.map(|u| u.per_op(r.deliveries));
    }
    let hard = basic_failures(&r, true);
    finish(&a.common.output, r, hard)
}

/// The users split over two nodes: the first half on the target, the rest on `other`, each
/// with a token its own node issued (user numbers run on across both halves).
async fn split_conns(ctx: &Ctx, other: std::net::SocketAddr, n: usize) -> Result<Vec<ConnSpec>> {
    let half = n / 2;
    let mut conns = plain_conns(ctx, ctx.tokens(ctx.addr, 0, half as u64).await?);
    let rest = ctx.tokens(other, half as u64, (n - half) as u64).await?;
    conns.extend(conns_at(ctx, other, rest, half));
    Ok(conns)
}
