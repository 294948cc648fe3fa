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
//!
//! Every `message` event carries the offset, so its text is kept ([`Slots::offset_json`]): a
//! message of the last slot in the text (a socket's room, or its own stream) changes only that
//! slot's digits, usually by one, which is a digit or two rewritten in place; anything else
//! writes the text again. [`Slots::offset`] is the plain encoder, and a test holds the kept text
//! to it.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use switchboard_proto::Conv;

/// Slots one socket may open (subscriptions, unsubscriptions and subscriptions again). Past
/// it, the socket's recovery record is marked full and the socket is no longer recoverable.
pub const MAX_SLOTS: usize = 2048;

/// Slots up to which a socket's live slot is found by a scan rather than a map.
const INDEXED: usize = 16;

/// [`Slots::text_slot`] when the kept text must be written again.
const STALE: u16 = u16::MAX;

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
#[derive(Debug, Clone)]
pub struct Slots {
    slots: Vec<Slot>,
    /// Deltas past each slot's start, in slot order.
    deltas: Vec<u64>,
    /// The live slot of each subscribed conversation, once there are more than [`INDEXED`]
    /// slots (below, a scan finds it: most sockets have one or a few). Boxed, and only once
    /// needed: 8 bytes in every socket, where an empty `BTreeMap` is 24 (a `HashMap` 48).
    #[allow(clippy::box_collection)] // on purpose: 8 bytes in every socket, not 24
    live: Option<Box<BTreeMap<String, usize>>>,
    /// The offset as a JSON string (quoted), current unless `text_slot` is [`STALE`].
    text: String,
    /// The last slot written in `text`: every slot after it has a zero delta, and a change of
    /// this slot's delta alone changes only its digits, at the end of the text.
    text_slot: u16,
    /// Where that slot's digits begin in `text`.
    text_digits: u16,
    /// The slot the last message was counted in.
    last: u16,
    /// More slots were needed than [`MAX_SLOTS`]: recovery is off for this socket.
    full: bool,
}

impl Default for Slots {
    fn default() -> Slots {
        Slots {
            slots: Vec::new(),
            deltas: Vec::new(),
            live: None,
            text: String::new(),
            text_slot: STALE,
            text_digits: 0,
            last: 0,
            full: false,
        }
    }
}

impl Slots {
    /// Slots as a record holds them, with the deltas of an offset (`None`: all zero).
    pub fn restore(slots: Vec<Slot>, deltas: Option<Vec<u64>>) -> Slots {
        let mut deltas = deltas.unwrap_or_default();
        deltas.resize(slots.len(), 0);
        let mut restored = Slots {
            slots,
            deltas,
            ..Slots::default()
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
            self.live.as_ref().and_then(|m| m.get(conv).copied())
        }
    }

    /// Builds the map of live slots once there are more than [`INDEXED`] slots.
    fn index(&mut self) {
        if self.slots.len() > INDEXED && self.live.as_ref().is_none_or(|m| m.is_empty()) {
            self.live = Some(Box::new(
                (self.slots.iter().enumerate())
                    .filter(|(_, s)| s.live)
                    .map(|(i, s)| (s.conv.as_str().to_owned(), i))
                    .collect(),
            ));
        }
    }

    /// `conv` has no live slot any more: out of the map, if there is one.
    fn unindex(&mut self, conv: &str) {
        if let Some(live) = &mut self.live {
            live.remove(conv);
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
        // A new slot's delta is zero, which changes the text only for a socket's first slot
        // (no slot: ``; one: `0`): marked for all, subscriptions being rare.
        self.text_slot = STALE;
        if let Some(i) = self.find(conv.as_str()) {
            if !moved {
                return false;
            }
            let s = &self.slots[i];
            if s.start + self.deltas[i] == start && s.epoch == epoch {
                return false;
            }
            self.slots[i].live = false;
            self.unindex(conv.as_str());
        }
        if self.slots.len() >= MAX_SLOTS {
            self.full = true;
            return true;
        }
        if let Some(live) = self.live.as_mut().filter(|m| !m.is_empty()) {
            live.insert(conv.as_str().to_owned(), self.slots.len());
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
        self.text_slot = STALE;
        match self.find(conv.as_str()) {
            Some(i) => {
                self.slots[i].live = false;
                self.unindex(conv.as_str());
                true
            }
            None => false,
        }
    }

    /// The socket received `seq` of `conv`: its slot moves there. Returns `false` for a
    /// conversation with no live slot (the offset does not cover it).
    pub fn received(&mut self, conv: &str, seq: u64) -> bool {
        // Most messages are of the conversation the last one was of: no hashing then.
        let last = usize::from(self.last);
        let i = match self.slots.get(last) {
            Some(slot) if slot.live && slot.conv.as_str() == conv => last,
            _ => match self.find(conv) {
                Some(i) => {
                    // Below MAX_SLOTS, which fits.
                    self.last = u16::try_from(i).unwrap_or(0);
                    i
                }
                None => return false,
            },
        };
        let d = seq.saturating_sub(self.slots[i].start);
        let was = self.deltas[i];
        if d > was {
            self.deltas[i] = d;
            if self.text_slot != STALE && usize::from(self.text_slot) == i {
                self.text_digits_changed(was, d);
            } else {
                self.text_slot = STALE;
            }
        }
        true
    }

    /// The last slot in the kept text went from delta `was` to `now`: its digits, at the end.
    fn text_digits_changed(&mut self, was: u64, now: u64) {
        self.text.pop(); // the closing quote
        if now == was + 1 {
            // Counting up in base 36: the last digit that is not `z` goes up by one, and the
            // `z`s after it become `0`s (all `z`s: a `1` in front of them).
            let mut zeros = 0;
            loop {
                if self.text.len() == usize::from(self.text_digits) {
                    self.text.push('1');
                    break;
                }
                match self.text.pop() {
                    Some('z') => zeros += 1,
                    Some('9') => {
                        self.text.push('a');
                        break;
                    }
                    Some(c) => {
                        self.text.push(char::from(c as u8 + 1));
                        break;
                    }
                    None => break,
                }
            }
            // Rarely any (a carry past `z`): no call for none, whatever the compiler inlines.
            if zeros > 0 {
                self.text.extend(std::iter::repeat_n('0', zeros));
            }
        } else {
            self.text.truncate(usize::from(self.text_digits));
            push_base36(&mut self.text, now);
        }
        self.text.push('"');
    }

    /// The offset now (see the module comment for the encoding).
    pub fn offset(&self) -> String {
        let mut out = String::with_capacity(self.deltas.len() * 3);
        self.push_offset(&mut out);
        out
    }

    /// The offset as a JSON string (quoted: its digits and dots need no escaping), kept from
    /// one call to the next (see the module comment).
    pub fn offset_json(&mut self) -> &str {
        if self.text_slot == STALE {
            let mut text = std::mem::take(&mut self.text);
            text.clear();
            text.push('"');
            let last = self.push_offset(&mut text);
            text.push('"');
            self.text = text;
            // The text is at most 28,673 bytes (MAX_SLOTS deltas of 13 digits, their dots,
            // two quotes), which fits; were it not, it would be
            // written again every time.
            if let (Ok(slot), Ok(digits)) = (u16::try_from(last.0), u16::try_from(last.1)) {
                self.text_slot = slot;
                self.text_digits = digits;
            }
        }
        &self.text
    }

    /// Writes the offset into `out`; returns its last slot and where that slot's digits begin.
    fn push_offset(&self, out: &mut String) -> (usize, usize) {
        let used = self
            .deltas
            .iter()
            .rposition(|d| *d != 0)
            .map_or(1, |i| i + 1);
        let mut digits = out.len();
        for (i, d) in self.deltas.iter().take(used).enumerate() {
            if i > 0 {
                out.push('.');
            }
            digits = out.len();
            if *d != 0 || i == 0 {
                push_base36(out, *d);
            }
        }
        (used - 1, digits)
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
#[path = "offset_tests.rs"]
mod tests;
