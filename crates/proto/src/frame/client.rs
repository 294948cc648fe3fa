//! Client frames: what a client sends, parsed in two steps (see the module above).
//!
//! Per-type structs (rather than one internally tagged enum) keep publish bodies as raw JSON.

use super::{FrameError, RequestId, read_envelope, shown};
use crate::conv::Conv;
use crate::message::MessageBody;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

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
    let (id, kind) = read_envelope(text)?;
    let fail = |e: serde_json::Error| FrameError {
        id: id.clone(),
        message: e.to_string(),
    };
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
            return Err(FrameError {
                id,
                message: format!("unknown frame type `{}`", shown(other)),
            });
        }
    };
    Ok((id, frame))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Conv;
    use serde_json::Value;

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
}
