//! `idle`: N authenticated connections that do nothing; the server's RSS growth per
//! connection (VmRSS read before the first and after the last connection, once settled).

use super::{
    Ctx, add_connected, basic_failures, check_bounds, connect_all, finish, merge_results,
    plain_conns,
};
use crate::cli::IdleArgs;
use crate::coord::Workers;
use crate::error::Result;
use serde_json::json;
use std::time::Duration;

/// Runs the scenario; true when it passed.
pub async fn run(a: IdleArgs) -> Result<bool> {
    check_bounds(a.connections, a.duration.max(0.001), 0.0, 0)?;
    check_bounds(0, a.settle.max(0.001), 0.0, 0)?;
    let ctx = Ctx::new(&a.common)?;
    let n = a.connections;
    eprintln!("idle: {n} tokens");
    let tokens = ctx.tokens(ctx.addr, 0, n as u64).await?;
    let conns = plain_conns(&ctx, tokens);
    let mut w = Workers::spawn(ctx.plans(conns)).await?;
    // Let the set-up's allocations settle before the baseline.
    tokio::time::sleep(Duration::from_millis(1000)).await;
    let before = ctx.probe.sample();
    eprintln!("idle: connecting {n}");
    let connected = connect_all(&mut w, n).await?;
    tokio::time::sleep(Duration::from_secs_f64(a.settle)).await;
    let usage = ctx.probe.usage_since(&before);
    tokio::time::sleep(Duration::from_secs_f64(a.duration)).await;
    let results = w.stop().await?;
    let mut r = ctx.report(
        "idle",
        json!({"connections": n, "settle_s": a.settle, "hold_s": a.duration,
               "workers": a.common.workers, "source_ips": ctx.srcs.len()}),
    );
    add_connected(&mut r, &connected);
    r.elapsed_s = connected.iter().map(|c| c.2).fold(0.0, f64::max);
    merge_results(&mut r, &results);
    r.server = usage.map(|u| u.per_connection(r.connections));
    let hard = basic_failures(&r, false);
    finish(&a.common.output, r, hard)
}
