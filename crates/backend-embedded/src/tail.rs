//! The stream index's tail: the stream entries of committed messages that are not yet in the
//! `entries` table, in memory, where history reads and positions find them.
//!
//! A direct message is in two streams, and each stream's entry is a row of `entries`, keyed by
//! (conversation, seq): a random leaf of the B-tree per entry. Written with the message, every
//! commit wrote one page per entry (a DM's whole storage cost: docs/PERFORMANCE.md, "twelfth
//! round"). So the writer commits only the message row, keeps the entries here, and writes them
//! later in sorted steps, one partition of the conversations at a time (the index module), where
//! a stream's entries since the last step share its leaf.
//!
//! **Why a read sees every committed message.** The writer adds a commit's entries here after
//! the commit and before any answer or delivery, and removes a partition's entries only after
//! the step that wrote them to `entries` committed. A read takes what it needs from here first,
//! then queries SQLite, whose snapshot is newer than that: an entry is in one of the two, or in
//! both (counted once). Within a conversation, entries are added and indexed in seq order, so
//! what a read sees of a conversation is its messages up to some seq, with no gap.
//!
//! **The count limit.** A step trims its conversations to the history limit, so a conversation
//! with entries here may still hold older messages than the limit keeps. Reads hide them
//! ([`Tail::floor_below`]): what a read returns is trimmed at once, what is stored at the next step.
//!
//! Partitions are by a hash of the conversation's name ([`partition`]), stable across
//! versions: the database records each partition's progress (`index_marks`), so a restart
//! indexes exactly what was left.

use parking_lot::Mutex;
use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use switchboard_proto::Conv;

/// Partitions of the conversations; one is indexed per step.
pub(crate) const PARTITIONS: usize = 64;

/// One stream entry: a message's seq in a stream and its `messages` row.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Entry {
    /// The message's seq in the stream.
    pub seq: u64,
    /// Its `messages.id`.
    pub id: i64,
}

/// Entries of `conv` for `seqs`, each in the row of the same number (tests).
#[cfg(test)]
pub(crate) fn entries_of(conv: &Conv, seqs: std::ops::Range<u64>) -> Vec<(Conv, Entry)> {
    seqs.map(|s| {
        (
            conv.clone(),
            Entry {
                seq: s,
                id: s as i64,
            },
        )
    })
    .collect()
}

/// The partition of `conv` among `parts`: FNV-1a of its name (a pure function, the same in
/// every build, unlike std's hasher).
pub(crate) fn partition(conv: &str, parts: usize) -> usize {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in conv.bytes() {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0000_0100_0000_01b3);
    }
    (h % parts.max(1) as u64) as usize
}

/// Unindexed entries by conversation, per partition (see the module comment).
pub(crate) struct Tail {
    parts: Vec<Mutex<HashMap<Conv, Vec<Entry>>>>,
    /// Entries held, in all.
    len: AtomicUsize,
    /// Entries held per partition.
    part_len: Vec<AtomicUsize>,
    /// Messages kept per conversation (0: all).
    limit: u64,
}

impl Default for Tail {
    fn default() -> Self {
        Tail::new(0)
    }
}

impl Tail {
    /// An empty tail for a backend that keeps `limit` messages per conversation (0: all).
    pub(crate) fn new(limit: u64) -> Tail {
        Tail {
            parts: (0..PARTITIONS).map(|_| Mutex::default()).collect(),
            len: AtomicUsize::new(0),
            part_len: (0..PARTITIONS).map(|_| AtomicUsize::new(0)).collect(),
            limit,
        }
    }

    /// The seq up to which the messages of a conversation whose newest unindexed seq is `last`
    /// are past the count limit but maybe still stored (reads hide them: see the module
    /// comment); 0 if none are.
    pub(crate) fn floor_below(&self, last: u64) -> u64 {
        if self.limit > 0 {
            last.saturating_sub(self.limit)
        } else {
            0
        }
    }

    fn part(&self, conv: &Conv) -> &Mutex<HashMap<Conv, Vec<Entry>>> {
        &self.parts[partition(conv.as_str(), PARTITIONS)]
    }

    /// Adds committed entries, each conversation's in seq order (called by the writer after a
    /// commit, before it answers).
    pub(crate) fn add(&self, entries: &[(Conv, Entry)]) {
        for (conv, entry) in entries {
            let part = partition(conv.as_str(), PARTITIONS);
            self.parts[part]
                .lock()
                .entry(conv.clone())
                .or_default()
                .push(*entry);
            self.part_len[part].fetch_add(1, Ordering::Relaxed);
        }
        self.len.fetch_add(entries.len(), Ordering::Relaxed);
    }

    /// The unindexed entries of `conv` with a seq in `(after, before)` and above its floor,
    /// ascending, and its floor ([`Tail::floor_below`]), read together.
    pub(crate) fn entries(
        &self,
        conv: &Conv,
        after: Option<u64>,
        before: Option<u64>,
    ) -> (u64, Vec<Entry>) {
        let part = self.part(conv).lock();
        let Some(list) = part.get(conv) else {
            return (0, Vec::new());
        };
        let floor = list.last().map_or(0, |e| self.floor_below(e.seq));
        let after = after.unwrap_or(0).max(floor);
        let entries = list
            .iter()
            .filter(|e| e.seq > after && before.is_none_or(|b| e.seq < b))
            .copied()
            .collect();
        (floor, entries)
    }

    /// The smallest and largest unindexed seq of `conv`, if it has any.
    pub(crate) fn bounds(&self, conv: &Conv) -> Option<(u64, u64)> {
        let part = self.part(conv).lock();
        let list = part.get(conv)?;
        Some((list.first()?.seq, list.last()?.seq))
    }

    /// Partition `part`'s entries, sorted by conversation then seq: what its next step writes.
    pub(crate) fn pending(&self, part: usize) -> Vec<(Conv, Entry)> {
        let map = self.parts[part].lock();
        let mut convs: Vec<(&Conv, &Vec<Entry>)> = map.iter().collect();
        convs.sort_unstable_by(|a, b| a.0.as_str().cmp(b.0.as_str()));
        convs
            .into_iter()
            .flat_map(|(conv, list)| list.iter().map(move |e| (conv.clone(), *e)))
            .collect()
    }

    /// Forgets partition `part`'s entries of rows up to `id`, now in `entries` (committed).
    pub(crate) fn indexed(&self, part: usize, id: i64) {
        let mut map = self.parts[part].lock();
        let mut gone = 0;
        map.retain(|_, list| {
            let before = list.len();
            list.retain(|e| e.id > id);
            gone += before - list.len();
            !list.is_empty()
        });
        self.part_len[part].fetch_sub(gone, Ordering::Relaxed);
        self.len.fetch_sub(gone, Ordering::Relaxed);
    }

    /// Whether partition `part` holds any entry.
    pub(crate) fn has_pending(&self, part: usize) -> bool {
        !self.parts[part].lock().is_empty()
    }

    /// The partition holding the most entries, and how many.
    pub(crate) fn fullest(&self) -> (usize, usize) {
        self.part_len
            .iter()
            .map(|n| n.load(Ordering::Relaxed))
            .enumerate()
            .max_by_key(|(_, n)| *n)
            .unwrap_or((0, 0))
    }

    /// Entries held, in all.
    pub(crate) fn len(&self) -> usize {
        self.len.load(Ordering::Relaxed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn e(seq: u64, id: i64) -> Entry {
        Entry { seq, id }
    }

    #[test]
    fn the_partition_function_is_fixed() {
        // Stored progress depends on it: these values must never change.
        assert_eq!(partition("", 64), (0xcbf2_9ce4_8422_2325u64 % 64) as usize);
        assert_eq!(partition("user:u00001", 64), partition("user:u00001", 64));
        let spread: std::collections::HashSet<usize> = (0..1000)
            .map(|i| partition(&format!("user:u{i:05}"), 64))
            .collect();
        assert_eq!(spread.len(), 64, "a thousand names reach every partition");
    }

    #[test]
    fn entries_are_found_by_range_and_forgotten_once_indexed() {
        let tail = Tail::default();
        let a = Conv::room("a");
        let b = Conv::user("b");
        tail.add(&[
            (a.clone(), e(1, 10)),
            (b.clone(), e(4, 10)),
            (a.clone(), e(2, 11)),
        ]);
        tail.add(&[(a.clone(), e(3, 12))]);
        assert_eq!(tail.len(), 4);
        assert_eq!(
            tail.entries(&a, None, None).1,
            [e(1, 10), e(2, 11), e(3, 12)]
        );
        assert_eq!(tail.entries(&a, Some(1), Some(3)).1, [e(2, 11)]);
        assert_eq!(tail.bounds(&a), Some((1, 3)));
        assert_eq!(tail.bounds(&Conv::room("none")), None);

        let part = partition(a.as_str(), PARTITIONS);
        let pending = tail.pending(part);
        assert!(
            pending
                .iter()
                .filter(|(c, _)| *c == a)
                .map(|(_, e)| e.seq)
                .eq([1, 2, 3])
        );
        tail.indexed(part, 11);
        assert_eq!(tail.entries(&a, None, None).1, [e(3, 12)]);
        tail.indexed(part, 12);
        assert_eq!(tail.bounds(&a), None);
        assert!(!tail.has_pending(part) || partition(b.as_str(), PARTITIONS) == part);
        assert_eq!(tail.entries(&b, None, None).1, [e(4, 10)]);
        assert_eq!(tail.fullest(), (partition(b.as_str(), PARTITIONS), 1));
        tail.indexed(partition(b.as_str(), PARTITIONS), 10);
        assert_eq!(tail.len(), 0);
        assert_eq!(tail.fullest().1, 0);
    }

    #[test]
    fn the_floor_hides_what_the_count_limit_trims() {
        let tail = Tail::new(3);
        let a = Conv::room("a");
        assert_eq!(tail.entries(&a, None, None).0, 0);
        tail.add(&[(a.clone(), e(2, 1)), (a.clone(), e(3, 2))]);
        assert_eq!(tail.entries(&a, None, None).0, 0, "at most the limit");
        tail.add(&[(a.clone(), e(7, 3))]);
        assert_eq!(tail.entries(&a, None, None).0, 4);
        assert_eq!(
            tail.entries(&a, None, None),
            (4, vec![e(7, 3)]),
            "read with the floor"
        );
        assert_eq!(Tail::new(0).entries(&a, None, None).0, 0, "no limit");
    }

    #[test]
    fn pending_is_sorted_by_conversation_then_seq() {
        let tail = Tail::default();
        // Names in one partition, added out of name order.
        let names: Vec<String> = (0..2000)
            .map(|i| format!("user:u{i}"))
            .filter(|n| partition(n, PARTITIONS) == 5)
            .take(3)
            .collect();
        let convs: Vec<Conv> = names
            .iter()
            .rev()
            .map(|n| Conv::parse(n).expect("name"))
            .collect();
        for (i, c) in convs.iter().enumerate() {
            tail.add(&[
                (c.clone(), e(1, i as i64)),
                (c.clone(), e(2, 10 + i as i64)),
            ]);
        }
        let got: Vec<(String, u64)> = tail
            .pending(5)
            .into_iter()
            .map(|(c, e)| (c.as_str().to_owned(), e.seq))
            .collect();
        let mut want: Vec<(String, u64)> = names
            .iter()
            .flat_map(|n| [(n.clone(), 1), (n.clone(), 2)])
            .collect();
        want.sort();
        assert_eq!(got, want);
    }
}
