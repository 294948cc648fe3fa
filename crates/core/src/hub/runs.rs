//! A batch of messages (a commit's, or what waited for the embedded bus) put in runs, one per
//! conversation, so that a subscriber gets a conversation's new messages in one write.

use std::sync::Arc;
use switchboard_proto::Message;

/// How many of the latest conversations the hub looks back at to put a message
/// with the others of its conversation: enough for a few publishers interleaved in one commit,
/// and a bounded cost for a commit of DMs, each to a conversation of its own.
pub(super) const RUN_LOOKBACK: usize = 8;

/// Orders `messages` so that each conversation's are together, in seq order, where the same
/// conversation is among the [`RUN_LOOKBACK`] latest seen (the order between conversations is
/// not promised); returns where each run ends, or `None` when no two were put together.
pub(super) fn gather_runs(messages: &mut Vec<Arc<Message>>) -> Option<Vec<usize>> {
    // The index of each run's first message, and each message's run.
    let mut firsts: Vec<usize> = Vec::new();
    let mut run_of: Vec<u32> = Vec::with_capacity(messages.len());
    for (i, m) in messages.iter().enumerate() {
        let found = (firsts.len().saturating_sub(RUN_LOOKBACK)..firsts.len())
            .rev()
            .find(|&r| messages[firsts[r]].conv == m.conv);
        run_of.push(match found {
            Some(r) => r as u32,
            None => {
                firsts.push(i);
                (firsts.len() - 1) as u32
            }
        });
    }
    if firsts.len() == messages.len() {
        return None;
    }
    let mut tagged: Vec<(u32, Arc<Message>)> = run_of.into_iter().zip(messages.drain(..)).collect();
    // Stable: a run keeps its messages' order.
    tagged.sort_by_key(|(r, _)| *r);
    let mut ends = Vec::with_capacity(firsts.len());
    let mut tagged = tagged.into_iter().peekable();
    while let Some((r, m)) = tagged.next() {
        messages.push(m);
        if tagged.peek().is_none_or(|(next, _)| *next != r) {
            ends.push(messages.len());
        }
    }
    Some(ends)
}
