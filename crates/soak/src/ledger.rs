//! What one client's application was handed, per conversation: the check that delivery is
//! exactly once and in seq order, and the question "was `(conv, seq)` delivered?".
//!
//! The SDK promises each `(conv, seq)` once and in seq order, from the subscription's head on.
//! A [`Ledger`] records every message the application receives and counts each breach:
//! a seq already delivered is a duplicate; a seq past the next expected one (a gap), and a
//! seq that fills such a gap later, are out of order. Seqs skipped by a gap are remembered
//! so that a message arriving late counts as out of order, not as a duplicate, and still
//! counts as delivered.

use std::collections::{BTreeSet, HashMap};

/// One conversation's delivery record.
#[derive(Debug, Clone)]
struct Conv {
    /// The seq that should come next.
    next: u64,
    /// Seqs below `next` that were skipped by a gap and not delivered (yet).
    skipped: BTreeSet<u64>,
}

/// Gaps remembered per conversation at most, so a broken run cannot eat the memory.
const MAX_SKIPPED: u64 = 100_000;

/// What one client was handed, over all its conversations.
#[derive(Debug, Default, Clone)]
pub struct Ledger {
    convs: HashMap<String, Conv>,
    /// Messages handed over (every one, duplicates included).
    pub received: u64,
    /// `(conv, seq)` handed over a second time.
    pub duplicates: u64,
    /// Messages handed over past a gap, or late into one.
    pub out_of_order: u64,
}

impl Ledger {
    /// Starts tracking `conv` with `head` the last seq before the subscription (its messages
    /// are expected from `head + 1` on). Tracking an already tracked conversation changes
    /// nothing.
    pub fn track(&mut self, conv: &str, head: u64) {
        self.convs.entry(conv.to_owned()).or_insert(Conv {
            next: head + 1,
            skipped: BTreeSet::new(),
        });
    }

    /// Records a message handed to the application. A conversation not tracked yet is
    /// tracked from this message on.
    pub fn record(&mut self, conv: &str, seq: u64) {
        self.received += 1;
        let c = self.convs.entry(conv.to_owned()).or_insert(Conv {
            next: seq,
            skipped: BTreeSet::new(),
        });
        if seq == c.next {
            c.next += 1;
        } else if seq > c.next {
            self.out_of_order += 1;
            let gap_end = seq.min(c.next.saturating_add(MAX_SKIPPED));
            c.skipped.extend(c.next..gap_end);
            c.next = seq + 1;
        } else if c.skipped.remove(&seq) {
            self.out_of_order += 1;
        } else {
            self.duplicates += 1;
        }
    }

    /// Whether `(conv, seq)` was handed to the application.
    pub fn delivered(&self, conv: &str, seq: u64) -> bool {
        self.convs
            .get(conv)
            .is_some_and(|c| seq < c.next && !c.skipped.contains(&seq))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn in_order_delivery_breaks_nothing() {
        let mut l = Ledger::default();
        l.track("room:a", 0);
        for s in 1..=5 {
            l.record("room:a", s);
        }
        assert_eq!((l.received, l.duplicates, l.out_of_order), (5, 0, 0));
        assert!(l.delivered("room:a", 5));
        assert!(!l.delivered("room:a", 6));
        assert!(!l.delivered("room:b", 1));
    }

    #[test]
    fn a_repeat_is_a_duplicate() {
        let mut l = Ledger::default();
        l.track("c", 0);
        for s in [1, 2, 2, 3, 1] {
            l.record("c", s);
        }
        assert_eq!((l.duplicates, l.out_of_order), (2, 0));
    }

    #[test]
    fn a_gap_and_its_late_fill_are_out_of_order_and_the_late_one_still_counts() {
        let mut l = Ledger::default();
        l.track("c", 0);
        for s in [1, 4, 5] {
            l.record("c", s);
        }
        assert_eq!(l.out_of_order, 1);
        assert!(!l.delivered("c", 2) && !l.delivered("c", 3) && l.delivered("c", 4));
        l.record("c", 2);
        assert_eq!((l.duplicates, l.out_of_order), (0, 2));
        assert!(l.delivered("c", 2) && !l.delivered("c", 3));
        l.record("c", 2);
        assert_eq!(
            l.duplicates, 1,
            "a second copy of a late one is a duplicate"
        );
    }

    #[test]
    fn tracking_starts_after_the_head() {
        let mut l = Ledger::default();
        l.track("c", 10);
        l.record("c", 11);
        assert_eq!((l.duplicates, l.out_of_order), (0, 0));
        l.track("c", 0);
        l.record("c", 12);
        assert_eq!(l.out_of_order, 0, "tracking again changed nothing");
    }
}
