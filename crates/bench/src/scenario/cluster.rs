//! `cluster`: routing cost in a cluster. Subscribers of one busy room sit on node A
//! (`--target`), which receives the publishes; node B (`--other-target`) holds connections none
//! of which is in that room. The figure of interest is B's CPU over the window: with targeted
//! routing it should not see the traffic at all; with a broadcast adapter it decodes every
//! message.

use super::{
    Ctx, add_connected, add_published, check_bounds, connect_all, conns_at, finish, merge_results,
    publish, set_elapsed,
};
use crate::cli::ClusterArgs;
use crate::coord::{Workers, drain};
use crate::error::{BenchError, Result};
use crate::http::HttpConn;
use crate::procfs::{Group, Probe};
use crate::proto::Protocol;
use crate::worker::ConnSpec;
use serde_json::json;
use std::sync::Arc;
use std::time::Duration;

/// Runs the scenario; true when it passed.
pub async fn run(a: ClusterArgs) -> Result<bool> {
    let p = &a.publish;
    let rate = p.rate.unwrap_or(1000.0);
    check_bounds(
        a.connections + a.idle_connections,
        p.duration,
        rate,
        p.payload,
    )?;
    if rate <= 0.0 || a.connections == 0 {
        return Err(BenchError::Config(
            "cluster needs subscribers and a rate above 0".into(),
        ));
    }
    let ctx = Ctx::new(&a.common)?;
    let other = crate::target::parse_target(&a.other_target)?;
    let (n, m) = (a.connections, a.idle_connections);
    eprintln!(
        "cluster: {n} subscribers on {}, {m} idle connections on {other}",
        ctx.addr
    );
    // Each node issues its own users' tokens, so the peer needs no shared token store.
    let sub_tokens = ctx.tokens(ctx.addr, 0, n as u64).await?;
    let idle_tokens = ctx.tokens(other, n as u64, m as u64).await?;
    let convs = Arc::new(ctx.rooms(ctx.addr, 1).await?);
    let mut conns: Vec<ConnSpec> = Vec::with_capacity(n + m);
    for (i, token) in sub_tokens.into_iter().enumerate() {
        conns.push(ConnSpec {
            addr: ctx.addr,
            src: ctx.src(i),
            token,
            user: i as u64,
            convs: vec![convs[0].clone()],
        });
    }
    conns.extend(conns_at(&ctx, other, idle_tokens, n));
    let mut w = Workers::spawn(ctx.plans(conns)).await?;
    let connected = connect_all(&mut w, n + m).await?;
    // Let connection-time work (registrations, presence) finish before measuring.
    tokio::time::sleep(Duration::from_secs(1)).await;
    let other_probe = Probe { pid: a.other_pid };
    let redis_probe = Group {
        pids: a.redis_pid.clone(),
    };
    let baseline_s = a.baseline_s.unwrap_or(p.duration);
    if !(0.0..=crate::cli::MAX_DURATION_S).contains(&baseline_s) {
        return Err(BenchError::Config("--baseline-s out of range".into()));
    }
    let mut baseline = None;
    if baseline_s > 0.0 {
        eprintln!("cluster: {baseline_s} s without traffic");
        let b = other_probe.sample();
        tokio::time::sleep(Duration::from_secs_f64(baseline_s)).await;
        baseline = other_probe.usage_since(&b);
    }
    eprintln!("cluster: publishing {rate}/s for {} s", p.duration);
    let (b_a, b_b, b_r) = (
        ctx.probe.sample(),
        other_probe.sample(),
        redis_probe.sample(),
    );
    let bus_before = bus_received(ctx.proto(), other).await;
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
    let expected = published.ok * n as u64;
    let elapsed = drain(&w, expected, since).await;
    let (u_a, u_b, u_r) = (
        ctx.probe.usage_since(&b_a),
        other_probe.usage_since(&b_b),
        redis_probe.usage_since(&b_r),
    );
    let bus_after = bus_received(ctx.proto(), other).await;
    let results = w.stop().await?;
    let mut r = ctx.report(
        "cluster",
        json!({"subscribers": n, "idle_connections": m, "rate": rate, "duration_s": p.duration,
               "payload": p.payload, "publishers": p.publishers, "other_target": a.other_target,
               "baseline_s": baseline_s, "redis_processes": a.redis_pid.len(),
               "workers": a.common.workers, "source_ips": ctx.srcs.len()}),
    );
    add_connected(&mut r, &connected);
    merge_results(&mut r, &results);
    add_published(&mut r, &published);
    r.expected_deliveries = expected;
    set_elapsed(&mut r, elapsed.as_secs_f64().max(published.elapsed_s));
    r.server = u_a.map(|u| u.per_op(r.deliveries));
    // The idle node's cost per message published in the cluster.
    r.other_server = u_b.map(|u| u.per_op(r.published));
    r.redis = u_r.map(|u| u.per_op(r.published));
    r.other_server_baseline = baseline;
    if let (Some(b), Some(a)) = (bus_before, bus_after) {
        let n = a.saturating_sub(b);
        r.other_bus_messages = Some(n);
        if n > 0 {
            r.failures.push(format!(
                "the node with no interested connection took {n} messages from the bus"
            ));
        }
    }
    let mut hard = Vec::new();
    if r.deliveries == 0 {
        hard.push("nothing was delivered".into());
    }
    finish(&a.common.output, r, hard)
}

/// Switchboard only: the node's `switchboard_bus_messages_received_total` (messages it took from
/// Redis), read from `/metrics`.
async fn bus_received(proto: Protocol, addr: std::net::SocketAddr) -> Option<u64> {
    if proto != Protocol::Switchboard {
        return None;
    }
    let mut http = HttpConn::new(addr, None);
    let resp = http
        .request("GET", "/metrics", &[], b"")
        .await
        .ok()?
        .ok()
        .ok()?;
    let text = String::from_utf8_lossy(&resp.body);
    text.lines().find_map(|l| {
        l.strip_prefix("switchboard_bus_messages_received_total ")
            .and_then(|v| v.trim().parse::<f64>().ok())
            .map(|v| v as u64)
    })
}
