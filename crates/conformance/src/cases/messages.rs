//! Message cases: sequencing, publication order, idempotency, direct-message copies, history
//! pages and concurrent appends.

use crate::util::{WAIT, append, append_n, body, keyed, read_history, req, seqs, subscribe};
use crate::{BackendFactory, RecordingSink};
use std::collections::HashSet;
use switchboard_core::backend::AppendRequest;
use switchboard_proto::Conv;

/// Appends get seqs 1..N with no gaps, per conversation and independently; the stored message
/// matches the request and the receipt; the sink receives each conversation in seq order.
pub async fn append_sequencing(factory: &dyn BackendFactory) {
    let sink = RecordingSink::new();
    let b = factory.make(sink.as_sink()).await;
    let (ca, cb) = (Conv::room("seq-a"), Conv::room("seq-b"));
    subscribe(&b, &ca).await;
    subscribe(&b, &cb).await;

    let mut got_a = Vec::new();
    let mut got_b = Vec::new();
    let mut ids = HashSet::new();
    for i in 0..10u64 {
        let r = req(&ca, i);
        let done = append(&b, r.clone()).await;
        assert_eq!(done.receipt.conv, ca);
        assert_eq!(done.stored.len(), 1, "one stored message without copy_to");
        let m = &done.stored[0];
        assert_eq!(m.conv, ca);
        assert_eq!(m.seq, done.receipt.seq);
        assert_eq!(m.message_id, done.receipt.message_id);
        assert_eq!(m.ts, done.receipt.ts);
        assert_eq!(m.from, r.from);
        assert_eq!(m.to, None);
        assert_eq!(m.client_msg_id, None);
        assert_eq!(m.body.get(), r.body.get(), "body kept verbatim");
        assert!(ids.insert(m.message_id.clone()), "message ids are unique");
        got_a.push(done.receipt.seq);
        if i % 2 == 0 {
            got_b.push(append(&b, req(&cb, i)).await.receipt.seq);
        }
    }
    assert_eq!(got_a, (1..=10).collect::<Vec<_>>(), "seqs of {ca}");
    assert_eq!(
        got_b,
        (1..=5).collect::<Vec<_>>(),
        "seqs of {cb}, independent of {ca}"
    );

    let delivered = sink
        .wait_for_messages_in(&ca, 10, WAIT)
        .await
        .unwrap_or_else(|got| panic!("sink got {:?} of {ca}, wanted 1..=10", seqs(&got)));
    assert_eq!(seqs(&delivered), got_a, "delivered in seq order");
    let delivered = sink
        .wait_for_messages_in(&cb, 5, WAIT)
        .await
        .unwrap_or_else(|got| panic!("sink got {:?} of {cb}, wanted 1..=5", seqs(&got)));
    assert_eq!(seqs(&delivered), got_b);

    let stored = read_history(&b, &ca, None, None, 100).await;
    assert_eq!(seqs(&stored), got_a, "history holds what was appended");
    assert_eq!(stored[3].body.get(), r#"{"n":3}"#);
    b.lifecycle.close().await;
}

/// `append_many` answers each request, in order, with consecutive seqs.
pub async fn append_many(factory: &dyn BackendFactory) {
    let b = factory.make(RecordingSink::new()).await;
    let conv = Conv::room("many");
    let requests: Vec<AppendRequest> = (0..20).map(|i| req(&conv, i)).collect();
    let answers = b.broker.append_many(requests).await;
    let got: Vec<u64> = answers
        .into_iter()
        .map(|a| a.expect("append_many item").receipt.seq)
        .collect();
    assert_eq!(
        got,
        (1..=20).collect::<Vec<_>>(),
        "answers in request order"
    );
    assert_eq!(seqs(&read_history(&b, &conv, None, None, 100).await), got);
    b.lifecycle.close().await;
}

/// Same `(owner, client_msg_id)` is stored once: a repeat gets the same receipt, stores and
/// publishes nothing. Another owner with the same key is a new message; no key, no dedup.
pub async fn idempotency(factory: &dyn BackendFactory) {
    let sink = RecordingSink::new();
    let b = factory.make(sink.as_sink()).await;
    let conv = Conv::room("idem");
    subscribe(&b, &conv).await;

    let first = append(&b, keyed(&conv, "u_1", "c1")).await;
    assert_eq!(first.receipt.seq, 1);
    assert_eq!(first.stored.len(), 1);
    assert_eq!(first.stored[0].client_msg_id.as_deref(), Some("c1"));
    let again = append(&b, keyed(&conv, "u_1", "c1")).await;
    assert_eq!(
        again.receipt, first.receipt,
        "a repeat gets the first receipt"
    );
    assert!(again.stored.is_empty(), "a repeat stores nothing");

    let other_owner = append(&b, keyed(&conv, "u_2", "c1")).await;
    assert_eq!(
        other_owner.receipt.seq, 2,
        "another owner's key is another message"
    );
    assert_eq!(other_owner.stored.len(), 1);
    let plain1 = append(&b, req(&conv, 1)).await;
    let plain2 = append(&b, req(&conv, 1)).await;
    assert_eq!(
        (plain1.receipt.seq, plain2.receipt.seq),
        (3, 4),
        "no key: never deduplicated"
    );

    // Two copies of one request in one call (one write batch where backends batch).
    let pair = b
        .broker
        .append_many(vec![keyed(&conv, "u_3", "c9"), keyed(&conv, "u_3", "c9")])
        .await;
    let (x, y) = match &pair[..] {
        [Ok(x), Ok(y)] => (x, y),
        other => panic!("append_many of a repeated key: {other:?}"),
    };
    assert_eq!(
        x.receipt, y.receipt,
        "a repeat in the same batch gets the same receipt"
    );
    assert_eq!(x.stored.len() + y.stored.len(), 1, "stored once");
    assert_eq!(x.receipt.seq, 5);

    // A sentinel: publication is in seq order, so once it arrives every earlier one has.
    let sentinel = append(&b, req(&conv, 99)).await;
    assert_eq!(sentinel.receipt.seq, 6);
    let delivered = sink
        .wait_for_messages_in(&conv, 6, WAIT)
        .await
        .unwrap_or_else(|got| panic!("sink got {:?}, wanted 1..=6", seqs(&got)));
    assert_eq!(
        seqs(&delivered),
        vec![1, 2, 3, 4, 5, 6],
        "repeats are not published"
    );
    let stored = read_history(&b, &conv, None, None, 100).await;
    assert_eq!(
        seqs(&stored),
        vec![1, 2, 3, 4, 5, 6],
        "repeats are not stored"
    );
    b.lifecycle.close().await;
}

/// `copy_to` stores a second copy with its own seq in the other conversation, atomically; both
/// copies share message id, sender, recipient, body, key and time.
pub async fn copy_to(factory: &dyn BackendFactory) {
    let sink = RecordingSink::new();
    let b = factory.make(sink.as_sink()).await;
    let (to_bob, to_alice) = (Conv::user("bob"), Conv::user("alice"));
    subscribe(&b, &to_bob).await;
    subscribe(&b, &to_alice).await;
    append(&b, req(&to_alice, 0)).await; // so the copy's seq differs from the primary's

    let dm = AppendRequest {
        conv: to_bob.clone(),
        from: Some("alice".into()),
        to: Some("bob".into()),
        body: body(r#"{"text":"hi bob"}"#),
        client_msg_id: Some("dm-1".into()),
        idempotency_owner: "alice".into(),
        copy_to: Some(to_alice.clone()),
    };
    let done = append(&b, dm.clone()).await;
    assert_eq!(done.receipt.conv, to_bob, "the receipt is the primary's");
    assert_eq!(done.receipt.seq, 1);
    assert_eq!(done.stored.len(), 2, "primary and copy");
    let (p, c) = (&done.stored[0], &done.stored[1]);
    assert_eq!((p.conv.clone(), p.seq), (to_bob.clone(), 1));
    assert_eq!(
        (c.conv.clone(), c.seq),
        (to_alice.clone(), 2),
        "the copy has its own seq"
    );
    assert_eq!(p.message_id, done.receipt.message_id);
    assert_eq!(
        c.message_id, p.message_id,
        "both copies share the message id"
    );
    assert_eq!(
        (c.from.as_deref(), c.to.as_deref()),
        (Some("alice"), Some("bob"))
    );
    assert_eq!(
        (p.from.as_deref(), p.to.as_deref()),
        (Some("alice"), Some("bob"))
    );
    assert_eq!(c.body.get(), p.body.get());
    assert_eq!(c.ts, p.ts);
    assert_eq!(c.client_msg_id.as_deref(), Some("dm-1"));

    let again = append(&b, dm).await;
    assert_eq!(
        again.receipt, done.receipt,
        "a repeated DM gets the same receipt"
    );
    assert!(again.stored.is_empty());

    let bob_hist = read_history(&b, &to_bob, None, None, 10).await;
    assert_eq!(seqs(&bob_hist), vec![1]);
    let alice_hist = read_history(&b, &to_alice, None, None, 10).await;
    assert_eq!(seqs(&alice_hist), vec![1, 2]);
    assert_eq!(alice_hist[1].message_id, p.message_id);
    sink.wait_for_messages_in(&to_bob, 1, WAIT)
        .await
        .expect("the primary is published");
    let copies = sink
        .wait_for_messages_in(&to_alice, 2, WAIT)
        .await
        .expect("the copy is published");
    assert_eq!(seqs(&copies), vec![1, 2]);
    b.lifecycle.close().await;
}

/// History pages: `after`, `before`, both, neither, and `limit`.
pub async fn history(factory: &dyn BackendFactory) {
    let b = factory.make(RecordingSink::new()).await;
    let conv = Conv::room("hist");
    append_n(&b, &conv, 30).await;
    let h = |after, before, limit| {
        let (b, conv) = (&b, &conv);
        async move { seqs(&read_history(b, conv, after, before, limit).await) }
    };
    let range = |a: u64, z: u64| (a..=z).collect::<Vec<u64>>();

    assert_eq!(
        h(None, None, 10).await,
        range(21, 30),
        "neither: the latest, ascending"
    );
    assert_eq!(
        h(None, None, 100).await,
        range(1, 30),
        "neither, limit above count"
    );
    assert_eq!(
        h(Some(5), None, 10).await,
        range(6, 15),
        "after: ascending from it"
    );
    assert_eq!(
        h(Some(0), None, 500).await,
        range(1, 30),
        "after 0: from the start"
    );
    assert_eq!(
        h(Some(30), None, 10).await,
        Vec::<u64>::new(),
        "after the head"
    );
    assert_eq!(h(Some(28), None, 10).await, range(29, 30));
    assert_eq!(
        h(None, Some(10), 5).await,
        range(5, 9),
        "before: the limit just before"
    );
    assert_eq!(h(None, Some(3), 10).await, range(1, 2));
    assert_eq!(h(None, Some(1), 10).await, Vec::<u64>::new(), "before 1");
    assert_eq!(
        h(None, Some(1000), 3).await,
        range(28, 30),
        "before beyond the head"
    );
    assert_eq!(
        h(Some(5), Some(9), 100).await,
        range(6, 8),
        "after and before"
    );
    assert_eq!(
        h(Some(5), Some(30), 3).await,
        range(6, 8),
        "both: first `limit` ascending"
    );
    assert_eq!(
        h(Some(5), Some(6), 10).await,
        Vec::<u64>::new(),
        "empty window"
    );
    assert_eq!(h(None, None, 1).await, vec![30]);

    let empty = Conv::room("hist-empty");
    assert!(read_history(&b, &empty, None, None, 10).await.is_empty());
    assert!(read_history(&b, &empty, Some(0), None, 10).await.is_empty());
    b.lifecycle.close().await;
}

/// 8 tasks append 200 messages each to one conversation at once: the seqs are exactly
/// 1..=1600, each task's own seqs ascend, and the sink sees all of them in order.
pub async fn concurrency(factory: &dyn BackendFactory) {
    const TASKS: u64 = 8;
    const EACH: u64 = 200;
    let sink = RecordingSink::new();
    let b = factory.make(sink.as_sink()).await;
    let conv = Conv::room("busy");
    subscribe(&b, &conv).await;

    let mut tasks = Vec::new();
    for t in 0..TASKS {
        let broker = b.broker.clone();
        let conv = conv.clone();
        tasks.push(tokio::spawn(async move {
            let mut mine = Vec::with_capacity(EACH as usize);
            for i in 0..EACH {
                let mut r = req(&conv, t * 1000 + i);
                r.client_msg_id = Some(format!("t{t}-{i}"));
                match broker.append(r).await {
                    Ok(a) => mine.push(a.receipt.seq),
                    Err(e) => panic!("task {t} append {i} failed: {e}"),
                }
            }
            mine
        }));
    }
    let mut all = Vec::new();
    for (t, task) in tasks.into_iter().enumerate() {
        let mine = task
            .await
            .unwrap_or_else(|e| panic!("task {t} failed: {e}"));
        assert!(
            mine.windows(2).all(|w| w[0] < w[1]),
            "task {t}'s sequential appends got ascending seqs"
        );
        all.extend(mine);
    }
    all.sort_unstable();
    let total = TASKS * EACH;
    assert_eq!(
        all,
        (1..=total).collect::<Vec<_>>(),
        "seqs are exactly 1..={total}"
    );

    let delivered = sink
        .wait_for_messages_in(&conv, total as usize, WAIT * 3)
        .await
        .unwrap_or_else(|got| panic!("sink got {} of {total} messages", got.len()));
    let delivered = seqs(&delivered);
    assert_eq!(delivered.len() as u64, total, "nothing delivered twice");
    assert!(
        delivered.iter().copied().eq(1..=total),
        "the sink saw 1..={total} in ascending order"
    );

    let mut stored = Vec::new();
    let mut after = 0;
    loop {
        let page = read_history(&b, &conv, Some(after), None, 500).await;
        let Some(last) = page.last() else { break };
        after = last.seq;
        stored.extend(seqs(&page));
    }
    assert_eq!(
        stored,
        (1..=total).collect::<Vec<_>>(),
        "history holds all of them"
    );
    b.lifecycle.close().await;
}
