//! The frames each protocol writes (publishes, direct messages, their bodies) and reads
//! (deliveries, answers, errors, pings, closes), found by scanning the text.

use super::Protocol;

/// What a frame from the server is, as far as the bench cares.
#[derive(Debug, PartialEq, Eq)]
pub enum Incoming {
    /// A message carrying a bench timestamp; `src` is the sending user's index, if a user sent it.
    Delivery {
        /// Publisher's send time, µs since the epoch.
        ts_us: u64,
        /// The sender's user index (`None` for server publishes).
        src: Option<u64>,
    },
    /// An Engine.IO ping, to be answered with `3`.
    Ping,
    /// The answer to a publish (`published`, or a Socket.IO acknowledgement).
    Ack,
    /// An error frame.
    Error(String),
    /// The server ended the session (`disconnect` frame, Socket.IO disconnect or close packet).
    Closed(String),
    /// Anything else.
    Other,
}

/// A message body with the send time, the sender's index and `payload` bytes of padding.
pub fn body(ts_us: u64, src: i64, payload: &str) -> String {
    format!(r#"{{"bench_ts":{ts_us},"src":{src},"pad":"{payload}"}}"#)
}

/// The first number after `key` in `text` (`key` includes the quotes and colon).
fn number_after(text: &str, key: &str) -> Option<i64> {
    let at = text.find(key)? + key.len();
    let rest = text[at..].trim_start();
    let (neg, digits) = match rest.strip_prefix('-') {
        Some(r) => (true, r),
        None => (false, rest),
    };
    let end = digits
        .find(|c: char| !c.is_ascii_digit())
        .unwrap_or(digits.len());
    let v: i64 = digits[..end].parse().ok()?;
    Some(if neg { -v } else { v })
}

/// The JSON string right after `key` in `text` (no escapes: conversation names have none).
fn string_after<'a>(text: &'a str, key: &str) -> Option<&'a str> {
    let at = text.find(key)? + key.len();
    let rest = text[at..].trim_start().strip_prefix('"')?;
    Some(&rest[..rest.find('"')?])
}

/// The conversation and seq of a Switchboard message frame (`None` for Socket.IO's, which
/// carry neither).
pub fn conv_seq(text: &str) -> Option<(&str, u64)> {
    let conv = string_after(text, "\"conv\":")?;
    let seq = number_after(text, "\"seq\":")?;
    Some((conv, u64::try_from(seq).ok()?))
}

/// A publish's answer, as [`Protocol::answer`] reads it.
#[derive(Debug, PartialEq, Eq)]
pub struct Answer {
    /// The publish's request id.
    pub id: u64,
    /// Stored (`published`, or a Socket.IO acknowledgement); false for an error frame.
    pub ok: bool,
    /// Where it was stored (Switchboard; for a DM `user:<to>`).
    pub conv: Option<String>,
    /// Its seq there (Switchboard).
    pub seq: Option<u64>,
}

fn delivery(text: &str) -> Option<Incoming> {
    let ts = number_after(text, "\"bench_ts\":")?;
    let src = number_after(text, "\"src\":").unwrap_or(-1);
    Some(Incoming::Delivery {
        ts_us: ts.max(0) as u64,
        src: (src >= 0).then_some(src as u64),
    })
}

impl Protocol {
    /// A publish of `body` to room `conv` as the frame this protocol sends (request id `id`):
    /// a `publish` frame, or a Socket.IO `pub` event with an acknowledgement.
    pub fn pub_frame(self, conv: &str, body: &str, id: u64) -> String {
        match self {
            Protocol::Switchboard => {
                format!(r#"{{"type":"publish","id":{id},"conv":"{conv}","body":{body}}}"#)
            }
            Protocol::Socketio => format!(r#"42{id}["pub",{{"room":"{conv}","body":{body}}}]"#),
            Protocol::SwitchboardSocketio => {
                format!(r#"42{id}["publish",{{"conv":"{conv}","body":{body}}}]"#)
            }
        }
    }

    /// The answer to a publish in `text`, if it is one: Switchboard's `published` (with the
    /// conversation and seq) or `error` with an id, a Socket.IO acknowledgement (`43<id>[...]`).
    pub fn answer(self, text: &str) -> Option<Answer> {
        match self {
            Protocol::Switchboard => {
                let ok = text.starts_with(r#"{"type":"published""#);
                if !ok && !text.starts_with(r#"{"type":"error""#) {
                    return None;
                }
                let id = u64::try_from(number_after(text, "\"id\":")?).ok()?;
                Some(Answer {
                    id,
                    ok,
                    conv: if ok {
                        string_after(text, "\"conv\":").map(str::to_owned)
                    } else {
                        None
                    },
                    seq: if ok {
                        number_after(text, "\"seq\":").map(|s| s.max(0) as u64)
                    } else {
                        None
                    },
                })
            }
            Protocol::Socketio => {
                let rest = text.strip_prefix("43")?;
                let end = rest.find(|c: char| !c.is_ascii_digit())?;
                Some(Answer {
                    id: rest[..end].parse().ok()?,
                    ok: true,
                    conv: None,
                    seq: None,
                })
            }
            Protocol::SwitchboardSocketio => {
                let rest = text.strip_prefix("43")?;
                let end = rest.find(|c: char| !c.is_ascii_digit())?;
                let ok = !rest[end..].starts_with(r#"[{"error""#);
                Some(Answer {
                    id: rest[..end].parse().ok()?,
                    ok,
                    conv: if ok {
                        string_after(rest, "\"conv\":").map(str::to_owned)
                    } else {
                        None
                    },
                    seq: if ok {
                        number_after(rest, "\"seq\":").map(|s| s.max(0) as u64)
                    } else {
                        None
                    },
                })
            }
        }
    }

    /// A direct message to user `to` as the frame this protocol sends (request id `id`).
    pub fn dm_frame(self, to: &str, body: &str, id: u64) -> String {
        match self {
            Protocol::Switchboard => {
                format!(r#"{{"type":"publish","id":{id},"conv":"user:{to}","body":{body}}}"#)
            }
            Protocol::Socketio => format!(r#"42{id}["dm",{{"to":"{to}","body":{body}}}]"#),
            Protocol::SwitchboardSocketio => {
                format!(r#"42{id}["publish",{{"conv":"user:{to}","body":{body}}}]"#)
            }
        }
    }

    /// Says what a frame from the server is.
    pub fn classify(self, text: &str) -> Incoming {
        match self {
            Protocol::Switchboard => {
                if text.starts_with(r#"{"type":"message""#) {
                    delivery(text).unwrap_or(Incoming::Other)
                } else if text.starts_with(r#"{"type":"published""#) {
                    Incoming::Ack
                } else if text.starts_with(r#"{"type":"error""#) {
                    Incoming::Error(text.to_owned())
                } else if text.starts_with(r#"{"type":"disconnect""#) {
                    Incoming::Closed(text.to_owned())
                } else {
                    // Frames whose keys come in another order than the server writes today.
                    match serde_json::from_str::<serde_json::Value>(text) {
                        Ok(v) => match v["type"].as_str() {
                            Some("message") => delivery(text).unwrap_or(Incoming::Other),
                            Some("published") => Incoming::Ack,
                            Some("error") => Incoming::Error(text.to_owned()),
                            Some("disconnect") => Incoming::Closed(text.to_owned()),
                            _ => Incoming::Other,
                        },
                        Err(_) => Incoming::Other,
                    }
                }
            }
            Protocol::Socketio | Protocol::SwitchboardSocketio => {
                if text == "2" {
                    Incoming::Ping
                } else if text.starts_with(r#"42["switchboard:disconnect""#) {
                    Incoming::Closed(text.to_owned())
                } else if text.starts_with("42") {
                    delivery(text).unwrap_or(Incoming::Other)
                } else if text.starts_with("43") {
                    Incoming::Ack
                } else if text.starts_with("44") {
                    Incoming::Error(text.to_owned())
                } else if text.starts_with("41") || text == "1" {
                    Incoming::Closed(text.to_owned())
                } else {
                    Incoming::Other
                }
            }
        }
    }
}
