//! Client and server frames: JSON objects with a `type`, the same on every transport.
//!
//! Parsing is two steps, in both directions: a cheap envelope read (`id`, `type`) so that even
//! a frame with bad fields gets an error that names its `id`, then the typed body of that one
//! frame type. Message bodies stay raw JSON ([`crate::MessageBody`]) all the way.

mod client;
mod server;
#[cfg(test)]
mod server_tests;

pub use client::{ClientFrame, MAX_CLIENT_MSG_ID_LEN, ResumePosition, parse_client_frame};
pub use server::{PresenceEntry, Resumed, ServerFrame};

use serde::Deserialize;
use serde_json::Value;
use std::fmt;

/// A client's request id: a number or a string, echoed in the reply.
pub type RequestId = Value;

/// Why a frame could not be parsed: the id to echo (if the envelope was readable) and a message.
#[derive(Debug, Clone, PartialEq)]
pub struct FrameError {
    /// The request id, when the frame was JSON with a usable `id`.
    pub id: Option<RequestId>,
    /// Human-readable reason.
    pub message: String,
}

impl fmt::Display for FrameError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for FrameError {}

#[derive(Deserialize)]
struct Envelope {
    #[serde(default)]
    id: Option<Value>,
    #[serde(default, rename = "type")]
    kind: Option<String>,
}

/// A frame's `id` as read: absent or null is none, a number or a string is the id, anything
/// else is refused (`None`).
fn request_id(id: Option<Value>) -> Option<Option<RequestId>> {
    match id {
        Some(Value::Null) | None => Some(None),
        Some(v @ (Value::Number(_) | Value::String(_))) => Some(Some(v)),
        Some(_) => None,
    }
}

/// Reads a frame's `id` (a number, a string, or absent/null) and its `type`. The error carries
/// the id whenever it could be read, so that the caller can answer (or fail) that request.
fn read_envelope(text: &[u8]) -> Result<(Option<RequestId>, String), FrameError> {
    let env: Envelope = serde_json::from_slice(text).map_err(|e| FrameError {
        id: None,
        message: format!("frame is not a JSON object: {e}"),
    })?;
    let Some(id) = request_id(env.id) else {
        return Err(FrameError {
            id: None,
            message: "id must be a number or a string".into(),
        });
    };
    match env.kind {
        Some(kind) => Ok((id, kind)),
        None => Err(FrameError {
            id,
            message: "missing field `type`".into(),
        }),
    }
}

/// A frame type, cut short for error messages (it comes from the peer).
fn shown(kind: &str) -> String {
    kind.chars().take(40).collect()
}

/// The `client_frame` fuzz target's function (its corpus test calls it too): `data`'s nesting
/// measured (the node's depth check, on any bytes), then parsed as a client frame (what the
/// node does with every frame) and as a server frame (what the SDK does). Either may fail, with
/// an error; none may panic. Returns which parsed.
pub fn check_frames(data: &[u8]) -> (bool, bool) {
    let _ = crate::depth::json_depth(data);
    let client = parse_client_frame(data);
    if let Err(e) = &client {
        assert!(!e.message.is_empty(), "an error says why");
    }
    (client.is_ok(), ServerFrame::decode(data).is_ok())
}
