//! Tests of the offset and its slots: the encoding and its reading back, slots found by scan
//! and by map, offsets that never go backwards, the bounds, and the kept text against the plain
//! encoder.

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
    assert_eq!(s.offset_json(), "\"c..3\"");
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
    assert!(s.live.as_ref().map(|m| m.len()) == Some(n));
    assert!(s.received(&format!("room:r{}", n - 1), 11));
    assert!(s.unsubscribed(&Conv::room("r3")));
    assert!(!s.received("room:r3", 12) && !s.unsubscribed(&Conv::room("r3")));
    assert!(s.subscribed(&Conv::room("r3"), 20, "e", false));
    assert!(s.received("room:r3", 21));
    let back = Slots::restore(s.slots().to_vec(), None);
    assert_eq!(back.live.as_ref().map(|m| m.len()), Some(n));
    assert_eq!(back.find("room:r3"), Some(n));
    assert!(slots(2).live.is_none(), "no map for a few slots");
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

/// The kept text is always what the plain encoder writes, through counting up (carries
/// included), small and large jumps, repeats, unknown conversations, the socket's own stream
/// (slot 0, from `0`), new slots, unsubscriptions and restores.
#[test]
fn the_kept_text_is_the_offset() {
    let mut rng: u64 = 0x9e37_79b9_7f4a_7c15;
    let mut next = |n: u64| {
        rng ^= rng << 13;
        rng ^= rng >> 7;
        rng ^= rng << 17;
        rng % n
    };
    // Conversations 0-7 are rooms, 8 the socket's own stream.
    let name = |r: usize| {
        if r == 8 {
            "user:u".to_owned()
        } else {
            format!("room:r{r}")
        }
    };
    let mut s = Slots::default();
    assert_eq!(s.offset_json(), "\"\"", "no slot yet");
    s.subscribed(&Conv::user("u"), 0, "e", false);
    assert_eq!(s.offset_json(), "\"0\"");
    let mut seqs = [0u64; 9];
    for step in 0..50_000 {
        let r = next(9) as usize;
        let room = Conv::room(&format!("r{}", r % 8));
        match next(100) {
            0 => {
                let moved = next(2) == 0;
                s.subscribed(&room, seqs[r % 8], "e", moved);
            }
            1 => {
                s.unsubscribed(&room);
            }
            2 => {
                s = Slots::restore(s.slots().to_vec(), parse(&s.offset(), MAX_SLOTS));
            }
            3..=9 => {
                seqs[r] += next(2_000_000);
                s.received(&name(r), seqs[r]);
            }
            10..=14 => {
                s.received(&name(r), seqs[r].saturating_sub(next(3)));
            }
            15..=19 => {
                s.received("room:unknown", seqs[r]);
            }
            20..=34 => {
                // A small gap: messages the socket did not get (another node's, say).
                seqs[r] += 2 + next(40);
                s.received(&name(r), seqs[r]);
            }
            _ => {
                // Mostly the next message of a conversation, in runs: a room, or the socket's
                // own stream.
                let r = match next(4) {
                    0 => r,
                    1 => 8,
                    _ => 0,
                };
                seqs[r] += 1;
                s.received(&name(r), seqs[r]);
            }
        }
        let plain = format!("\"{}\"", s.offset());
        assert_eq!(s.offset_json(), plain, "step {step}");
    }
    // Carries across every digit.
    let mut s = slots(2);
    for seq in [
        10 + 35,
        10 + 36,
        10 + 36 * 36 - 1,
        10 + 36 * 36,
        10 + 36 * 36 + 1,
    ] {
        s.received("room:r1", seq - 1);
        s.offset_json();
        s.received("room:r1", seq);
        let plain = format!("\"{}\"", s.offset());
        assert_eq!(s.offset_json(), plain);
    }
    assert_eq!(s.offset_json(), "\"0.101\"");
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
