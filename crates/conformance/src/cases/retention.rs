//! Position and retention cases: head, oldest available seq, epoch, trimming by count.

use crate::util::{append, append_n, keyed, read_history, req, seqs};
use crate::{BackendFactory, RecordingSink};
use switchboard_core::backend::Backend;
use switchboard_proto::Conv;

async fn pos(b: &Backend, conv: &Conv) -> switchboard_core::backend::Position {
    b.broker
        .position(conv)
        .await
        .unwrap_or_else(|e| panic!("position of {conv} failed: {e}"))
}

/// Position: an empty conversation has head 0 and oldest 1; appends move the head; the epoch
/// is not empty and does not change while history is kept.
pub async fn position(factory: &dyn BackendFactory) {
    let b = factory.make(RecordingSink::new()).await;
    let conv = Conv::room("pos");
    let empty = pos(&b, &conv).await;
    assert_eq!(
        (empty.head_seq, empty.oldest_seq),
        (0, 1),
        "empty conversation"
    );
    assert!(!empty.epoch.is_empty(), "the epoch is not empty");

    append_n(&b, &conv, 3).await;
    let p = pos(&b, &conv).await;
    assert_eq!((p.head_seq, p.oldest_seq), (3, 1), "after 3 appends");
    assert_eq!(p.epoch, empty.epoch, "the epoch is stable");
    let other = pos(&b, &Conv::user("someone")).await;
    assert_eq!(
        (other.head_seq, other.oldest_seq),
        (0, 1),
        "conversations are independent"
    );
    b.lifecycle.close().await;
}

/// With a history limit of 5, a conversation keeps exactly its latest 5 messages; position shows
/// the trimmed start; the head never goes back; idempotency outlives trimming.
pub async fn retention_by_count(factory: &dyn BackendFactory) {
    const LIMIT: u64 = 5;
    let b = factory
        .make_with_history_limit(RecordingSink::new(), LIMIT)
        .await;
    let conv = Conv::room("trim");
    let mut first = None;
    for i in 1..=12u64 {
        let done = append(&b, keyed(&conv, "u_1", &format!("k{i}"))).await;
        assert_eq!(done.receipt.seq, i, "seqs go on while trimming");
        first.get_or_insert(done.receipt);
    }
    let latest = read_history(&b, &conv, None, None, 500).await;
    assert_eq!(
        seqs(&latest),
        vec![8, 9, 10, 11, 12],
        "the latest {LIMIT} are kept"
    );
    let from_start = read_history(&b, &conv, Some(0), None, 500).await;
    assert_eq!(
        seqs(&from_start),
        vec![8, 9, 10, 11, 12],
        "after 0 starts at the oldest kept"
    );
    let before = read_history(&b, &conv, None, Some(10), 500).await;
    assert_eq!(seqs(&before), vec![8, 9]);

    let p = pos(&b, &conv).await;
    assert_eq!(
        (p.head_seq, p.oldest_seq),
        (12, 8),
        "position after trimming"
    );

    let again = append(&b, keyed(&conv, "u_1", "k1")).await;
    assert_eq!(
        Some(again.receipt),
        first,
        "a repeat of a trimmed message gets its original receipt"
    );
    assert!(again.stored.is_empty(), "and stores nothing");
    assert_eq!(append(&b, req(&conv, 13)).await.receipt.seq, 13);
    let p = pos(&b, &conv).await;
    assert_eq!((p.head_seq, p.oldest_seq), (13, 9));

    let small = Conv::room("trim-small");
    append_n(&b, &small, 3).await;
    assert_eq!(
        seqs(&read_history(&b, &small, None, None, 500).await),
        vec![1, 2, 3]
    );
    let p = pos(&b, &small).await;
    assert_eq!(
        (p.head_seq, p.oldest_seq),
        (3, 1),
        "under the limit nothing is trimmed"
    );
    b.lifecycle.close().await;
}
