//! The cluster runs' CPU per published message, split into the node that holds the
//! subscribers, the node that holds none, and Redis (every `redis-server` of a Redis Cluster
//! summed): one row per run, so Switchboard on one Redis, Switchboard on a Redis Cluster (with and
//! without `WAIT`) and Socket.IO with either redis adapter read side by side.

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
