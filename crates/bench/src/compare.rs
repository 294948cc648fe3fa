//! `report DIR`: reads the JSON reports of one comparison run and prints three Markdown
//! tables: every run, Switchboard against Socket.IO scenario by scenario, and the issue's
//! targets with a verdict for each.

use crate::error::{BenchError, Result};
use crate::report::{self, Report, thousands};
use std::fmt::Write as _;
use std::path::Path;

const ORDER: [&str; 9] = [
    "idle",
    "storm",
    "fanout",
    "rooms",
    "dm",
    "pipeline",
    "cluster",
    "dm_cluster",
    "dispatch",
];

/// Reads every `*.json` report in `dir`, in scenario order.
pub fn load(dir: &Path) -> Result<Vec<Report>> {
    let mut out = Vec::new();
    let entries = std::fs::read_dir(dir)
        .map_err(|e| BenchError::io(format!("reading {}", dir.display()), e))?;
    let mut paths: Vec<_> = entries
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "json"))
        .collect();
    paths.sort();
    for p in paths {
        let text = std::fs::read_to_string(&p)
            .map_err(|e| BenchError::io(format!("reading {}", p.display()), e))?;
        match serde_json::from_str::<Report>(&text) {
            Ok(r) => out.push(r),
            Err(e) => eprintln!("report: skipping {}: {e}", p.display()),
        }
    }
    out.sort_by_key(|r| {
        (
            ORDER.iter().position(|s| *s == r.scenario).unwrap_or(99),
            r.protocol != "switchboard",
        )
    });
    Ok(out)
}

/// The run of `scenario` against `protocol`; of several (two fan-out sizes), the largest. Cluster
/// runs on a Redis Cluster (several Redis processes) have a table of their own and are left out.
pub(crate) fn find<'a>(rs: &'a [Report], scenario: &str, protocol: &str) -> Option<&'a Report> {
    rs.iter()
        .filter(|r| r.scenario == scenario && r.protocol == protocol)
        .filter(|r| r.params["redis_processes"].as_u64().unwrap_or(1) <= 1)
        .max_by_key(|r| r.connections)
}

/// Which `pipeline` run this is: where to, and at what rate (`None`: as fast as answered).
fn pipeline_variant(r: &Report) -> (String, Option<f64>) {
    (
        r.params["to"].as_str().unwrap_or("?").to_owned(),
        r.params["rate"].as_f64(),
    )
}

/// The `pipeline` runs against Switchboard, each with the Socket.IO run of the same variant.
fn pipeline_pairs(rs: &[Report]) -> Vec<(&Report, Option<&Report>)> {
    rs.iter()
        .filter(|r| r.scenario == "pipeline" && r.protocol == "switchboard")
        .map(|a| {
            let b = rs.iter().find(|r| {
                r.scenario == "pipeline"
                    && r.protocol == "socketio"
                    && pipeline_variant(r) == pipeline_variant(a)
            });
            (a, b)
        })
        .collect()
}

fn kib(bytes: f64) -> String {
    format!("{:.1} KiB", bytes / 1024.0)
}

fn ms(us: u64) -> String {
    format!("{:.2} ms", us as f64 / 1000.0)
}

fn verdict(met: bool, miss: impl FnOnce() -> String) -> String {
    verdict_at(true, met, miss)
}

/// A verdict for a target that only applies at some scale (`at_scale`).
fn verdict_at(at_scale: bool, met: bool, miss: impl FnOnce() -> String) -> String {
    if !at_scale {
        "not measured at the target's scale".into()
    } else if met {
        "met".into()
    } else {
        format!("**missed**: {}", miss())
    }
}

/// The three tables for the reports in `dir`.
pub fn render(dir: &Path) -> Result<String> {
    let rs = load(dir)?;
    if rs.is_empty() {
        return Err(BenchError::Config(format!(
            "no JSON reports in {}",
            dir.display()
        )));
    }
    let mut s = String::new();
    s.push_str("### Every run\n\n");
    s.push_str(&report::markdown(&rs));
    s.push_str(
        "\n\"server CPU µs/op\" is per delivery (per connection for idle and storm, per request \
         for dispatch, per acknowledged publish for pipeline); latency columns are publish-to-delivery (connect time for storm, request \
         time for dispatch).\n",
    );

    // Side by side.
    s.push_str("\n### Switchboard against Socket.IO\n\n");
    let side_by_side_start = s.len();
    s.push_str("| scenario | figure | Switchboard | Socket.IO | ratio | target |\n");
    s.push_str("| --- | --- | ---: | ---: | ---: | --- |\n");
    let pair = |sc: &str| (find(&rs, sc, "switchboard"), find(&rs, sc, "socketio"));
    if let (Some(a), Some(b)) = pair("idle")
        && let (Some(x), Some(y)) = (a.rss_per_conn(), b.rss_per_conn())
    {
        let _ = writeln!(
            s,
            "| idle | server RSS per connection | {} | {} | {:.2} of Socket.IO's | ≤ 0.25 |",
            kib(x),
            kib(y),
            x / y
        );
    }
    if let (Some(a), Some(b)) = pair("storm")
        && let (Some(x), Some(y)) = (a.connects_per_s, b.connects_per_s)
    {
        let _ = writeln!(
            s,
            "| storm | authenticated connections/s | {} | {} | {:.1}x | - |",
            thousands(x),
            thousands(y),
            x / y
        );
        if let (Some(x), Some(y)) = (a.cpu_us_per_op(), b.cpu_us_per_op()) {
            let _ = writeln!(
                s,
                "| storm | server CPU per connection | {x:.0} µs | {y:.0} µs | {:.2} of Socket.IO's | - |",
                x / y
            );
        }
    }
    for sc in ["fanout", "rooms", "dm"] {
        if let (Some(a), Some(b)) = pair(sc) {
            if let (Some(x), Some(y)) = (a.ops_per_cpu_s(), b.ops_per_cpu_s()) {
                let _ = writeln!(
                    s,
                    "| {sc} | deliveries per server CPU-second | {} | {} | {:.2}x | ≥ 5x |",
                    thousands(x),
                    thousands(y),
                    x / y
                );
            }
            let _ = writeln!(
                s,
                "| {sc} | deliveries/s | {} | {} | {:.2}x | - |",
                thousands(a.deliveries_per_s),
                thousands(b.deliveries_per_s),
                if b.deliveries_per_s > 0.0 {
                    a.deliveries_per_s / b.deliveries_per_s
                } else {
                    f64::NAN
                }
            );
            if let (Some(x), Some(y)) = (&a.latency_us, &b.latency_us) {
                let _ = writeln!(
                    s,
                    "| {sc} | p99 publish-to-delivery | {} | {} | {:.2}x | - |",
                    ms(x.p99),
                    ms(y.p99),
                    x.p99 as f64 / y.p99.max(1) as f64
                );
            }
        }
    }
    for (a, b) in pipeline_pairs(&rs) {
        let Some(b) = b else { continue };
        let name = a.name();
        if let (Some(x), Some(y)) = (a.publishes_per_s, b.publishes_per_s)
            && a.params["rate"].is_null()
        {
            let _ = writeln!(
                s,
                "| {name} | acknowledged publishes/s from one connection | {} | {} | {:.2}x | ≥ 30,000/s |",
                thousands(x),
                thousands(y),
                x / y.max(1e-9)
            );
        }
        if let (Some(x), Some(y)) = (a.ops_per_cpu_s(), b.ops_per_cpu_s()) {
            let _ = writeln!(
                s,
                "| {name} | publishes per server CPU-second | {} | {} | {:.2}x | - |",
                thousands(x),
                thousands(y),
                x / y
            );
        }
        if let (Some(x), Some(y)) = (&a.latency_us, &b.latency_us) {
            let _ = writeln!(
                s,
                "| {name} | p99 publish-to-delivery | {} | {} | {:.2}x | {} |",
                ms(x.p99),
                ms(y.p99),
                x.p99 as f64 / y.p99.max(1) as f64,
                if a.params["rate"].is_null() {
                    "-"
                } else {
                    "≤ 10 ms"
                }
            );
        }
    }
    if let (Some(a), Some(b)) = pair("cluster")
        && let (Some(x), Some(y)) = (&a.other_server, &b.other_server)
    {
        let _ = writeln!(
            s,
            "| cluster | CPU of the node with no interested connection | {:.3} s | {:.3} s | {:.2}% of Socket.IO's | < 1% |",
            x.cpu_s,
            y.cpu_s,
            if y.cpu_s > 0.0 {
                100.0 * x.cpu_s / y.cpu_s
            } else {
                f64::NAN
            }
        );
        if let (Some(xb), Some(yb)) = (&a.other_server_baseline, &b.other_server_baseline) {
            let _ = writeln!(
                s,
                "| cluster | the same node in a quiet window of {:.0} s before the traffic | {:.3} s | {:.3} s | - | - |",
                xb.wall_s, xb.cpu_s, yb.cpu_s
            );
            let (tx, ty) = (
                traffic_us(x, xb, a.published),
                traffic_us(y, yb, b.published),
            );
            let _ = writeln!(
                s,
                "| cluster | its CPU due to the traffic (beyond the quiet rate), per published message | {tx:.2} µs | {ty:.2} µs | {:.2}% of Socket.IO's | < 1% |",
                if ty > 0.0 { 100.0 * tx / ty } else { f64::NAN }
            );
        }
    }

    if rs.iter().all(|r| r.protocol != "socketio") {
        s.truncate(side_by_side_start);
        s.push_str("(no Socket.IO runs in this directory)\n");
    }

    s.push_str(&crate::cluster_table::render(&rs));
    s.push_str(&crate::cluster_table::render_dm(&rs));
    s.push_str(&crate::floor_table::render(&rs));

    // Targets.
    s.push_str("\n### Targets\n\n| target | measured | verdict |\n| --- | --- | --- |\n");
    if let Some(a) = find(&rs, "idle", "switchboard")
        && let Some(x) = a.rss_per_conn()
    {
        let _ = writeln!(
            s,
            "| idle WebSocket connection ≤ 8 KiB server RSS at 15,000 connections | {} at {} connections | {} |",
            kib(x),
            thousands(a.connections as f64),
            verdict_at(a.connections >= 15_000, x <= 8192.0, || format!(
                "{:.1} KiB over ({:+.0}%)",
                (x - 8192.0) / 1024.0,
                100.0 * (x / 8192.0 - 1.0)
            ))
        );
    }
    if let Some(a) = find(&rs, "fanout", "switchboard") {
        if let Some(x) = a.cpu_us_per_op() {
            let _ = writeln!(
                s,
                "| one room with 10,000 subscribers ≤ 2 µs server CPU per delivery | {x:.2} µs with {} subscribers | {} |",
                thousands(a.connections as f64),
                verdict_at(a.connections >= 10_000, x <= 2.0, || format!(
                    "{:.2} µs over ({:.1}x the target)",
                    x - 2.0,
                    x / 2.0
                ))
            );
        }
        if let Some(f) = find(&rs, "floor", "kernel")
            && let Some(fx) = f.cpu_us_per_op()
        {
            let _ = writeln!(
                s,
                "| … the kernel's own cost of one {}-byte loopback TCP write to one of {} connections, no server (`floor`) | {fx:.2} µs | {} |",
                f.params["frame_bytes"].as_u64().unwrap_or(0),
                thousands(f.connections as f64),
                if fx > 2.0 {
                    "the target is below what the kernel charges for one write per delivery here"
                        .to_owned()
                } else {
                    format!(
                        "Switchboard adds {:.2} µs per delivery to it",
                        a.cpu_us_per_op().unwrap_or(0.0) - fx
                    )
                }
            );
        }
    }
    // One row per fan-out run (the target names a delivery rate, not a room size).
    for a in rs
        .iter()
        .filter(|r| r.scenario == "fanout" && r.protocol == "switchboard")
    {
        let Some(l) = &a.latency_us else { continue };
        let p99 = l.p99 as f64 / 1000.0;
        let offered = a.params["rate"].as_f64().unwrap_or(0.0)
            * a.params["connections"].as_f64().unwrap_or(0.0);
        let rate_ok = a.deliveries_per_s >= 95_000.0;
        let _ = writeln!(
            s,
            "| p99 publish-to-delivery ≤ 10 ms at 100,000 deliveries/s | {p99:.2} ms at {} deliveries/s (fanout: {} subscribers, {} msg/s) | {} |",
            thousands(a.deliveries_per_s),
            thousands(a.connections as f64),
            a.params["rate"].as_f64().unwrap_or(0.0),
            verdict_at(offered >= 95_000.0, p99 <= 10.0 && rate_ok, || {
                if rate_ok {
                    format!("{:.2} ms over ({:.0}x the target)", p99 - 10.0, p99 / 10.0)
                } else {
                    format!(
                        "{p99:.2} ms, and only {} deliveries/s reached",
                        thousands(a.deliveries_per_s)
                    )
                }
            })
        );
    }
    if let Some(a) = find(&rs, "storm", "switchboard")
        && let Some(x) = a.connects_per_s
    {
        let _ = writeln!(
            s,
            "| ≥ 10,000 new authenticated connections/s | {} /s | {} |",
            thousands(x),
            verdict_at(a.connections >= 5_000, x >= 10_000.0, || format!(
                "{:.0}% short",
                100.0 * (1.0 - x / 10_000.0)
            ))
        );
    }
    for (a, _) in pipeline_pairs(&rs) {
        let name = a.name();
        match a.params["rate"].as_f64() {
            None => {
                let x = a.publishes_per_s.unwrap_or(0.0);
                let _ = writeln!(
                    s,
                    "| {name}: ≥ 30,000 acknowledged publishes/s from one connection, {} in flight | {} /s | {} |",
                    a.params["in_flight"].as_u64().unwrap_or(0),
                    thousands(x),
                    verdict(x >= 30_000.0, || format!(
                        "{:.0}% short",
                        100.0 * (1.0 - x / 30_000.0)
                    ))
                );
            }
            Some(rate) => {
                let Some(l) = &a.latency_us else { continue };
                let p99 = l.p99 as f64 / 1000.0;
                let reached = a.publishes_per_s.unwrap_or(0.0);
                let kept_up = reached >= 0.95 * rate;
                let _ = writeln!(
                    s,
                    "| {name}: p99 publish-to-delivery ≤ 10 ms at 5,000 publishes/s | {p99:.2} ms at {} acknowledged/s | {} |",
                    thousands(reached),
                    verdict_at(rate >= 5_000.0, p99 <= 10.0 && kept_up, || {
                        if kept_up {
                            format!("{:.2} ms over", p99 - 10.0)
                        } else {
                            format!(
                                "{p99:.2} ms, and only {} publishes/s reached",
                                thousands(reached)
                            )
                        }
                    })
                );
            }
        }
    }
    let mut ratios = Vec::new();
    for sc in ["fanout", "rooms", "dm"] {
        if let (Some(a), Some(b)) = pair(sc)
            && let (Some(x), Some(y)) = (a.ops_per_cpu_s(), b.ops_per_cpu_s())
        {
            ratios.push((sc, x / y));
        }
    }
    if !ratios.is_empty() {
        let measured: Vec<String> = ratios
            .iter()
            .map(|(sc, r)| format!("{sc} {r:.2}x"))
            .collect();
        let short: Vec<String> = ratios
            .iter()
            .filter(|(_, r)| *r < 5.0)
            .map(|(sc, r)| format!("{sc} at {r:.2}x"))
            .collect();
        let _ = writeln!(
            s,
            "| ≥ 5x Socket.IO's deliveries per CPU-second | {} | {} |",
            measured.join(", "),
            verdict(short.is_empty(), || short.join(", "))
        );
    }
    if let (Some(a), Some(b)) = pair("idle")
        && let (Some(x), Some(y)) = (a.rss_per_conn(), b.rss_per_conn())
    {
        let r = x / y;
        let _ = writeln!(
            s,
            "| ≤ 1/4 of Socket.IO's memory per connection | {r:.2} ({} vs {}) | {} |",
            kib(x),
            kib(y),
            verdict(r <= 0.25, || format!("{r:.2} instead of 0.25"))
        );
    }
    if let (Some(a), Some(b)) = pair("cluster")
        && let (Some(x), Some(y)) = (&a.other_server, &b.other_server)
        && y.cpu_s > 0.0
    {
        let pct = 100.0 * x.cpu_s / y.cpu_s;
        let _ = writeln!(
            s,
            "| cluster: a node with no interested connection < 1% of a Socket.IO redis-adapter node's CPU | {pct:.2}% ({:.3} s vs {:.3} s) | {} |",
            x.cpu_s,
            y.cpu_s,
            verdict(pct < 1.0, || format!("{pct:.2}%"))
        );
        if let (Some(xb), Some(yb)) = (&a.other_server_baseline, &b.other_server_baseline) {
            let (tx, ty) = (
                traffic_us(x, xb, a.published),
                traffic_us(y, yb, b.published),
            );
            let tpct = 100.0 * tx.max(0.0) / ty.max(1e-9);
            let _ = writeln!(
                s,
                "| the same, counting only the CPU the traffic caused (beyond the node's quiet rate) | {tpct:.2}% ({tx:.2} vs {ty:.2} µs per published message; bus messages taken: {}) | {} |",
                a.other_bus_messages
                    .map_or_else(|| "-".to_owned(), |n| n.to_string()),
                verdict(tpct < 1.0, || format!("{tpct:.2}%"))
            );
        }
    }
    Ok(s)
}

/// What traffic cost the node with no interested connection, per published message (µs): its
/// CPU over the traffic window minus its quiet window's rate over the same time.
fn traffic_us(window: &crate::procfs::Usage, quiet: &crate::procfs::Usage, published: u64) -> f64 {
    1e6 * (window.cpu_s - quiet.cpu_s * window.wall_s / quiet.wall_s.max(1e-9))
        / published.max(1) as f64
}
