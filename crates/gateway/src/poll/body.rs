//! The long-poll request bodies, parsed by pure functions (the handlers, the `poll_body` fuzz
//! target and its corpus test all call these): `POST /v1/poll`'s optional `{"resume":{...}}`
//! and `POST /v1/poll/{session}`'s JSON array of client frames.

use serde::Deserialize;
use serde_json::value::RawValue;
use std::collections::BTreeMap;
use switchboard_proto::{Conv, ResumePosition};

/// `POST /v1/poll`'s body.
#[derive(Deserialize, Default, Debug)]
pub struct OpenBody {
    /// Where to resume each conversation.
    #[serde(default)]
    pub resume: Option<BTreeMap<Conv, ResumePosition>>,
}

/// `POST /v1/poll`'s body: empty (or blank) is `{}`; otherwise it must be the JSON object.
pub fn parse_open_body(body: &[u8]) -> Result<OpenBody, String> {
    if body.iter().all(u8::is_ascii_whitespace) {
        return Ok(OpenBody::default());
    }
    serde_json::from_slice(body).map_err(|e| format!("invalid body: {e}"))
}

/// `POST /v1/poll/{session}`'s body: a JSON array of frames, each kept as its raw text for the
/// session to parse like a WebSocket frame.
pub fn parse_frames_body(body: &[u8]) -> Result<Vec<Box<RawValue>>, String> {
    serde_json::from_slice(body)
        .map_err(|e| format!("the body must be a JSON array of frames: {e}"))
}

/// Everything a long-poll body goes through, for the fuzz target and its corpus test: both
/// parsers, then each frame of an array through the client frame parser. Returns how many
/// frames parsed as valid client frames.
pub fn parse_any_poll_body(body: &[u8]) -> usize {
    let _ = parse_open_body(body);
    match parse_frames_body(body) {
        Ok(frames) => frames
            .iter()
            .filter(|f| switchboard_proto::frame::parse_client_frame(f.get().as_bytes()).is_ok())
            .count(),
        Err(_) => 0,
    }
}
