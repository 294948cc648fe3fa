//! The Switchboard-against-Socket.IO table of `report DIR`: for each scenario run against both,
//! the figures side by side with their ratio and the target, if it names one.

use crate::compare::{find, kib, pipeline_pairs, traffic_us};
use crate::report::{Report, thousands};
use std::fmt::Write as _;

fn ms(us: u64) -> String {
    format!("{:.2} ms", us as f64 / 1000.0)
}

/// The table, or a note when the reports hold no Socket.IO run.
pub fn render(rs: &[Report]) -> String {
    let mut s = String::from("\n### Switchboard against Socket.IO\n\n");
    if rs.iter().all(|r| r.protocol != "socketio") {
        s.push_str("(no Socket.IO runs in this directory)\n");
        return s;
    }
    s.push_str("| scenario | figure | Switchboard | Socket.IO | ratio | target |\n");
    s.push_str("| --- | --- | ---: | ---: | ---: | --- |\n");
    let pair = |sc: &str| (find(rs, sc, "switchboard"), find(rs, sc, "socketio"));
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
    for (a, b) in pipeline_pairs(rs) {
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
    s
}
