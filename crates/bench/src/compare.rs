//! `report DIR`: reads the JSON reports of one comparison run and prints its Markdown tables:
//! every run (here), Switchboard against Socket.IO scenario by scenario (`side_by_side_table`),
//! the cluster and floor tables, and the targets with a verdict for each
//! (`targets_table`). The look-ups and figures those tables share are here too.

use crate::error::{BenchError, Result};
use crate::report::{self, Report};
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
pub(crate) fn pipeline_pairs(rs: &[Report]) -> Vec<(&Report, Option<&Report>)> {
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

/// Bytes as KiB, one decimal.
pub(crate) fn kib(bytes: f64) -> String {
    format!("{:.1} KiB", bytes / 1024.0)
}

/// Every table for the reports in `dir`.
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
    s.push_str(&crate::side_by_side_table::render(&rs));
    s.push_str(&crate::cluster_table::render(&rs));
    s.push_str(&crate::cluster_table::render_dm(&rs));
    s.push_str(&crate::floor_table::render(&rs));
    s.push_str(&crate::targets_table::render(&rs));
    Ok(s)
}

/// What traffic cost the node with no interested connection, per published message (µs): its
/// CPU over the traffic window minus its quiet window's rate over the same time.
pub(crate) fn traffic_us(
    window: &crate::procfs::Usage,
    quiet: &crate::procfs::Usage,
    published: u64,
) -> f64 {
    1e6 * (window.cpu_s - quiet.cpu_s * window.wall_s / quiet.wall_s.max(1e-9))
        / published.max(1) as f64
}
