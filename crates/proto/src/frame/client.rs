//! Client frames: what a client sends, parsed in two steps (see the module above), except a good
//! `publish` written type-first, read in one pass.
//!
//! Per-type structs (rather than one internally tagged enum) keep publish bodies as raw JSON.

use super::{FrameError, RequestId, read_envelope, request_id, shown};
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
    match publish_in_one_pass(text) {
        Some(parsed) => Ok(parsed),
        None => parse_in_two_steps(text),
    }
}

/// The envelope (`id`, `type`), then the type's own fields.
fn parse_in_two_steps(text: &[u8]) -> Result<(Option<RequestId>, ClientFrame), FrameError> {
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
            if !client_msg_id_fits(&f.client_msg_id) {
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

/// Whether a publish's `client_msg_id`, if any, has an allowed length.
fn client_msg_id_fits(key: &Option<String>) -> bool {
    key.as_ref()
        .is_none_or(|c| !c.is_empty() && c.len() <= MAX_CLIENT_MSG_ID_LEN)
}

/// A `publish` frame with its `type` and `id`, read in one pass.
#[derive(Deserialize)]
struct PublishWithEnvelope {
    #[serde(default)]
    id: Option<serde_json::Value>,
    #[serde(rename = "type")]
    kind: String,
    conv: Conv,
    body: MessageBody,
    #[serde(default)]
    client_msg_id: Option<String>,
}

/// The busiest frame, a good `publish` written `{"type":"publish",…` (as the SDKs, the bench
/// and the Socket.IO mapping write it), read in one pass instead of the envelope's and then
/// the publish's (callgrind: the envelope was 3,100 instructions per DM). `None` for anything
/// else, good or bad, which [`parse_client_frame`]'s two steps then read as they always did: a
/// frame this takes is one they would take, with the same result (the same fields and types;
/// `type` and `id` in the struct, so a duplicate of either fails here as it fails there).
fn publish_in_one_pass(text: &[u8]) -> Option<(Option<RequestId>, ClientFrame)> {
    if !text.starts_with(br#"{"type":"publish","#) {
        return None;
    }
    let f: PublishWithEnvelope = serde_json::from_slice(text).ok()?;
    let id = request_id(f.id)?;
    if f.kind != "publish" || !client_msg_id_fits(&f.client_msg_id) {
        return None;
    }
    Some((
        id,
        ClientFrame::Publish {
            conv: f.conv,
            body: f.body,
            client_msg_id: f.client_msg_id,
        },
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Conv;
    use serde_json::Value;

    /// Whatever the one pass takes, the two steps take with the same result; and the frames
    /// it leaves to them still get their errors.
    #[test]
    fn a_publish_read_in_one_pass_is_what_two_steps_read() {
        let frames: &[&str] = &[
            r#"{"type":"publish","id":1,"conv":"room:r","body":{"a":[1,2]}}"#,
            r#"{"type":"publish","id":"x","conv":"user:u_2","body":"t","client_msg_id":"k"}"#,
            r#"{"type":"publish","id":null,"conv":"room:r","body":null}"#,
            r#"{"type":"publish","conv":"room:r","body":1,"extra":[{}]}"#,
            r#"{"type":"publish","body":1,"conv":"room:r","id":2.5}"#,
            r#"{"type":"publish", "id" : 3 , "conv":"room:\u0072","body" : { } }"#,
            r#"{"type":"publish","id":[1],"conv":"room:r","body":1}"#,
            r#"{"type":"publish","id":{},"conv":"room:r","body":1}"#,
            r#"{"type":"publish","id":1,"id":2,"conv":"room:r","body":1}"#,
            r#"{"type":"publish","type":"subscribe","id":1,"conv":"room:r","body":1}"#,
            r#"{"type":"publish","id":1,"conv":"room:r","conv":"room:s","body":1}"#,
            r#"{"type":"publish","id":1,"conv":"chan:x","body":1}"#,
            r#"{"type":"publish","id":1,"conv":"room:r"}"#,
            r#"{"type":"publish","id":1,"conv":"room:r","body":1,"client_msg_id":""}"#,
            r#"{"type":"publish","id":1,"conv":"room:r","body":1,"client_msg_id":7}"#,
            r#"{"type":"publish","id":1,"conv":"room:r","body":1"#,
            r#"{"type":"publish","id":1,"conv":"room:r","body":1} trailing"#,
            r#"{"type":"publish","id":1,"conv":"room:r","body":1}  "#,
            r#"{"id":1,"type":"publish","conv":"room:r","body":1}"#,
        ];
        let long_key = format!(
            r#"{{"type":"publish","id":1,"conv":"room:r","body":1,"client_msg_id":"{}"}}"#,
            "k".repeat(MAX_CLIENT_MSG_ID_LEN + 1)
        );
        let shown = |r: Result<(Option<RequestId>, ClientFrame), FrameError>| format!("{r:?}");
        let mut taken = 0;
        for text in frames.iter().copied().chain([long_key.as_str()]) {
            let two = shown(parse_in_two_steps(text.as_bytes()));
            if let Some(one) = publish_in_one_pass(text.as_bytes()) {
                assert_eq!(shown(Ok(one)), two, "{text}");
                taken += 1;
            }
            assert_eq!(shown(parse_client_frame(text.as_bytes())), two, "{text}");
        }
        assert_eq!(taken, 7, "the good ones written type-first, and only those");
    }

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
