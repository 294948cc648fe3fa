//! Server frames: what the server sends, and their decoding for clients (the SDK, tests).
//!
//! The encoder is serde's, and its bytes are the contract (tests compare them). Decoding reads
//! the envelope first, then the frame: `message` and `history` frames are read straight from
//! the text so that bodies stay raw JSON (serde's buffering for tagged enums cannot hold a
//! `RawValue`), every other frame through the derived, tagged deserializer.

use super::{FrameError, RequestId, read_envelope, shown};
use crate::conv::Conv;
use crate::error::{DisconnectReason, ErrorCode};
use crate::message::Message;
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use serde_json::value::RawValue;
use std::collections::BTreeMap;
use std::sync::Arc;

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
///
/// `remote = "Self"` makes the derives inherent functions, called by the trait impls below:
/// decoding needs a step before the derived one (see the module comment).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case", remote = "Self")]
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
    #[serde(skip_deserializing)]
    History {
        /// Request id.
        id: Option<RequestId>,
        /// The conversation.
        conv: Conv,
        /// Ascending seq.
        messages: Vec<Arc<Message>>,
        /// The page was cut short by the reply's byte cap: ask again from where it ends.
        #[serde(default, skip_serializing_if = "is_false")]
        more: bool,
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
        /// The conversation the error is about, when the request named several: a resume in
        /// `auth` that was refused. Absent otherwise (and then not serialized).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        conv: Option<Conv>,
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
    /// A message of a subscribed conversation. The server encodes these once per message with
    /// [`Message::encode_frame`] (the same bytes); the variant makes decoding total.
    #[serde(skip_deserializing)]
    Message(Arc<Message>),
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
        ServerFrame::error_for(id, code, message, None)
    }

    /// An error reply about one conversation of a request that named several (a refused
    /// resume in `auth`): `conv` is serialized only when given.
    pub fn error_for(
        id: Option<RequestId>,
        code: ErrorCode,
        message: impl Into<String>,
        conv: Option<Conv>,
    ) -> ServerFrame {
        ServerFrame::Error {
            id,
            code,
            message: message.into(),
            conv,
        }
    }

    /// The request id this frame answers (`None` for unasked frames and null ids).
    pub fn id(&self) -> Option<&RequestId> {
        match self {
            ServerFrame::Welcome { id, .. }
            | ServerFrame::Subscribed { id, .. }
            | ServerFrame::Unsubscribed { id, .. }
            | ServerFrame::Published { id, .. }
            | ServerFrame::History { id, .. }
            | ServerFrame::Presence { id, .. }
            | ServerFrame::Pong { id }
            | ServerFrame::Error { id, .. } => id.as_ref(),
            ServerFrame::Ping {}
            | ServerFrame::Reconnect { .. }
            | ServerFrame::Disconnect { .. }
            | ServerFrame::Message(_) => None,
        }
    }

    /// Decodes one server frame from its JSON text. The error carries the frame's `id` when
    /// the envelope was readable, so a client can fail the request it answered.
    pub fn decode(text: &[u8]) -> Result<ServerFrame, FrameError> {
        let (id, kind) = read_envelope(text)?;
        let fail = |e: serde_json::Error| FrameError {
            id: id.clone(),
            message: format!("bad `{}` frame: {e}", shown(&kind)),
        };
        match kind.as_str() {
            "message" => {
                let m: Message = serde_json::from_slice(text).map_err(fail)?;
                Ok(ServerFrame::Message(Arc::new(m)))
            }
            "history" => {
                let h: HistoryReply = serde_json::from_slice(text).map_err(fail)?;
                Ok(ServerFrame::History {
                    id: h.id,
                    conv: h.conv,
                    messages: h.messages,
                    more: h.more,
                })
            }
            "welcome" | "subscribed" | "unsubscribed" | "published" | "presence" | "pong"
            | "ping" | "error" | "reconnect" | "disconnect" => {
                // The envelope read already checked that the text is one JSON object.
                let mut de = serde_json::Deserializer::from_slice(text);
                ServerFrame::deserialize(&mut de).map_err(fail)
            }
            other => Err(FrameError {
                id,
                message: format!("unknown frame type `{}`", shown(other)),
            }),
        }
    }
}

/// The `history` frame's fields, read straight from the text (bodies stay raw).
#[derive(Deserialize)]
struct HistoryReply {
    #[serde(default)]
    id: Option<RequestId>,
    conv: Conv,
    messages: Vec<Arc<Message>>,
    #[serde(default)]
    more: bool,
}

/// For `skip_serializing_if`: a `false` flag is left out of the frame.
fn is_false(b: &bool) -> bool {
    !*b
}

impl Serialize for ServerFrame {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        ServerFrame::serialize(self, s)
    }
}

/// Works with serde_json only (message bodies are raw JSON): the frame is taken as raw text,
/// then [`ServerFrame::decode`]d. That also reads a long-poll answer as `Vec<ServerFrame>`.
impl<'de> Deserialize<'de> for ServerFrame {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let raw = Box::<RawValue>::deserialize(d)?;
        ServerFrame::decode(raw.get().as_bytes()).map_err(serde::de::Error::custom)
    }
}
