//! Client and server frames: JSON objects with a `type`, the same on every transport.
//!
//! Parsing is two steps: a cheap envelope read (`id`, `type`) so that even a frame with bad
//! fields gets an error that echoes its `id`, then the typed body of that one frame type.
//! Per-type structs (rather than one internally tagged enum) keep publish bodies as raw JSON.

use crate::conv::Conv;
use crate::error::{DisconnectReason, ErrorCode};
use crate::message::{Message, MessageBody};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use std::collections::BTreeMap;
use std::sync::Arc;

/// A client's request id: a number or a string, echoed in the reply.
pub type RequestId = Value;

/// A position a client resumes from: a bare last seq, or a seq with the epoch it belongs to.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(untagged)]
pub enum ResumePosition {
    /// `"room:r1": 41`
    Seq(u64),
    /// `"room:r1": {"seq": 41, "epoch": "..."}`
    WithEpoch {
        /// The last seq the client has.
        seq: u64,
        /// The epoch that seq belongs to; a different current epoch means history was lost.
        #[serde(default)]
        epoch: Option<String>,
    },
}

impl ResumePosition {
    /// The last seq the client has.
    pub fn seq(&self) -> u64 {
        match self {
            ResumePosition::Seq(s) | ResumePosition::WithEpoch { seq: s, .. } => *s,
        }
    }
    /// The epoch the client named, if any.
    pub fn epoch(&self) -> Option<&str> {
        match self {
            ResumePosition::Seq(_) => None,
            ResumePosition::WithEpoch { epoch, .. } => epoch.as_deref(),
        }
    }
}

/// A parsed client frame (without its `id`, which [`parse_client_frame`] returns beside it).
#[derive(Debug)]
pub enum ClientFrame {
    /// `{type:"auth", token, resume?}`
    Auth {
        /// Bearer token from `POST /v1/sessions` or the server API.
        token: String,
        /// Conversations to resume (and subscribe to), with the last seq the client has.
        resume: BTreeMap<Conv, ResumePosition>,
    },
    /// `{type:"subscribe", conv, since?, epoch?}`
    Subscribe {
        /// The conversation.
        conv: Conv,
        /// Last seq the client has; later messages are replayed first.
        since: Option<u64>,
        /// Epoch of `since`.
        epoch: Option<String>,
    },
    /// `{type:"unsubscribe", conv}`
    Unsubscribe {
        /// The conversation.
        conv: Conv,
    },
    /// `{type:"publish", conv, body, client_msg_id?}`
    Publish {
        /// Where to publish.
        conv: Conv,
        /// Any JSON value.
        body: MessageBody,
        /// Idempotency key, per user.
        client_msg_id: Option<String>,
    },
    /// `{type:"history", conv, after?, before?, limit?}`
    History {
        /// The conversation.
        conv: Conv,
        /// Messages with seq > after.
        after: Option<u64>,
        /// Messages with seq < before (the `limit` closest to it).
        before: Option<u64>,
        /// Page size (default 50, clamped to 500).
        limit: Option<u32>,
    },
    /// `{type:"presence", conv}`
    Presence {
        /// The conversation.
        conv: Conv,
    },
    /// `{type:"ping"}` (application-level ping) or `{type:"pong"}` (answer to a server ping).
    Ping,
    /// `{type:"pong"}`: the answer to a server `ping` frame on TCP and long-poll.
    Pong,
}

/// Why a frame could not be parsed: the id to echo (if the envelope was readable) and a message.
#[derive(Debug, Clone, PartialEq)]
pub struct FrameError {
    /// The request id, when the frame was JSON with a usable `id`.
    pub id: Option<RequestId>,
    /// Human-readable reason.
    pub message: String,
}

#[derive(Deserialize)]
struct Envelope {
    #[serde(default)]
    id: Option<Value>,
    #[serde(default, rename = "type")]
    kind: Option<String>,
}

#[derive(Deserialize)]
struct AuthFrame {
    token: String,
    #[serde(default)]
    resume: Option<BTreeMap<Conv, ResumePosition>>,
}
#[derive(Deserialize)]
struct SubscribeFrame {
    conv: Conv,
    #[serde(default)]
    since: Option<u64>,
    #[serde(default)]
    epoch: Option<String>,
}
#[derive(Deserialize)]
struct ConvFrame {
    conv: Conv,
}
#[derive(Deserialize)]
struct PublishFrame {
    conv: Conv,
    body: MessageBody,
    #[serde(default)]
    client_msg_id: Option<String>,
}
#[derive(Deserialize)]
struct HistoryFrame {
    conv: Conv,
    #[serde(default)]
    after: Option<u64>,
    #[serde(default)]
    before: Option<u64>,
    #[serde(default)]
    limit: Option<u32>,
}

/// Longest accepted `client_msg_id`.
pub const MAX_CLIENT_MSG_ID_LEN: usize = 128;

/// Parses one client frame. On error, the returned [`FrameError`] carries the request id when it
/// could be read, so the error reply can echo it (`null` when the frame was not even JSON).
pub fn parse_client_frame(text: &[u8]) -> Result<(Option<RequestId>, ClientFrame), FrameError> {
    let env: Envelope = serde_json::from_slice(text).map_err(|e| FrameError {
        id: None,
        message: format!("frame is not a JSON object: {e}"),
    })?;
    let id = match env.id {
        Some(Value::Null) | None => None,
        Some(v @ (Value::Number(_) | Value::String(_))) => Some(v),
        Some(_) => {
            return Err(FrameError {
                id: None,
                message: "id must be a number or a string".into(),
            });
        }
    };
    let fail = |e: serde_json::Error| FrameError {
        id: id.clone(),
        message: e.to_string(),
    };
    let kind = env.kind.ok_or_else(|| FrameError {
        id: id.clone(),
        message: "missing field `type`".into(),
    })?;
    let frame = match kind.as_str() {
        "auth" => {
            let f: AuthFrame = serde_json::from_slice(text).map_err(fail)?;
            ClientFrame::Auth {
                token: f.token,
                resume: f.resume.unwrap_or_default(),
            }
        }
        "subscribe" => {
            let f: SubscribeFrame = serde_json::from_slice(text).map_err(fail)?;
            ClientFrame::Subscribe {
                conv: f.conv,
                since: f.since,
                epoch: f.epoch,
            }
        }
        "unsubscribe" => {
            let f: ConvFrame = serde_json::from_slice(text).map_err(fail)?;
            ClientFrame::Unsubscribe { conv: f.conv }
        }
        "publish" => {
            let f: PublishFrame = serde_json::from_slice(text).map_err(fail)?;
            if f.client_msg_id
                .as_ref()
                .is_some_and(|c| c.is_empty() || c.len() > MAX_CLIENT_MSG_ID_LEN)
            {
                return Err(FrameError {
                    id,
                    message: format!("client_msg_id must be 1 to {MAX_CLIENT_MSG_ID_LEN} bytes"),
                });
            }
            ClientFrame::Publish {
                conv: f.conv,
                body: f.body,
                client_msg_id: f.client_msg_id,
            }
        }
        "history" => {
            let f: HistoryFrame = serde_json::from_slice(text).map_err(fail)?;
            ClientFrame::History {
                conv: f.conv,
                after: f.after,
                before: f.before,
                limit: f.limit,
            }
        }
        "presence" => {
            let f: ConvFrame = serde_json::from_slice(text).map_err(fail)?;
            ClientFrame::Presence { conv: f.conv }
        }
        "ping" => ClientFrame::Ping,
        "pong" => ClientFrame::Pong,
        other => {
            let shown: String = other.chars().take(40).collect();
            return Err(FrameError {
                id,
                message: format!("unknown frame type `{shown}`"),
            });
        }
    };
    Ok((id, frame))
}

/// How a resumed conversation was recovered (in `welcome.resumed`).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Resumed {
    /// True when every message after the client's position is being sent.
    pub recovered: bool,
    /// The first seq the server sends (the client's seq + 1 when recovered).
    pub from_seq: u64,
    /// The conversation's current epoch.
    pub epoch: String,
}

/// One online user of a presence answer.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct PresenceEntry {
    /// The user.
    pub user_id: String,
    /// Their live connections (subscribed to the conversation, for rooms).
    pub connections: u32,
}

/// Frames the server sends. Replies carry the request's `id` (null when it had none).
#[derive(Debug, Serialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum ServerFrame {
    /// Answer to a good `auth` (or sent unasked when the token came with the upgrade request).
    Welcome {
        /// Request id.
        id: Option<RequestId>,
        /// Who is connected.
        user_id: String,
        /// This node.
        node_id: String,
        /// This connection.
        conn_id: String,
        /// How often the server pings; two missed answers end the connection.
        heartbeat_ms: u64,
        /// Result per conversation named in `resume`.
        resumed: BTreeMap<Conv, Resumed>,
    },
    /// Answer to `subscribe`; replayed messages follow.
    Subscribed {
        /// Request id.
        id: Option<RequestId>,
        /// The conversation.
        conv: Conv,
        /// Its latest seq when the subscription started.
        head_seq: u64,
        /// Its epoch.
        epoch: String,
        /// With `since`: whether every message after `since` follows.
        #[serde(skip_serializing_if = "Option::is_none")]
        recovered: Option<bool>,
        /// With `since`: the first seq that follows.
        #[serde(skip_serializing_if = "Option::is_none")]
        from_seq: Option<u64>,
    },
    /// Answer to `unsubscribe`; also sent unasked (`id` null, with `reason`) when the server
    /// ends a subscription, e.g. `not_member` after removal from a private room.
    Unsubscribed {
        /// Request id.
        id: Option<RequestId>,
        /// The conversation.
        conv: Conv,
        /// Why the server ended it (absent when the client asked).
        #[serde(skip_serializing_if = "Option::is_none")]
        reason: Option<String>,
    },
    /// Answer to `publish`.
    Published {
        /// Request id.
        id: Option<RequestId>,
        /// Where it was stored (for a DM: `user:<to>`).
        conv: Conv,
        /// Its seq there.
        seq: u64,
        /// Its id.
        message_id: String,
        /// Its storage time.
        ts: u64,
    },
    /// Answer to `history`.
    History {
        /// Request id.
        id: Option<RequestId>,
        /// The conversation.
        conv: Conv,
        /// Ascending seq.
        messages: Vec<Arc<Message>>,
    },
    /// Answer to `presence`.
    Presence {
        /// Request id.
        id: Option<RequestId>,
        /// The conversation.
        conv: Conv,
        /// Online users.
        users: Vec<PresenceEntry>,
    },
    /// Answer to a client `ping`.
    Pong {
        /// Request id.
        id: Option<RequestId>,
    },
    /// Server heartbeat on transports without protocol pings (TCP, long-poll).
    Ping {},
    /// A failed request; the connection goes on.
    Error {
        /// Request id, or null when the frame was unreadable.
        id: Option<RequestId>,
        /// Error code.
        code: ErrorCode,
        /// Human-readable detail.
        message: String,
    },
    /// Go back to the dispatcher after `delay_ms`, then resume.
    Reconnect {
        /// Why (e.g. `shutdown`, `drain`).
        reason: String,
        /// How long to wait first (jittered, to spread reconnects).
        delay_ms: u64,
    },
    /// The connection is being closed.
    Disconnect {
        /// Why.
        reason: DisconnectReason,
    },
}

impl ServerFrame {
    /// Encodes to JSON text bytes.
    pub fn encode(&self) -> bytes::Bytes {
        bytes::Bytes::from(serde_json::to_vec(self).expect("server frames serialize"))
    }

    /// An error reply.
    pub fn error(
        id: Option<RequestId>,
        code: ErrorCode,
        message: impl Into<String>,
    ) -> ServerFrame {
        ServerFrame::Error {
            id,
            code,
            message: message.into(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unparsable_frame_has_null_id() {
        let e = parse_client_frame(b"{nope").unwrap_err();
        assert_eq!(e.id, None);
        let e = parse_client_frame(b"[1,2]").unwrap_err();
        assert_eq!(e.id, None);
    }

    #[test]
    fn bad_fields_echo_the_id() {
        let e = parse_client_frame(br#"{"id":7,"type":"subscribe"}"#).unwrap_err();
        assert_eq!(e.id, Some(Value::from(7)));
        assert!(e.message.contains("conv"), "{}", e.message);
        let e = parse_client_frame(br#"{"id":"a","type":"warp"}"#).unwrap_err();
        assert_eq!(e.id, Some(Value::from("a")));
        let e = parse_client_frame(br#"{"id":1,"type":"subscribe","conv":"chan:x"}"#).unwrap_err();
        assert!(e.message.contains("room:"), "{}", e.message);
    }

    #[test]
    fn publish_keeps_raw_body_and_resume_accepts_both_forms() {
        let (id, f) = parse_client_frame(
            br#"{"id":3,"type":"publish","conv":"room:r","body":{"a": [1, 2]}}"#,
        )
        .unwrap();
        assert_eq!(id, Some(Value::from(3)));
        match f {
            ClientFrame::Publish { body, .. } => assert_eq!(body.get(), r#"{"a": [1, 2]}"#),
            other => panic!("{other:?}"),
        }
        let (_, f) = parse_client_frame(
            br#"{"type":"auth","token":"t","resume":{"room:a":4,"user:u":{"seq":2,"epoch":"e"}}}"#,
        )
        .unwrap();
        match f {
            ClientFrame::Auth { resume, .. } => {
                assert_eq!(resume[&Conv::room("a")], ResumePosition::Seq(4));
                assert_eq!(resume[&Conv::user("u")].epoch(), Some("e"));
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn replies_carry_null_id_when_absent() {
        let t = ServerFrame::Pong { id: None }.encode();
        assert_eq!(&t[..], br#"{"type":"pong","id":null}"#);
        let t = ServerFrame::Ping {}.encode();
        assert_eq!(&t[..], br#"{"type":"ping"}"#);
    }
}
