//! Small helpers shared by the cases.

use std::sync::Arc;
use std::time::Duration;
use switchboard_core::backend::{AppendRequest, Appended, Backend, BackendError, HistoryQuery};
use switchboard_proto::{Conv, Message, MessageBody};

/// How long a case waits for deliveries.
pub(crate) const WAIT: Duration = Duration::from_secs(20);

/// A JSON body.
pub(crate) fn body(json: &str) -> MessageBody {
    MessageBody::from_json(json.to_owned()).expect("test bodies are valid JSON")
}

/// A plain request from `u_sender` to `conv` with body `{"n":n}`, without idempotency key.
pub(crate) fn req(conv: &Conv, n: u64) -> AppendRequest {
    AppendRequest {
        conv: conv.clone(),
        from: Some("u_sender".into()),
        to: None,
        body: body(&format!(r#"{{"n":{n}}}"#)),
        client_msg_id: None,
        idempotency_owner: "u_sender".into(),
        copy_to: None,
    }
}

/// A request with an idempotency key owned by `owner`.
pub(crate) fn keyed(conv: &Conv, owner: &str, cmid: &str) -> AppendRequest {
    AppendRequest {
        from: Some(owner.into()),
        client_msg_id: Some(cmid.into()),
        idempotency_owner: owner.into(),
        ..req(conv, 0)
    }
}

/// Appends, panicking with context on error.
pub(crate) async fn append(b: &Backend, r: AppendRequest) -> Appended {
    let conv = r.conv.clone();
    match b.broker.append(r).await {
        Ok(a) => a,
        Err(e) => panic!("append to {conv} failed: {e}"),
    }
}

/// Appends `n` plain messages to `conv`, returning their seqs.
pub(crate) async fn append_n(b: &Backend, conv: &Conv, n: u64) -> Vec<u64> {
    let mut seqs = Vec::new();
    for i in 0..n {
        seqs.push(append(b, req(conv, i)).await.receipt.seq);
    }
    seqs
}

/// Reads history, panicking with context on error.
pub(crate) async fn read_history(
    b: &Backend,
    conv: &Conv,
    after: Option<u64>,
    before: Option<u64>,
    limit: u32,
) -> Vec<Arc<Message>> {
    let q = HistoryQuery {
        after,
        before,
        limit,
    };
    b.broker
        .history(conv, q)
        .await
        .unwrap_or_else(|e| panic!("history of {conv} {q:?} failed: {e}"))
}

/// The seqs of some messages.
pub(crate) fn seqs(messages: &[Arc<Message>]) -> Vec<u64> {
    messages.iter().map(|m| m.seq).collect()
}

/// Subscribes, panicking on error.
pub(crate) async fn subscribe(b: &Backend, conv: &Conv) {
    b.broker
        .subscribe(conv)
        .await
        .unwrap_or_else(|e| panic!("subscribe to {conv} failed: {e}"));
}

/// Asserts that `r` failed with [`BackendError::Unavailable`].
pub(crate) fn assert_unavailable<T: std::fmt::Debug>(what: &str, r: Result<T, BackendError>) {
    assert!(
        matches!(r, Err(BackendError::Unavailable(_))),
        "{what} after close: expected Unavailable, got {r:?}"
    );
}
