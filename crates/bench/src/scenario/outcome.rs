//! The end of a run: the workers' and the `connect` phase's figures added to the report, the
//! standard checks, and the report printed and written with the run's verdict.

use crate::cli::{Format, Output};
use crate::error::{BenchError, Result};
use crate::latency;
use crate::report::{self, Report};
use crate::worker::WorkerResult;

/// Sets the run's length and the delivery rate over it.
pub fn set_elapsed(r: &mut Report, elapsed_s: f64) {
    r.elapsed_s = elapsed_s;
    if r.elapsed_s > 0.0 {
        r.deliveries_per_s = r.deliveries as f64 / r.elapsed_s;
    }
}

/// The failures every scenario shares: no connection, and (if asked) no delivery.
pub fn basic_failures(r: &Report, deliveries_expected: bool) -> Vec<String> {
    let mut hard = Vec::new();
    if r.connections == 0 {
        hard.push("no connection opened".into());
    }
    if deliveries_expected && r.deliveries == 0 {
        hard.push("nothing was delivered".into());
    }
    hard
}

/// Adds the workers' final figures to a report.
pub fn merge_results(report: &mut Report, results: &[WorkerResult]) {
    let mut lat = latency::histogram();
    let mut conn = latency::histogram();
    let mut req = latency::histogram();
    for r in results {
        report.deliveries += r.deliveries;
        report.echoes += r.echoes;
        report.acks += r.acks;
        report.error_frames += r.error_frames;
        report.out_of_order += r.out_of_order;
        report.server_disconnects += r.closed;
        latency::merge(&mut lat, &r.latency);
        latency::merge(&mut conn, &r.connect_latency);
        latency::merge(&mut req, &r.request_latency);
        if let Some(e) = &r.first_error_frame {
            report.errors.push(format!("error frame: {e}"));
        }
        if let Some(e) = &r.first_close {
            report.errors.push(format!("server ended a session: {e}"));
        }
    }
    report.latency_us = latency::percentiles(&lat);
    report.connect_latency_us = latency::percentiles(&conn);
    report.request_latency_us = latency::percentiles(&req);
}

/// Adds the `connect` phase's figures to a report.
pub fn add_connected(report: &mut Report, connected: &[(usize, usize, f64, Option<String>)]) {
    for (ok, failed, _, first) in connected {
        report.connections += *ok as u64;
        report.connect_failures += *failed as u64;
        if let Some(e) = first {
            report.errors.push(format!("connect: {e}"));
        }
    }
}

/// The standard checks: with `--strict` any of them fails the run.
pub fn strict_checks(r: &mut Report) {
    if r.connect_failures > 0 {
        r.failures
            .push(format!("{} connections failed", r.connect_failures));
    }
    if r.deliveries < r.expected_deliveries {
        r.failures.push(format!(
            "{} of {} deliveries missing",
            r.expected_deliveries - r.deliveries,
            r.expected_deliveries
        ));
    }
    if r.publish_errors > 0 {
        r.failures
            .push(format!("{} publishes failed", r.publish_errors));
    }
    if r.out_of_order > 0 {
        r.failures.push(format!(
            "{} deliveries repeated or out of seq order",
            r.out_of_order
        ));
    }
    if r.error_frames > 0 {
        r.failures.push(format!("{} error frames", r.error_frames));
    }
    if r.server_disconnects > 0 {
        r.failures.push(format!(
            "the server ended {} sessions",
            r.server_disconnects
        ));
    }
}

/// Prints the report, writes its JSON, and says whether the run passed: `hard` failures always
/// fail it, the standard checks only with `--strict`.
pub fn finish(output: &Output, mut r: Report, hard: Vec<String>) -> Result<bool> {
    // Failures a scenario noted itself count like the standard checks (`--strict` only).
    strict_checks(&mut r);
    let soft_failed = !r.failures.is_empty();
    r.failures.extend(hard.iter().cloned());
    let json = serde_json::to_string_pretty(&r).expect("reports serialize");
    if let Some(path) = &output.json {
        std::fs::write(path, format!("{json}\n"))
            .map_err(|e| BenchError::io(format!("writing {}", path.display()), e))?;
    }
    match output.format {
        Format::Json => println!("{json}"),
        Format::Markdown => print!("{}", report::markdown(std::slice::from_ref(&r))),
    }
    for e in &r.errors {
        eprintln!("note: {e}");
    }
    for f in &r.failures {
        eprintln!("FAILED: {f}");
    }
    Ok(hard.is_empty() && !(output.strict && soft_failed))
}
