//! The floors table of `report DIR`: what the kernel alone charges for the socket work of a
//! direct message and of a small-room message (`msg-floor`, no server), against Socket.IO's
//! CPU per delivery in the same run. Socket.IO's figure divided by a floor is the most any
//! server could reach on this machine: a server that did nothing but that socket work.

use crate::compare::find;
use crate::report::Report;
use std::fmt::Write as _;

/// The ratio issue 12 asks of DMs and rooms: Socket.IO's deliveries per CPU-second times this.
const TARGET: f64 = 3.0;

/// The `msg-floor` run for `recipients` (1: DMs; more: rooms), synced to disk or not.
fn floor(rs: &[Report], dm: bool, durable: bool) -> Option<&Report> {
    rs.iter().find(|r| {
        r.scenario == "msg_floor"
            && (r.params["recipients"].as_u64() == Some(1)) == dm
            && r.params["durable"].as_bool() == Some(durable)
    })
}

/// The table, or nothing if the directory has no `msg-floor` run.
pub fn render(rs: &[Report]) -> String {
    if !rs.iter().any(|r| r.scenario == "msg_floor") {
        return String::new();
    }
    let mut s = String::new();
    s.push_str(
        "\n### Floors: the socket work alone (`msg-floor`, no server)\n\n\
         | workload | Socket.IO µs per delivery | 3x Socket.IO's is | floor | floor, synced to disk | Switchboard | the most any server could reach |\n\
         | --- | ---: | ---: | ---: | ---: | ---: | --- |\n",
    );
    for (name, scenario, dm) in [("dm", "dm", true), ("rooms", "rooms", false)] {
        let plain = floor(rs, dm, false).and_then(Report::cpu_us_per_op);
        let synced = floor(rs, dm, true);
        let synced_us = synced.and_then(Report::cpu_us_per_op);
        if plain.is_none() && synced_us.is_none() {
            continue;
        }
        let sio = find(rs, scenario, "socketio").and_then(Report::cpu_us_per_op);
        let sb = find(rs, scenario, "switchboard").and_then(Report::cpu_us_per_op);
        let us = |x: Option<f64>| x.map_or_else(|| "-".to_owned(), |x| format!("{x:.2} µs"));
        let window = synced
            .and_then(|r| r.params["commit_window_us"].as_u64())
            .map_or_else(String::new, |w| {
                format!(" ({} ms group commit)", w as f64 / 1000.0)
            });
        let most = match sio {
            Some(y) => {
                let best = |f: Option<f64>| f.map(|f| y / f);
                let mut parts = Vec::new();
                if let Some(r) = best(plain) {
                    parts.push(format!("{r:.2}x with nothing stored"));
                }
                if let Some(r) = best(synced_us) {
                    parts.push(format!("{r:.2}x answering only once on disk"));
                }
                let floor = synced_us.or(plain).unwrap_or(0.0);
                let budget = y / TARGET;
                let verdict = if best(plain).is_some_and(|r| r < TARGET) {
                    "3x is beyond the kernel's own cost here".to_owned()
                } else if budget < floor {
                    "3x is beyond it for a server that syncs before answering".to_owned()
                } else {
                    let spends = sb.map_or_else(String::new, |x| {
                        format!(" (Switchboard spends {:.2})", x - floor)
                    });
                    format!(
                        "3x leaves {:.2} µs per delivery for all a server does beyond that{spends}",
                        budget - floor
                    )
                };
                format!("{}: {verdict}", parts.join(", "))
            }
            None => "- (no Socket.IO run)".to_owned(),
        };
        let _ = writeln!(
            s,
            "| {name} | {} | {} | {} | {}{window} | {} | {most} |",
            us(sio),
            us(sio.map(|y| y / TARGET)),
            us(plain),
            us(synced_us),
            us(sb),
        );
    }
    s.push_str(
        "\nA floor is one thread's `epoll` loop reading each message frame and writing it to \
         its recipients and an answer to its sender, nothing else; \"synced\" also appends each \
         group of messages to a file and `fdatasync`s it before writing them out.\n",
    );
    s
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::procfs::Usage;

    fn report(scenario: &str, protocol: &str, params: serde_json::Value, us: f64) -> Report {
        Report {
            scenario: scenario.into(),
            protocol: protocol.into(),
            params,
            server: Some(Usage {
                cpu_us_per_op: Some(us),
                ..Default::default()
            }),
            ..Default::default()
        }
    }

    #[test]
    fn says_which_ratio_the_floor_allows() {
        let rs = vec![
            report("dm", "socketio", serde_json::json!({}), 90.0),
            report("dm", "switchboard", serde_json::json!({}), 120.0),
            report(
                "msg_floor",
                "kernel",
                serde_json::json!({"recipients": 1, "durable": false}),
                25.0,
            ),
            report(
                "msg_floor",
                "kernel",
                serde_json::json!({"recipients": 1, "durable": true, "commit_window_us": 5000}),
                36.0,
            ),
            report("rooms", "socketio", serde_json::json!({}), 24.0),
            report(
                "msg_floor",
                "kernel",
                serde_json::json!({"recipients": 9, "durable": false}),
                10.0,
            ),
        ];
        let t = render(&rs);
        assert!(t.contains("| dm | 90.00 µs | 30.00 µs | 25.00 µs | 36.00 µs (5 ms group commit) | 120.00 µs | 3.60x with nothing stored, 2.50x answering only once on disk: 3x is beyond it for a server that syncs before answering |"), "{t}");
        let mut near = rs.clone();
        near[3].server.as_mut().unwrap().cpu_us_per_op = Some(27.5);
        let t = render(&near);
        assert!(t.contains("3.27x answering only once on disk: 3x leaves 2.50 µs per delivery for all a server does beyond that (Switchboard spends 92.50) |"), "{t}");
        assert!(t.contains("| rooms | 24.00 µs | 8.00 µs | 10.00 µs | - | - | 2.40x with nothing stored: 3x is beyond the kernel's own cost here |"), "{t}");
        assert!(render(&rs[..2]).is_empty());
    }
}
