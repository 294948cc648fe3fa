//! `fanout` (one room with N subscribers) and `rooms` (N connections in rooms of a few): a
//! publisher posts to the server's HTTP publish endpoint at a fixed rate; subscribers count
//! deliveries and the publish-to-delivery latency; the server's CPU over the window gives the
//! CPU time per delivery.

use super::{
    Ctx, add_connected, add_published, basic_failures, check_bounds, connect_all, finish,
    merge_results, publish, set_elapsed,
};
use crate::cli::{FanoutArgs, PublishOpts, RoomsArgs};
use crate::coord::{Workers, drain};
use crate::error::{BenchError, Result};
use crate::worker::ConnSpec;
use serde_json::json;
use std::sync::Arc;
use std::time::Duration;

/// Runs `fanout`; true when it passed.
pub async fn fanout(a: FanoutArgs) -> Result<bool> {
    let n = a.connections;
    run(&a.common, "fanout", n, n.max(1), &a.publish, 10.0).await
}

/// Runs `rooms`; true when it passed.
pub async fn rooms(a: RoomsArgs) -> Result<bool> {
    if a.room_size == 0 {
        return Err(BenchError::Config("--room-size must be at least 1".into()));
    }
    run(
        &a.common,
        "rooms",
        a.connections,
        a.room_size,
        &a.publish,
        1000.0,
    )
    .await
}

async fn run(
    common: &crate::cli::Common,
    scenario: &str,
    n: usize,
    room_size: usize,
    p: &PublishOpts,
    default_rate: f64,
) -> Result<bool> {
    let rate = p.rate.unwrap_or(default_rate);
    check_bounds(n, p.duration, rate, p.payload)?;
    if rate <= 0.0 {
        return Err(BenchError::Config("--rate must be above 0".into()));
    }
    let ctx = Ctx::new(common)?;
    let room_count = n.div_ceil(room_size).max(1);
    eprintln!("{scenario}: {n} tokens, {room_count} rooms");
    let tokens = ctx.tokens(ctx.addr, 0, n as u64).await?;
    let convs = Arc::new(ctx.rooms(ctx.addr, room_count).await?);
    let mut members = vec![0u64; room_count];
    let conns = tokens
        .into_iter()
        .enumerate()
        .map(|(i, token)| {
            members[i / room_size] += 1;
            ConnSpec {
                addr: ctx.addr,
                src: ctx.src(i),
                token,
                user: i as u64,
                convs: vec![convs[i / room_size].clone()],
            }
        })
        .collect();
    let mut w = Workers::spawn(ctx.plans(conns)).await?;
    eprintln!("{scenario}: connecting {n}");
    let connected = connect_all(&mut w, n).await?;
    tokio::time::sleep(Duration::from_millis(500)).await;
    eprintln!("{scenario}: publishing {rate}/s for {} s", p.duration);
    let before = ctx.probe.sample();
    let since = tokio::time::Instant::now();
    w.command("run").await?;
    let published = publish(
        &ctx,
        ctx.addr,
        convs.clone(),
        rate,
        p.duration,
        p.payload,
        p.publishers,
    )
    .await;
    let expected: u64 = published
        .per_conv
        .iter()
        .zip(&members)
        .map(|(p, m)| p * m)
        .sum();
    let elapsed = drain(&w, expected, since).await;
    let usage = ctx.probe.usage_since(&before);
    let results = w.stop().await?;
    let mut r = ctx.report(
        scenario,
        json!({"connections": n, "rooms": room_count, "room_size": room_size, "rate": rate,
               "duration_s": p.duration, "payload": p.payload, "publishers": p.publishers,
               "workers": common.workers, "source_ips": ctx.srcs.len()}),
    );
    add_connected(&mut r, &connected);
    merge_results(&mut r, &results);
    add_published(&mut r, &published);
    r.expected_deliveries = expected;
    set_elapsed(&mut r, elapsed.as_secs_f64().max(published.elapsed_s));
    r.server = usage.map(|u| u.per_op(r.deliveries));
    let hard = basic_failures(&r, true);
    finish(&common.output, r, hard)
}
