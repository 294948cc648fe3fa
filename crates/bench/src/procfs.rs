//! Server-side figures from /proc: CPU time (utime + stime of /proc/PID/stat, and the
//! nanosecond run time of every thread from /proc/PID/task/*/schedstat) and resident memory
//! (VmRSS of /proc/PID/status). Only the server process is measured, so the load generator
//! sharing the machine does not blur them.

use serde::{Deserialize, Serialize};
use std::time::Instant;

/// Clock ticks per second of /proc/PID/stat (USER_HZ; 100 on every Linux the bench targets).
const TICKS_PER_S: f64 = 100.0;

/// One reading of a process.
#[derive(Debug, Clone, Copy)]
pub struct Sample {
    /// utime + stime in clock ticks (includes threads that have exited).
    pub ticks: u64,
    /// stime alone (time in the kernel on the process's behalf), clock ticks.
    pub sys_ticks: u64,
    /// Sum of the live threads' run time in nanoseconds, if schedstat is available.
    pub sched_ns: Option<u64>,
    /// Resident set size in KiB.
    pub rss_kib: u64,
    /// When it was taken.
    pub at: Instant,
}

/// Reads a process's CPU and memory. `None` if the process is gone or /proc is unreadable.
pub fn sample(pid: u32) -> Option<Sample> {
    let at = Instant::now();
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // Fields after the command name (which may contain spaces) in parentheses.
    let after = &stat[stat.rfind(')')? + 2..];
    let f: Vec<&str> = after.split_whitespace().collect();
    let (utime, stime) = (
        f.get(11)?.parse::<u64>().ok()?,
        f.get(12)?.parse::<u64>().ok()?,
    );
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let rss_kib = status
        .lines()
        .find(|l| l.starts_with("VmRSS:"))?
        .split_whitespace()
        .nth(1)?
        .parse()
        .ok()?;
    Some(Sample {
        ticks: utime + stime,
        sys_ticks: stime,
        sched_ns: sched_ns(pid),
        rss_kib,
        at,
    })
}

fn sched_ns(pid: u32) -> Option<u64> {
    let mut total = 0u64;
    for entry in std::fs::read_dir(format!("/proc/{pid}/task")).ok()? {
        let path = entry.ok()?.path().join("schedstat");
        let text = std::fs::read_to_string(path).ok()?;
        total += text.split_whitespace().next()?.parse::<u64>().ok()?;
    }
    Some(total)
}

/// What a process used between two samples.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Usage {
    /// The process measured.
    pub pid: u32,
    /// CPU seconds used (see [`cpu_between`] for which source).
    pub cpu_s: f64,
    /// CPU seconds from utime + stime (10 ms resolution).
    pub cpu_ticks_s: f64,
    /// Of which in the kernel (stime): system calls, and on loopback also the receiving
    /// side's TCP processing that runs in the sender's context.
    pub cpu_sys_s: f64,
    /// CPU seconds from the threads' schedstat (ns resolution, misses threads that exited).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cpu_sched_s: Option<f64>,
    /// Wall-clock seconds between the samples.
    pub wall_s: f64,
    /// CPU use as a percentage of one core over the window.
    pub cpu_pct: f64,
    /// RSS at the first sample, KiB.
    pub rss_before_kib: u64,
    /// RSS at the second sample, KiB.
    pub rss_after_kib: u64,
    /// Server CPU microseconds per delivery (or per connection, per request), when it applies.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cpu_us_per_op: Option<f64>,
    /// Operations per server CPU-second, when it applies.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ops_per_cpu_s: Option<f64>,
    /// RSS growth per connection in bytes, when it applies.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub rss_per_connection_bytes: Option<f64>,
}

/// The usage between two samples of process `pid`.
///
/// CPU: utime + stime counts every thread, dead or alive, but only in 10 ms ticks; schedstat is
/// exact but forgets threads that exited. Above one CPU-second the tick count is precise to 1%
/// and is used; below it the schedstat figure is used when it exists and is not smaller than
/// zero.
pub fn cpu_between(pid: u32, a: &Sample, b: &Sample) -> Usage {
    let cpu_ticks_s = b.ticks.saturating_sub(a.ticks) as f64 / TICKS_PER_S;
    let cpu_sched_s = match (a.sched_ns, b.sched_ns) {
        (Some(x), Some(y)) if y >= x => Some((y - x) as f64 / 1e9),
        _ => None,
    };
    let cpu_s = match cpu_sched_s {
        Some(s) if cpu_ticks_s < 1.0 => s,
        _ => cpu_ticks_s,
    };
    let wall_s = b.at.duration_since(a.at).as_secs_f64();
    Usage {
        pid,
        cpu_s,
        cpu_ticks_s,
        cpu_sys_s: b.sys_ticks.saturating_sub(a.sys_ticks) as f64 / TICKS_PER_S,
        cpu_sched_s,
        wall_s,
        cpu_pct: if wall_s > 0.0 {
            100.0 * cpu_s / wall_s
        } else {
            0.0
        },
        rss_before_kib: a.rss_kib,
        rss_after_kib: b.rss_kib,
        cpu_us_per_op: None,
        ops_per_cpu_s: None,
        rss_per_connection_bytes: None,
    }
}

impl Usage {
    /// Fills the per-operation figures for `ops` operations (deliveries, connections, requests).
    pub fn per_op(mut self, ops: u64) -> Usage {
        if ops > 0 {
            self.cpu_us_per_op = Some(self.cpu_s * 1e6 / ops as f64);
            if self.cpu_s > 0.0 {
                self.ops_per_cpu_s = Some(ops as f64 / self.cpu_s);
            }
        }
        self
    }

    /// [`Usage::per_op`] with one op per connection, plus the RSS growth per connection.
    pub fn per_connection(mut self, connections: u64) -> Usage {
        if connections > 0 {
            self.rss_per_connection_bytes = Some(
                (self.rss_after_kib as f64 - self.rss_before_kib as f64) * 1024.0
                    / connections as f64,
            );
        }
        self.per_op(connections)
    }
}

/// A process to measure, if the user named one.
#[derive(Debug, Clone, Copy)]
pub struct Probe {
    /// The process id, if any.
    pub pid: Option<u32>,
}

impl Probe {
    /// Takes a sample now (or nothing when no process was named or it is gone).
    pub fn sample(&self) -> Option<Sample> {
        self.pid.and_then(sample)
    }

    /// The usage between `a` and a sample taken now.
    pub fn usage_since(&self, a: &Option<Sample>) -> Option<Usage> {
        let pid = self.pid?;
        let a = a.as_ref()?;
        let b = sample(pid)?;
        Some(cpu_between(pid, a, &b))
    }
}

/// Several processes measured as one (the servers of a Redis Cluster): CPU summed, RSS summed.
#[derive(Debug, Clone, Default)]
pub struct Group {
    /// The process ids.
    pub pids: Vec<u32>,
}

impl Group {
    /// One sample per process, or nothing when none was named or any is gone.
    pub fn sample(&self) -> Option<Vec<Sample>> {
        if self.pids.is_empty() {
            return None;
        }
        self.pids.iter().map(|&p| sample(p)).collect()
    }

    /// The summed usage between `a` and samples taken now (`pid` is the first process's).
    pub fn usage_since(&self, a: &Option<Vec<Sample>>) -> Option<Usage> {
        let a = a.as_ref()?;
        let mut sum: Option<Usage> = None;
        for (&pid, s) in self.pids.iter().zip(a) {
            let u = cpu_between(pid, s, &sample(pid)?);
            sum = Some(match sum {
                None => u,
                Some(t) => Usage {
                    cpu_s: t.cpu_s + u.cpu_s,
                    cpu_ticks_s: t.cpu_ticks_s + u.cpu_ticks_s,
                    cpu_sys_s: t.cpu_sys_s + u.cpu_sys_s,
                    cpu_sched_s: t.cpu_sched_s.zip(u.cpu_sched_s).map(|(x, y)| x + y),
                    cpu_pct: t.cpu_pct + u.cpu_pct,
                    rss_before_kib: t.rss_before_kib + u.rss_before_kib,
                    rss_after_kib: t.rss_after_kib + u.rss_after_kib,
                    ..t
                },
            });
        }
        sum
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_its_own_process() {
        let s = sample(std::process::id()).expect("own /proc entry");
        assert!(s.rss_kib > 0);
        // Burn a little CPU and see it counted.
        let mut x = 0u64;
        for i in 0..30_000_000u64 {
            x = x.wrapping_mul(31).wrapping_add(i);
        }
        std::hint::black_box(x);
        let t = sample(std::process::id()).unwrap();
        let u = cpu_between(std::process::id(), &s, &t);
        assert!(u.cpu_s > 0.0, "{u:?}");
    }
}
