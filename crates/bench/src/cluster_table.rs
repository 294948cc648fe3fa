//! The cluster runs' CPU per published message, split into the node that holds the
//! subscribers, the node that holds none, and Redis (every `redis-server` of a Redis Cluster
//! summed): one row per run, so Switchboard on one Redis, Switchboard on a Redis Cluster (with and
//! without `WAIT`) and Socket.IO with either redis adapter read side by side. Also the
//! `dm_cluster` runs: DMs between users on two nodes, per delivery, with the target ratio.

use crate::report::Report;
use std::fmt::Write as _;

/// CPU microseconds per published message, if the process was measured.
fn per_msg(u: Option<&crate::procfs::Usage>, published: u64) -> Option<f64> {
    u.filter(|_| published > 0)
        .map(|u| u.cpu_s * 1e6 / published as f64)
}

fn cell(v: Option<f64>) -> String {
    v.map_or_else(|| "-".to_owned(), |v| format!("{v:.1}"))
}

/// The table, or an empty string when no cluster run measured Redis.
pub fn render(rs: &[Report]) -> String {
    let runs: Vec<&Report> = rs
        .iter()
        .filter(|r| r.scenario == "cluster" && r.redis.is_some())
        .collect();
    if runs.is_empty() {
        return String::new();
    }
    let mut s = String::from(
        "\n### Cluster: CPU per published message, nodes and Redis\n\n\
         | run | published | delivered / expected | node A (subscribers) µs | node B (none) µs | nodes µs | Redis µs | Redis processes | total µs |\n\
         | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |\n",
    );
    for r in runs {
        let p = r.published;
        let a = per_msg(r.server.as_ref(), p);
        let b = per_msg(r.other_server.as_ref(), p);
        let redis = per_msg(r.redis.as_ref(), p);
        let nodes = a.zip(b).map(|(x, y)| x + y);
        let total = nodes.zip(redis).map(|(x, y)| x + y);
        let procs = r.params["redis_processes"].as_u64().unwrap_or(1);
        let _ = writeln!(
            s,
            "| {} | {p} | {} / {} | {} | {} | {} | {} | {procs} | {} |",
            r.label.as_deref().unwrap_or(&r.protocol),
            r.deliveries,
            r.expected_deliveries,
            cell(a),
            cell(b),
            cell(nodes),
            cell(redis),
            cell(total),
        );
    }
    s.push_str(
        "\nCPU-µs per message published into the busy room over the traffic window (node A also \
         writes it to every subscriber; node B holds connections none of which is in the room).\n",
    );
    s
}

/// The whole cluster's CPU seconds (both nodes and Redis) of a `dm_cluster` run, if all three
/// were measured.
fn cluster_cpu_s(r: &Report) -> Option<f64> {
    Some(r.server.as_ref()?.cpu_s + r.other_server.as_ref()?.cpu_s + r.redis.as_ref()?.cpu_s)
}

/// The first `dm_cluster` run of `protocol`.
fn dm_run<'a>(rs: &'a [Report], protocol: &str) -> Option<&'a Report> {
    rs.iter()
        .find(|r| r.scenario == "dm_cluster" && r.protocol == protocol)
}

/// The `dm_cluster` table: CPU per delivered DM on each node and Redis, one row per run, then
/// Switchboard's deliveries per cluster CPU-second against Socket.IO's. Empty without such runs.
pub fn render_dm(rs: &[Report]) -> String {
    let runs: Vec<&Report> = rs.iter().filter(|r| r.scenario == "dm_cluster").collect();
    if runs.is_empty() {
        return String::new();
    }
    let mut s = String::from(
        "\n### Cluster DMs: CPU per delivered DM, two nodes and Redis\n\n\
         | run | delivered / expected | node A µs | node B µs | Redis µs | total µs | deliveries per cluster CPU-second | p99 ms |\n\
         | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |\n",
    );
    for r in runs {
        let d = r.deliveries;
        let total = cluster_cpu_s(r).filter(|_| d > 0);
        let _ = writeln!(
            s,
            "| {} | {d} / {} | {} | {} | {} | {} | {} | {} |",
            r.label.as_deref().unwrap_or(&r.protocol),
            r.expected_deliveries,
            cell(per_msg(r.server.as_ref(), d)),
            cell(per_msg(r.other_server.as_ref(), d)),
            cell(per_msg(r.redis.as_ref(), d)),
            cell(total.map(|t| t * 1e6 / d as f64)),
            total.map_or_else(|| "-".to_owned(), |t| format!("{:.0}", d as f64 / t)),
            r.latency_us.as_ref().map_or_else(
                || "-".to_owned(),
                |l| format!("{:.2}", l.p99 as f64 / 1000.0)
            ),
        );
    }
    if let Some(row) = dm_target(rs) {
        let _ = writeln!(s, "\n{row}");
    }
    s
}

/// The cluster DM target as a sentence: Switchboard's deliveries per cluster
/// CPU-second (nodes and Redis) at least 2x Socket.IO's with the redis adapter.
pub fn dm_target(rs: &[Report]) -> Option<String> {
    let (a, b) = (dm_run(rs, "switchboard")?, dm_run(rs, "socketio")?);
    let (x, y) = (cluster_cpu_s(a)?, cluster_cpu_s(b)?);
    if a.deliveries == 0 || b.deliveries == 0 || x <= 0.0 || y <= 0.0 {
        return None;
    }
    let ratio = (a.deliveries as f64 / x) / (b.deliveries as f64 / y);
    Some(format!(
        "Cluster DMs, deliveries per CPU-second of both nodes and Redis: {ratio:.2}x Socket.IO's \
         with the redis adapter (target ≥ 2x: {}).",
        if ratio >= 2.0 { "met" } else { "**missed**" }
    ))
}
