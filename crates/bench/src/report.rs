//! What a run reports: one [`Report`] per scenario run, written as JSON (`--json FILE`, or
//! `--format json`) and shown as a Markdown table.

use crate::latency::Percentiles;
use crate::procfs::Usage;
use serde::{Deserialize, Serialize};

/// The figures of one scenario run.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Report {
    /// Scenario name (`idle`, `fanout`, `rooms`, `dm`, `pipeline`, `storm`, `cluster`,
    /// `dispatch`).
    pub scenario: String,
    /// `switchboard` or `socketio`.
    pub protocol: String,
    /// Free text naming the server set-up (for example `socketio-redis`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub label: Option<String>,
    /// The server URL.
    pub target: String,
    /// The scenario's parameters.
    pub params: serde_json::Value,
    /// Client connections open and subscribed.
    pub connections: u64,
    /// Client connections that failed.
    pub connect_failures: u64,
    /// Seconds of the measured phase.
    pub elapsed_s: f64,
    /// Messages published (HTTP publishes or direct messages sent).
    pub published: u64,
    /// Publishes that failed.
    pub publish_errors: u64,
    /// Deliveries there should be.
    pub expected_deliveries: u64,
    /// Messages received by someone other than their sender.
    pub deliveries: u64,
    /// Deliveries per second over the measured phase.
    pub deliveries_per_s: f64,
    /// Copies of their own direct messages received by senders (Switchboard's sender copy).
    pub echoes: u64,
    /// Answers to direct-message publishes.
    pub acks: u64,
    /// Error frames received.
    pub error_frames: u64,
    /// Deliveries out of seq order or repeated on a connection (Switchboard only).
    #[serde(default)]
    pub out_of_order: u64,
    /// Acknowledged publishes per second from the one publishing connection (pipeline).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub publishes_per_s: Option<f64>,
    /// Sessions the server ended during the run.
    pub server_disconnects: u64,
    /// New authenticated connections per second (storm).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub connects_per_s: Option<f64>,
    /// HTTP requests answered (dispatch).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub requests: Option<u64>,
    /// HTTP requests per second (dispatch).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub requests_per_s: Option<f64>,
    /// The server process's CPU and memory over the measured phase.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub server: Option<Usage>,
    /// Cluster: the node with no interested connection.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub other_server: Option<Usage>,
    /// Cluster: the node with no interested connection during a quiet window of the same
    /// length before the traffic (what it spends anyway: heartbeats, leases, timers).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub other_server_baseline: Option<Usage>,
    /// Cluster, Switchboard: messages the node with no interested connection took from the bus
    /// during the traffic (its `switchboard_bus_messages_received_total`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub other_bus_messages: Option<u64>,
    /// Cluster: the Redis server.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub redis: Option<Usage>,
    /// Publish-to-delivery latency, µs.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub latency_us: Option<Percentiles>,
    /// Connect + authenticate + subscribe time, µs.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub connect_latency_us: Option<Percentiles>,
    /// HTTP publish request time, µs.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub publish_latency_us: Option<Percentiles>,
    /// HTTP request time (dispatch), µs.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub request_latency_us: Option<Percentiles>,
    /// First errors seen, for diagnosis.
    pub errors: Vec<String>,
    /// Checks that failed (`--strict` turns these into a non-zero exit code).
    pub failures: Vec<String>,
}

/// Formats microseconds as milliseconds with 2 decimals.
fn ms(us: u64) -> String {
    format!("{:.2}", us as f64 / 1000.0)
}

/// Formats a number with thousands separators.
pub fn thousands(x: f64) -> String {
    let n = x.round() as i64;
    let s = n.unsigned_abs().to_string();
    let mut out = String::new();
    for (i, c) in s.chars().enumerate() {
        // A separator before every group of three digits counted from the right.
        if i > 0 && (s.len() - i).rem_euclid(3) == 0 {
            out.push(',');
        }
        out.push(c);
    }
    if n < 0 { format!("-{out}") } else { out }
}

/// A short name of the server set-up of a report.
pub fn server_name(r: &Report) -> String {
    r.label.clone().unwrap_or_else(|| r.protocol.clone())
}

impl Report {
    /// The scenario's name in tables; `pipeline` runs add where to and the rate
    /// (`pipeline (dm, 5,000/s)`, `pipeline (room, as fast as answered)`).
    pub fn name(&self) -> String {
        if self.scenario != "pipeline" {
            return self.scenario.clone();
        }
        let to = self.params["to"].as_str().unwrap_or("?");
        match self.params["rate"].as_f64() {
            Some(x) => format!("pipeline ({to}, {}/s)", thousands(x)),
            None => format!("pipeline ({to}, as fast as answered)"),
        }
    }

    /// Server CPU microseconds per delivery (or per connection, per request).
    pub fn cpu_us_per_op(&self) -> Option<f64> {
        self.server.as_ref().and_then(|s| s.cpu_us_per_op)
    }

    /// Operations per server CPU-second.
    pub fn ops_per_cpu_s(&self) -> Option<f64> {
        self.server.as_ref().and_then(|s| s.ops_per_cpu_s)
    }

    /// Server RSS per connection in bytes.
    pub fn rss_per_conn(&self) -> Option<f64> {
        self.server
            .as_ref()
            .and_then(|s| s.rss_per_connection_bytes)
    }

    /// The scenario-specific figure of the last column.
    fn other(&self) -> String {
        let mut parts = Vec::new();
        if let Some(c) = self.connects_per_s {
            parts.push(format!("{} connects/s", thousands(c)));
        }
        if let Some(p) = self.publishes_per_s {
            parts.push(format!("{} acknowledged publishes/s", thousands(p)));
        }
        if let Some(l) = &self.publish_latency_us
            && self.scenario == "pipeline"
        {
            parts.push(format!("p99 publish-to-answer {} ms", ms(l.p99)));
        }
        if let Some(r) = self.requests_per_s {
            parts.push(format!("{} requests/s", thousands(r)));
        }
        if let Some(o) = &self.other_server {
            // In `cluster` the other node holds no interested connection; in `dm_cluster` it
            // holds half the users.
            let which = if self.scenario == "cluster" {
                "idle node"
            } else {
                "node B"
            };
            parts.push(format!(
                "{which} {:.3} CPU-s ({:.2}% of a core)",
                o.cpu_s, o.cpu_pct
            ));
        }
        if let Some(o) = &self.other_server_baseline {
            parts.push(format!(
                "idle node without traffic {:.3} CPU-s in {:.0} s",
                o.cpu_s, o.wall_s
            ));
        }
        if let Some(n) = self.other_bus_messages {
            parts.push(format!("idle node took {n} messages from the bus"));
        }
        if let Some(r) = &self.redis {
            parts.push(format!("redis {:.2} CPU-s", r.cpu_s));
        }
        if let Some(s) = &self.server
            && self.scenario != "idle"
        {
            let kernel = if s.cpu_ticks_s > 0.0 {
                100.0 * s.cpu_sys_s / s.cpu_ticks_s
            } else {
                0.0
            };
            parts.push(format!(
                "server {:.0}% CPU ({kernel:.0}% of it in the kernel)",
                s.cpu_pct
            ));
        }
        if self.server_disconnects > 0 {
            parts.push(format!("{} server disconnects", self.server_disconnects));
        }
        if self.expected_deliveries > self.deliveries {
            parts.push(format!(
                "{} deliveries missing",
                thousands((self.expected_deliveries - self.deliveries) as f64)
            ));
        }
        parts.join("; ")
    }
}

/// The header of the runs table.
pub const TABLE_HEAD: &str = "| scenario | server | conns | deliveries/s | server CPU µs/op | ops per server CPU-s | server RSS/conn | p50 ms | p99 ms | p99.9 ms | other |\n| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | --- |\n";

/// One row of the runs table.
pub fn table_row(r: &Report) -> String {
    let opt = |x: Option<f64>, f: &dyn Fn(f64) -> String| x.map(f).unwrap_or_else(|| "-".into());
    let lat = r.latency_us.as_ref();
    format!(
        "| {} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} |\n",
        r.name(),
        server_name(r),
        thousands(r.connections as f64),
        if r.deliveries > 0 {
            thousands(r.deliveries_per_s)
        } else {
            "-".into()
        },
        opt(r.cpu_us_per_op(), &|x| format!("{x:.2}")),
        opt(r.ops_per_cpu_s(), &thousands),
        opt(r.rss_per_conn(), &|x| format!("{:.1} KiB", x / 1024.0)),
        lat.map(|l| ms(l.p50)).unwrap_or_else(|| "-".into()),
        lat.map(|l| ms(l.p99)).unwrap_or_else(|| "-".into()),
        lat.map(|l| ms(l.p999)).unwrap_or_else(|| "-".into()),
        r.other(),
    )
}

/// The Markdown table of some reports.
pub fn markdown(reports: &[Report]) -> String {
    let mut s = String::from(TABLE_HEAD);
    for r in reports {
        s.push_str(&table_row(r));
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn thousands_separators() {
        assert_eq!(thousands(0.0), "0");
        assert_eq!(thousands(999.4), "999");
        assert_eq!(thousands(1000.0), "1,000");
        assert_eq!(thousands(1234567.0), "1,234,567");
        assert_eq!(thousands(-12345.0), "-12,345");
    }
}
