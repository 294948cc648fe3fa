//! The connection-state-recovery offset of a Socket.IO socket, and the slots it counts in.
//!
//! A socket's conversations are numbered in the order it subscribed to them (its *slots*; slot
//! 0 is its own `user:<id>` stream). Each slot has a fixed start (the last seq the socket had
//! when the slot began) stored in the socket's `pid` record, so the offset only needs, per slot,
//! how far past its start the socket got: `delta = last seq received - start`.
//!
//! Encoding: the deltas in slot order, in lowercase base 36, joined by `.`; a zero delta is
//! written as nothing (except in the first place) and trailing zeros are left out. So a socket
//! that got 12 messages on its own stream and 3 in its second room has `c..3`; a fresh one `0`.
//! Every message raises one delta, so offsets never go backwards. The length is bounded by the
//! number of slots ([`MAX_SLOTS`]) times 13 characters, and is a few characters in the usual
//! case (a personal stream and a few rooms).
//!
//! An unsubscribed conversation keeps its slot (its delta stays in the offset; older offsets
//! stay readable), and subscribing to it again opens a new slot with a new start.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use switchboard_proto::Conv;

/// Slots one socket may open (subscriptions, unsubscriptions and subscriptions again). Past
/// it, the socket's recovery record is marked full and the socket is no longer recoverable.
pub const MAX_SLOTS: usize = 2048;

/// Slots up to which a socket's live slot is found by a scan rather than a map.
const INDEXED: usize = 16;

/// One conversation the socket holds or held, from its start.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Slot {
    /// The conversation.
    pub conv: Conv,
    /// The last seq the socket had when the slot began.
    pub start: u64,
    /// The conversation's epoch then.
    pub epoch: String,
    /// Whether the socket is still subscribed.
    pub live: bool,
}

/// A socket's slots and how far it got in each.
#[derive(Debug, Clone, Default)]
pub struct Slots {
    slots: Vec<Slot>,
    /// Deltas past each slot's start, in slot order.
    deltas: Vec<u64>,
    /// The live slot of each subscribed conversation, once there are more than [`INDEXED`]
    /// slots (below, a scan finds it: most sockets have one or a few, and an empty map
    /// allocates nothing; a `BTreeMap`, 24 bytes where a `HashMap` is 48, in every socket).
    live: BTreeMap<String, usize>,
    /// More slots were needed than [`MAX_SLOTS`]: recovery is off for this socket.
    full: bool,
    /// The slot the last message was counted in.
    last: usize,
}

impl Slots {
    /// Slots as a record holds them, with the deltas of an offset (`None`: all zero).
    pub fn restore(slots: Vec<Slot>, deltas: Option<Vec<u64>>) -> Slots {
        let mut deltas = deltas.unwrap_or_default();
        deltas.resize(slots.len(), 0);
        let mut restored = Slots {
            slots,
            deltas,
            live: BTreeMap::new(),
            full: false,
            last: 0,
        };
        restored.index();
        restored
    }

    /// The live slot of `conv`.
    fn find(&self, conv: &str) -> Option<usize> {
        if self.slots.len() <= INDEXED {
            self.slots
                .iter()
                .position(|s| s.live && s.conv.as_str() == conv)
        } else {
            self.live.get(conv).copied()
        }
    }

    /// Builds the map of live slots once there are more than [`INDEXED`] slots.
    fn index(&mut self) {
        if self.slots.len() > INDEXED && self.live.is_empty() {
            self.live = (self.slots.iter().enumerate())
                .filter(|(_, s)| s.live)
                .map(|(i, s)| (s.conv.as_str().to_owned(), i))
                .collect();
        }
    }

    /// The slots (for the record).
    pub fn slots(&self) -> &[Slot] {
        &self.slots
    }

    /// Whether the socket outgrew [`MAX_SLOTS`].
    pub fn is_full(&self) -> bool {
        self.full
    }

    /// The socket subscribed to `conv` having seq `start` (or, `moved`, moved an existing
    /// subscription there): a new slot. Subscribing again without moving keeps the slot.
    /// Returns whether the record changed.
    pub fn subscribed(&mut self, conv: &Conv, start: u64, epoch: &str, moved: bool) -> bool {
        if let Some(i) = self.find(conv.as_str()) {
            if !moved {
                return false;
            }
            let s = &self.slots[i];
            if s.start + self.deltas[i] == start && s.epoch == epoch {
                return false;
            }
            self.slots[i].live = false;
            self.live.remove(conv.as_str());
        }
        if self.slots.len() >= MAX_SLOTS {
            self.full = true;
            return true;
        }
        if !self.live.is_empty() {
            self.live.insert(conv.as_str().to_owned(), self.slots.len());
        }
        if self.slots.is_empty() {
            // Most sockets hold their personal stream only, for their whole life: room for one
            // (the vectors' default is four), growing as usual past it.
            self.slots.reserve_exact(1);
            self.deltas.reserve_exact(1);
        }
        self.slots.push(Slot {
            conv: conv.clone(),
            start,
            epoch: epoch.to_owned(),
            live: true,
        });
        self.deltas.push(0);
        self.index();
        true
    }

    /// The socket left `conv`. Returns whether the record changed.
    pub fn unsubscribed(&mut self, conv: &Conv) -> bool {
        match self.find(conv.as_str()) {
            Some(i) => {
                self.slots[i].live = false;
                self.live.remove(conv.as_str());
                true
            }
            None => false,
        }
    }

    /// The socket received `seq` of `conv`: its slot moves there. Returns `false` for a
    /// conversation with no live slot (the offset does not cover it).
    pub fn received(&mut self, conv: &str, seq: u64) -> bool {
        // Most messages are of the conversation the last one was of: no hashing then.
        let i = match self.slots.get(self.last) {
            Some(slot) if slot.live && slot.conv.as_str() == conv => self.last,
            _ => match self.find(conv) {
                Some(i) => {
                    self.last = i;
                    i
                }
                None => return false,
            },
        };
        let d = seq.saturating_sub(self.slots[i].start);
        if d > self.deltas[i] {
            self.deltas[i] = d;
        }
        true
    }

    /// The offset now (see the module comment for the encoding).
    pub fn offset(&self) -> String {
        let mut out = String::with_capacity(self.deltas.len() * 3);
        self.push_offset(&mut out);
        out
    }

    /// The offset as a JSON string (quoted: its digits and dots need no escaping), written
    /// into `out` (cleared first; its buffer is reused from one `message` event to the next).
    pub fn offset_json_into(&self, out: &mut String) {
        out.clear();
        out.push('"');
        self.push_offset(out);
        out.push('"');
    }

    fn push_offset(&self, out: &mut String) {
        let used = self
            .deltas
            .iter()
            .rposition(|d| *d != 0)
            .map_or(1, |i| i + 1);
        for (i, d) in self.deltas.iter().take(used).enumerate() {
            if i > 0 {
                out.push('.');
            }
            if *d != 0 || i == 0 {
                push_base36(out, *d);
            }
        }
    }

    /// The last seq the socket had of each live slot, with the slot's epoch.
    pub fn positions(&self) -> impl Iterator<Item = (&Conv, u64, &str)> {
        self.slots
            .iter()
            .zip(&self.deltas)
            .filter(|(s, _)| s.live)
            .map(|(s, d)| (&s.conv, s.start + d, s.epoch.as_str()))
    }
}

fn push_base36(out: &mut String, mut n: u64) {
    const DIGITS: &[u8; 36] = b"0123456789abcdefghijklmnopqrstuvwxyz";
    let mut buf = [0u8; 13];
    let mut i = buf.len();
    loop {
        i -= 1;
        buf[i] = DIGITS[(n % 36) as usize];
        n /= 36;
        if n == 0 {
            break;
        }
    }
    for b in &buf[i..] {
        let _ = out.write_char(char::from(*b));
    }
}

/// Reads an offset into its deltas; `None` if it is not one (or names more than `slots`).
pub fn parse(offset: &str, slots: usize) -> Option<Vec<u64>> {
    if offset.len() > MAX_SLOTS * 14 {
        return None;
    }
    let mut out = Vec::new();
    for piece in offset.split('.') {
        if out.len() >= slots {
            return None;
        }
        if piece.is_empty() {
            out.push(0);
        } else if piece.len() > 13 {
            return None;
        } else {
            out.push(u64::from_str_radix(piece, 36).ok()?);
        }
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn slots(n: usize) -> Slots {
        let mut s = Slots::default();
        for i in 0..n {
            s.subscribed(&Conv::room(&format!("r{i}")), 10, "e", false);
        }
        s
    }

    #[test]
    fn offsets_are_short_and_read_back() {
        let mut s = slots(4);
        assert_eq!(s.offset(), "0");
        s.received("room:r0", 22);
        assert_eq!(s.offset(), "c");
        s.received("room:r2", 13);
        assert_eq!(s.offset(), "c..3");
        let mut json = String::from("stale");
        s.offset_json_into(&mut json);
        assert_eq!(json, "\"c..3\"");
        assert_eq!(parse("c..3", 4), Some(vec![12, 0, 3]));
        let back = Slots::restore(s.slots().to_vec(), parse(&s.offset(), 4));
        assert_eq!(back.offset(), "c..3");
        let pos: Vec<u64> = back.positions().map(|(_, p, _)| p).collect();
        assert_eq!(pos, [22, 10, 13, 10]);
        // The last slot is remembered; another conversation, or one unsubscribed, is not it.
        s.received("room:r0", 23);
        s.received("room:r2", 14);
        assert!(s.unsubscribed(&Conv::room("r2")));
        assert!(!s.received("room:r2", 15));
        assert_eq!(s.offset(), "d..4");
    }

    /// Past [`INDEXED`] slots the live ones are found through the map, the same ones.
    #[test]
    fn many_slots_are_found_as_few_are() {
        let n = INDEXED + 4;
        let mut s = slots(n);
        assert!(s.live.len() == n);
        assert!(s.received(&format!("room:r{}", n - 1), 11));
        assert!(s.unsubscribed(&Conv::room("r3")));
        assert!(!s.received("room:r3", 12) && !s.unsubscribed(&Conv::room("r3")));
        assert!(s.subscribed(&Conv::room("r3"), 20, "e", false));
        assert!(s.received("room:r3", 21));
        let back = Slots::restore(s.slots().to_vec(), None);
        assert_eq!(back.live.len(), n);
        assert_eq!(back.find("room:r3"), Some(n));
        assert!(slots(2).live.is_empty(), "no map for a few slots");
    }

    #[test]
    fn offsets_never_go_backwards_and_resubscribing_opens_a_slot() {
        let mut s = slots(2);
        s.received("room:r1", 15);
        s.received("room:r1", 12);
        assert_eq!(s.offset(), "0.5");
        assert!(!s.received("room:nope", 3));
        assert!(s.unsubscribed(&Conv::room("r1")));
        assert!(!s.received("room:r1", 16), "no live slot once unsubscribed");
        assert!(s.subscribed(&Conv::room("r1"), 20, "e", false));
        s.received("room:r1", 21);
        assert_eq!(s.offset(), "0.5.1");
        assert_eq!(s.positions().count(), 2);
    }

    #[test]
    fn bad_offsets_are_refused() {
        assert_eq!(parse("0.1.2", 2), None, "more deltas than slots");
        assert_eq!(parse("zz!", 2), None);
        assert_eq!(parse("zzzzzzzzzzzzzz", 2), None, "overflow");
        assert_eq!(parse("", 1), Some(vec![0]));
        assert_eq!(parse(&"1.".repeat(20_000), 50_000), None, "too long");
    }

    #[test]
    fn slots_are_bounded() {
        let mut s = Slots::default();
        for i in 0..MAX_SLOTS + 3 {
            s.subscribed(&Conv::room(&format!("r{i}")), 0, "e", false);
        }
        assert!(s.is_full());
        assert_eq!(s.slots().len(), MAX_SLOTS);
    }
}
