//! `storm`: N authenticated connections opened as fast as the server takes them (tokens are
//! made beforehand and not timed); new connections per second, server CPU per connection.

use super::{
    Ctx, add_connected, basic_failures, check_bounds, connect_all, finish, merge_results,
    plain_conns,
};
use crate::cli::StormArgs;
use crate::coord::Workers;
use crate::error::Result;
use serde_json::json;
use std::time::Duration;

/// Runs the scenario; true when it passed.
pub async fn run(a: StormArgs) -> Result<bool> {
    check_bounds(a.connections, 1.0, 0.0, 0)?;
    let ctx = Ctx::new(&a.common)?;
    let n = a.connections;
    eprintln!("storm: {n} tokens");
    let tokens = ctx.tokens(ctx.addr, 0, n as u64).await?;
    let conns = plain_conns(&ctx, tokens);
    let mut w = Workers::spawn(ctx.plans(conns)).await?;
    tokio::time::sleep(Duration::from_millis(500)).await;
    let before = ctx.probe.sample();
    eprintln!("storm: connecting {n}");
    let connected = connect_all(&mut w, n).await?;
    let usage = ctx.probe.usage_since(&before);
    tokio::time::sleep(Duration::from_millis(500)).await;
    let results = w.stop().await?;
    let mut r = ctx.report(
        "storm",
        json!({"connections": n, "connect_concurrency_per_worker": a.common.connect_concurrency,
               "workers": a.common.workers, "source_ips": ctx.srcs.len()}),
    );
    add_connected(&mut r, &connected);
    // Workers start together; the storm lasts until the slowest is done.
    r.elapsed_s = connected.iter().map(|c| c.2).fold(0.0, f64::max);
    if r.elapsed_s > 0.0 {
        r.connects_per_s = Some(r.connections as f64 / r.elapsed_s);
    }
    merge_results(&mut r, &results);
    // The latency of interest here is the connect time (TCP + WebSocket + authentication).
    r.latency_us = r.connect_latency_us.clone();
    r.server = usage.map(|u| u.per_connection(r.connections));
    let hard = basic_failures(&r, false);
    finish(&a.common.output, r, hard)
}
