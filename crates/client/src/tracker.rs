//! Per-conversation positions: the exactly-once, in-order filter between the wire and the
//! application. No IO: the driver feeds it frames and carries out the actions it returns, which
//! keeps the rules (drop repeats, fill gaps from history, resume decisions) unit-testable.

use crate::Message;
use std::collections::BTreeMap;

/// Largest history page the server gives (the driver asks for pages of this size).
pub(crate) const FILL_PAGE: u32 = 500;

/// What the driver must do after the tracker saw something.
#[derive(Debug, PartialEq)]
pub(crate) enum Action {
    /// Hand this message to the application.
    Deliver(Message),
    /// Fetch `conv`'s messages with `after < seq < before` (a `history` request), then call
    /// [`Tracker::on_fill`] with the answer (or [`Tracker::on_fill_failed`]).
    Fetch {
        conv: String,
        after: u64,
        before: u64,
    },
}

/// A gap being filled: live messages are held back until history answered.
#[derive(Debug)]
struct Fill {
    held: Vec<Message>,
}

#[derive(Debug)]
struct ConvState {
    epoch: String,
    /// Last seq handed to the application.
    last: u64,
    fill: Option<Fill>,
}

/// The positions of every subscribed conversation.
#[derive(Debug, Default)]
pub(crate) struct Tracker {
    convs: BTreeMap<String, ConvState>,
}

impl Tracker {
    /// `(epoch, last seq delivered)` of a tracked conversation.
    pub fn position(&self, conv: &str) -> Option<(String, u64)> {
        self.convs.get(conv).map(|s| (s.epoch.clone(), s.last))
    }

    /// Whether `conv` is tracked (subscribed, with a known position).
    pub fn is_tracked(&self, conv: &str) -> bool {
        self.convs.contains_key(conv)
    }

    /// Every tracked conversation with its position: what to resume after a reconnect.
    pub fn positions(&self) -> BTreeMap<String, (String, u64)> {
        self.convs
            .iter()
            .map(|(c, s)| (c.clone(), (s.epoch.clone(), s.last)))
            .collect()
    }

    /// A fresh subscription answered `subscribed`: live messages after `head_seq` follow. An
    /// already tracked conversation keeps its position (a repeated `subscribe` changes nothing).
    pub fn on_subscribed(&mut self, conv: &str, head_seq: u64, epoch: &str) {
        self.convs
            .entry(conv.to_owned())
            .or_insert_with(|| ConvState {
                epoch: epoch.to_owned(),
                last: head_seq,
                fill: None,
            });
    }

    /// The conversation is no longer subscribed: forget it (later frames of it are dropped).
    pub fn remove(&mut self, conv: &str) {
        self.convs.remove(conv);
    }

    /// A resumed conversation's entry in `welcome.resumed`. When not recovered (another epoch,
    /// trimmed history, a position the server does not know), the server sends everything from
    /// `from_seq`: the position moves there, whatever it was.
    pub fn on_resumed(&mut self, conv: &str, recovered: bool, from_seq: u64, epoch: &str) {
        let Some(s) = self.convs.get_mut(conv) else {
            return;
        };
        if !recovered || s.epoch != epoch {
            s.last = from_seq.saturating_sub(1);
            s.epoch = epoch.to_owned();
        }
    }

    /// The connection ended: messages held for a gap are dropped (resuming from the last
    /// delivered seq brings them back).
    pub fn on_disconnect(&mut self) {
        for s in self.convs.values_mut() {
            s.fill = None;
        }
    }

    /// A `message` frame arrived.
    pub fn on_message(&mut self, m: Message) -> Vec<Action> {
        let mut out = Vec::new();
        self.take(m, &mut out);
        out
    }

    fn take(&mut self, m: Message, out: &mut Vec<Action>) {
        let Some(s) = self.convs.get_mut(&m.conv) else {
            tracing::debug!(conv = %m.conv, seq = m.seq, "message of an untracked conversation dropped");
            return;
        };
        if let Some(fill) = &mut s.fill {
            fill.held.push(m);
            return;
        }
        if m.seq <= s.last {
            tracing::trace!(conv = %m.conv, seq = m.seq, "repeat dropped");
            return;
        }
        if m.seq == s.last + 1 {
            s.last = m.seq;
            out.push(Action::Deliver(m));
            return;
        }
        // A jump on a live subscription: fetch what is missing first, hold this one back.
        let (after, before) = (s.last, m.seq);
        let conv = m.conv.clone();
        s.fill = Some(Fill { held: vec![m] });
        out.push(Action::Fetch {
            conv,
            after,
            before,
        });
    }

    /// History answered a [`Action::Fetch`] of `conv`: deliver what fills the gap, then the
    /// held messages. A full page, or one the server cut short by its byte cap (`more`), that did
    /// not reach the held message asks for the next page.
    pub fn on_fill(&mut self, conv: &str, mut page: Vec<Message>, more: bool) -> Vec<Action> {
        let mut out = Vec::new();
        let Some(s) = self.convs.get_mut(conv) else {
            return out;
        };
        let Some(fill) = &s.fill else {
            return out;
        };
        let before = fill.held.first().map(|m| m.seq).unwrap_or(u64::MAX);
        let full = more || page.len() >= FILL_PAGE as usize;
        page.sort_by_key(|m| m.seq);
        for m in page {
            if m.conv == conv && m.seq > s.last && m.seq < before {
                s.last = m.seq;
                out.push(Action::Deliver(m));
            }
        }
        if full && s.last + 1 < before {
            out.push(Action::Fetch {
                conv: conv.to_owned(),
                after: s.last,
                before,
            });
            return out;
        }
        self.release(conv, &mut out);
        out
    }

    /// The history request of a fill failed: accept the jump (nothing better can be done on
    /// this connection) and go on.
    pub fn on_fill_failed(&mut self, conv: &str) -> Vec<Action> {
        let mut out = Vec::new();
        self.release(conv, &mut out);
        out
    }

    /// Ends a fill: the first held message is delivered even if a gap remains (history no
    /// longer has it), the others go through the normal path again.
    fn release(&mut self, conv: &str, out: &mut Vec<Action>) {
        let Some(s) = self.convs.get_mut(conv) else {
            return;
        };
        let Some(fill) = s.fill.take() else {
            return;
        };
        let mut held = fill.held.into_iter();
        if let Some(first) = held.next()
            && first.seq > s.last
        {
            if first.seq > s.last + 1 {
                tracing::warn!(
                    conv,
                    from = s.last + 1,
                    to = first.seq - 1,
                    "messages missing from history; skipping them"
                );
            }
            s.last = first.seq;
            out.push(Action::Deliver(first));
        }
        for m in held {
            self.take(m, out);
        }
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use serde_json::json;

    /// A message of `conv` at `seq` (also for the driver's tests).
    pub(crate) fn msg(conv: &str, seq: u64) -> Message {
        Message {
            conv: conv.into(),
            seq,
            message_id: format!("m_{seq}"),
            from: None,
            to: None,
            ts: 0,
            client_msg_id: None,
            body: json!(seq),
        }
    }

    fn seqs(actions: &[Action]) -> Vec<u64> {
        actions
            .iter()
            .filter_map(|a| match a {
                Action::Deliver(m) => Some(m.seq),
                _ => None,
            })
            .collect()
    }

    #[test]
    fn in_order_messages_pass_and_repeats_are_dropped() {
        let mut t = Tracker::default();
        t.on_subscribed("room:a", 3, "e1");
        let mut got = Vec::new();
        for s in [3, 4, 5, 4, 5, 6, 2] {
            got.extend(seqs(&t.on_message(msg("room:a", s))));
        }
        assert_eq!(got, vec![4, 5, 6]);
        assert_eq!(t.position("room:a"), Some(("e1".into(), 6)));
        // Untracked conversations are dropped.
        assert!(t.on_message(msg("room:b", 1)).is_empty());
    }

    #[test]
    fn a_gap_is_filled_from_history_before_later_messages() {
        let mut t = Tracker::default();
        t.on_subscribed("room:a", 2, "e");
        let a = t.on_message(msg("room:a", 6));
        assert_eq!(
            a,
            vec![Action::Fetch {
                conv: "room:a".into(),
                after: 2,
                before: 6
            }]
        );
        // Live messages arriving meanwhile are held, repeats included.
        assert!(t.on_message(msg("room:a", 7)).is_empty());
        assert!(t.on_message(msg("room:a", 6)).is_empty());
        // History answers 3..5 (plus a stray repeat of 2).
        let page = vec![
            msg("room:a", 2),
            msg("room:a", 3),
            msg("room:a", 4),
            msg("room:a", 5),
        ];
        let got = seqs(&t.on_fill("room:a", page, false));
        assert_eq!(got, vec![3, 4, 5, 6, 7]);
        assert_eq!(t.position("room:a").unwrap().1, 7);
        assert_eq!(seqs(&t.on_message(msg("room:a", 8))), vec![8]);
    }

    #[test]
    fn a_second_gap_among_held_messages_starts_another_fill() {
        let mut t = Tracker::default();
        t.on_subscribed("room:a", 0, "e");
        t.on_message(msg("room:a", 3));
        t.on_message(msg("room:a", 6));
        let a = t.on_fill("room:a", vec![msg("room:a", 1), msg("room:a", 2)], false);
        assert_eq!(seqs(&a), vec![1, 2, 3]);
        assert_eq!(
            a.last(),
            Some(&Action::Fetch {
                conv: "room:a".into(),
                after: 3,
                before: 6
            })
        );
        let a = t.on_fill("room:a", vec![msg("room:a", 4), msg("room:a", 5)], false);
        assert_eq!(seqs(&a), vec![4, 5, 6]);
    }

    #[test]
    fn a_full_page_asks_for_the_next_one() {
        let mut t = Tracker::default();
        t.on_subscribed("room:a", 0, "e");
        t.on_message(msg("room:a", 1000));
        let page: Vec<Message> = (1..=500).map(|s| msg("room:a", s)).collect();
        let a = t.on_fill("room:a", page, false);
        assert_eq!(seqs(&a).len(), 500);
        assert_eq!(
            a.last(),
            Some(&Action::Fetch {
                conv: "room:a".into(),
                after: 500,
                before: 1000
            })
        );
        let page: Vec<Message> = (501..1000).map(|s| msg("room:a", s)).collect();
        let a = t.on_fill("room:a", page, false);
        assert_eq!(seqs(&a), (501..=1000).collect::<Vec<_>>());
    }

    #[test]
    fn a_page_cut_short_by_the_byte_cap_asks_for_the_rest() {
        let mut t = Tracker::default();
        t.on_subscribed("room:a", 0, "e");
        t.on_message(msg("room:a", 10));
        let a = t.on_fill("room:a", vec![msg("room:a", 1), msg("room:a", 2)], true);
        assert_eq!(seqs(&a), vec![1, 2], "the held message waits for the rest");
        assert_eq!(
            a.last(),
            Some(&Action::Fetch {
                conv: "room:a".into(),
                after: 2,
                before: 10
            })
        );
        let page: Vec<Message> = (3..10).map(|s| msg("room:a", s)).collect();
        let a = t.on_fill("room:a", page, false);
        assert_eq!(seqs(&a), (3..=10).collect::<Vec<_>>());
    }

    #[test]
    fn history_that_lost_the_gap_or_failed_lets_the_jump_through() {
        let mut t = Tracker::default();
        t.on_subscribed("room:a", 1, "e");
        t.on_message(msg("room:a", 5));
        t.on_message(msg("room:a", 6));
        // History was trimmed: only 4 is left.
        assert_eq!(
            seqs(&t.on_fill("room:a", vec![msg("room:a", 4)], false)),
            vec![4, 5, 6]
        );
        t.on_message(msg("room:a", 9));
        assert_eq!(seqs(&t.on_fill_failed("room:a")), vec![9]);
    }

    #[test]
    fn disconnect_drops_held_messages_and_resume_moves_the_position() {
        let mut t = Tracker::default();
        t.on_subscribed("room:a", 4, "e1");
        t.on_message(msg("room:a", 9));
        t.on_disconnect();
        assert_eq!(t.position("room:a").unwrap().1, 4);
        // After the reconnect the fill's answer is stale and ignored.
        assert!(
            t.on_fill("room:a", vec![msg("room:a", 5)], false)
                .is_empty()
        );
        // Recovered in the same epoch: nothing moves.
        t.on_resumed("room:a", true, 5, "e1");
        assert_eq!(t.position("room:a"), Some(("e1".into(), 4)));
        // History lost (new epoch): everything from from_seq is the new truth.
        t.on_resumed("room:a", false, 1, "e2");
        assert_eq!(t.position("room:a"), Some(("e2".into(), 0)));
        assert_eq!(seqs(&t.on_message(msg("room:a", 1))), vec![1]);
        // Trimmed history in the same epoch: the position jumps forward.
        t.on_resumed("room:a", false, 40, "e2");
        assert_eq!(seqs(&t.on_message(msg("room:a", 40))), vec![40]);
    }

    #[test]
    fn repeated_subscribe_keeps_the_position() {
        let mut t = Tracker::default();
        t.on_subscribed("room:a", 3, "e");
        t.on_message(msg("room:a", 4));
        t.on_subscribed("room:a", 10, "e");
        assert_eq!(t.position("room:a").unwrap().1, 4);
        t.remove("room:a");
        assert!(!t.is_tracked("room:a"));
    }
}
