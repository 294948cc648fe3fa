//! What the handles ask the background task ([`Cmd`], carrying a [`Request`]), how each
//! request is written on the wire, and which ones may be sent again on a new connection.

use crate::ClientError;
use serde_json::{Value, json};
use switchboard_proto::ServerFrame;
use tokio::sync::oneshot;

/// A request to the background task.
#[derive(Debug, Clone)]
pub(crate) enum Request {
    Subscribe {
        conv: String,
    },
    Unsubscribe {
        conv: String,
    },
    Publish {
        conv: String,
        body: Value,
        client_msg_id: String,
    },
    History {
        conv: String,
        after: Option<u64>,
        before: Option<u64>,
        limit: Option<u32>,
    },
    Presence {
        conv: String,
    },
}

/// What the application sends the background task.
pub(crate) enum Cmd {
    Request {
        req: Request,
        reply: oneshot::Sender<Result<ServerFrame, ClientError>>,
    },
    Close {
        done: oneshot::Sender<()>,
    },
}

impl Request {
    /// The request as a client frame carrying `id`.
    pub(crate) fn frame(&self, id: u64) -> Value {
        match self {
            Request::Subscribe { conv } => json!({"type": "subscribe", "id": id, "conv": conv}),
            Request::Unsubscribe { conv } => {
                json!({"type": "unsubscribe", "id": id, "conv": conv})
            }
            Request::Publish {
                conv,
                body,
                client_msg_id,
            } => json!({"type": "publish", "id": id, "conv": conv, "body": body,
                        "client_msg_id": client_msg_id}),
            Request::History {
                conv,
                after,
                before,
                limit,
            } => {
                let mut f = json!({"type": "history", "id": id, "conv": conv});
                if let Some(a) = after {
                    f["after"] = json!(a);
                }
                if let Some(b) = before {
                    f["before"] = json!(b);
                }
                if let Some(l) = limit {
                    f["limit"] = json!(l);
                }
                f
            }
            Request::Presence { conv } => json!({"type": "presence", "id": id, "conv": conv}),
        }
    }

    /// Safe to send again on a new connection (idempotent on the server).
    pub(crate) fn retried(&self) -> bool {
        matches!(
            self,
            Request::Subscribe { .. } | Request::Unsubscribe { .. } | Request::Publish { .. }
        )
    }
}
