//! The soak's figures: every acknowledged message checked against the ledger of each client
//! that must receive it, the ledgers' duplicate and order counts, and reconnect times.

use crate::clients::{SoakClient, lock};
use crate::publish::{Acked, Target};
use std::fmt::Write;

/// The counts the soak reports.
#[derive(Debug, Default, Clone)]
pub struct Figures {
    /// Messages acknowledged to their senders.
    pub acknowledged: u64,
    /// (message, recipient) pairs that must be delivered.
    pub expected: u64,
    /// Of those, delivered to the recipient's application.
    pub delivered: u64,
    /// Of those, not delivered.
    pub lost: u64,
    /// Messages handed to an application a second time.
    pub duplicated: u64,
    /// Messages handed over past a gap or late into one.
    pub out_of_order: u64,
    /// Resumes where the server said messages were gone.
    pub unrecovered_resumes: u64,
    /// Subscriptions the server ended.
    pub unsubscribed: u64,
    /// Clients whose session ended.
    pub ended_sessions: u64,
    /// Reconnects counted.
    pub reconnects: u64,
    /// Reconnect time percentiles in ms (p50, p99, max).
    pub reconnect_ms: (u64, u64, u64),
    /// Undelivered messages by (client, conversation): how many, and the first seq.
    pub lost_by: std::collections::BTreeMap<(usize, String), (u64, u64)>,
}

impl Figures {
    /// Whether the run broke a delivery promise.
    pub fn failed(&self) -> bool {
        self.lost > 0 || self.duplicated > 0 || self.out_of_order > 0
    }
}

/// The recipients of `a`.
fn recipients<'a>(a: &Acked, members: &'a [Vec<usize>], one: &'a mut [usize; 1]) -> &'a [usize] {
    match a.target {
        Target::Room(r) => members.get(r).map_or(&[], Vec::as_slice),
        Target::Client(c) => {
            one[0] = c;
            &one[..]
        }
    }
}

/// Counts everything; `members[r]` are the clients in room `r`.
pub fn count(clients: &[SoakClient], acked: &[Acked], members: &[Vec<usize>]) -> Figures {
    let ledgers: Vec<_> = clients.iter().map(|c| lock(&c.ledger).clone()).collect();
    let mut f = Figures {
        acknowledged: acked.len() as u64,
        ..Figures::default()
    };
    let mut one = [0usize; 1];
    for a in acked {
        for &c in recipients(a, members, &mut one) {
            f.expected += 1;
            if ledgers[c].delivered(&a.conv, a.seq) {
                f.delivered += 1;
            } else {
                f.lost += 1;
                let e = f
                    .lost_by
                    .entry((c, a.conv.to_string()))
                    .or_insert((0, a.seq));
                e.0 += 1;
                e.1 = e.1.min(a.seq);
            }
        }
    }
    let mut reconnects = Vec::new();
    for (c, l) in clients.iter().zip(&ledgers) {
        f.duplicated += l.duplicates;
        f.out_of_order += l.out_of_order;
        let s = lock(&c.seen);
        f.unrecovered_resumes += s.unrecovered;
        f.unsubscribed += s.unsubscribed;
        f.ended_sessions += u64::from(s.ended.is_some());
        reconnects.extend_from_slice(&s.reconnects_ms);
    }
    reconnects.sort_unstable();
    f.reconnects = reconnects.len() as u64;
    let at = |p: f64| {
        if reconnects.is_empty() {
            0
        } else {
            reconnects[((reconnects.len() as f64 * p) as usize).min(reconnects.len() - 1)]
        }
    };
    f.reconnect_ms = (at(0.5), at(0.99), reconnects.last().copied().unwrap_or(0));
    f
}

/// The figures as `name: value` lines.
pub fn lines(f: &Figures, publish_retries: u64, publish_failed: u64, settle_ms: u64) -> String {
    let mut out = String::new();
    let rows: [(&str, u64); 16] = [
        ("acknowledged", f.acknowledged),
        ("expected_deliveries", f.expected),
        ("delivered", f.delivered),
        ("lost", f.lost),
        ("duplicated", f.duplicated),
        ("out_of_order", f.out_of_order),
        ("unrecovered_resumes", f.unrecovered_resumes),
        ("unsubscribed", f.unsubscribed),
        ("ended_sessions", f.ended_sessions),
        ("publish_retries", publish_retries),
        ("publish_failed", publish_failed),
        ("reconnects", f.reconnects),
        ("reconnect_p50_ms", f.reconnect_ms.0),
        ("reconnect_p99_ms", f.reconnect_ms.1),
        ("reconnect_max_ms", f.reconnect_ms.2),
        ("settle_ms", settle_ms),
    ];
    for (name, value) in rows {
        let _ = writeln!(out, "{name}: {value}");
    }
    out
}
