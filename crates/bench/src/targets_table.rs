//! The targets table of `report DIR`: each of the targets with what was measured and a
//! verdict (met, missed by how much, or not measured at the target's scale).

use crate::compare::{find, kib, pipeline_pairs, traffic_us};
use crate::report::{Report, thousands};
use std::fmt::Write as _;

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
/// The table.
pub fn render(rs: &[Report]) -> String {
    let mut s =
        String::from("\n### Targets\n\n| target | measured | verdict |\n| --- | --- | --- |\n");
    let pair = |sc: &str| (find(rs, sc, "switchboard"), find(rs, sc, "socketio"));
    if let Some(a) = find(rs, "idle", "switchboard")
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
    if let Some(a) = find(rs, "fanout", "switchboard") {
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
        if let Some(f) = find(rs, "floor", "kernel")
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
    if let Some(a) = find(rs, "storm", "switchboard")
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
    for (a, _) in pipeline_pairs(rs) {
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
    s
}
