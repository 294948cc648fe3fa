//! Between Socket.IO events and the native protocol's frames: the core's session speaks native
//! frames (PROTOCOL.md 6.3), and this module maps a client's events to them ([`request`]) and
//! the session's frames to events and acknowledgements ([`outgoing`]). Pure functions.
//!
//! A request that asked for an acknowledgement carries its ack id as the native request `id`
//! (a number); one that did not carries [`NO_ACK`], and its reply is dropped.

use bytes::Bytes;
use serde_json::value::RawValue;
use serde_json::{Map, Value, json};
use std::cell::RefCell;
use switchboard_proto::ErrorCode;

/// The native request id of an event that asked for no acknowledgement.
pub const NO_ACK: &str = "-";

/// A client event the mapping refuses before the session sees it.
#[derive(Debug, Clone, PartialEq)]
pub struct Refusal {
    /// Native error code.
    pub code: ErrorCode,
    /// Why.
    pub message: String,
}

impl Refusal {
    fn bad(message: impl Into<String>) -> Refusal {
        Refusal {
            code: ErrorCode::BadRequest,
            message: message.into(),
        }
    }

    /// The acknowledgement's argument: `{"error":{"code","message"}}`.
    pub fn ack_arg(&self) -> Value {
        error_arg(self.code.as_str(), &self.message)
    }
}

/// `{"error":{"code","message"}}`.
pub fn error_arg(code: &str, message: &str) -> Value {
    json!({"error": {"code": code, "message": message}})
}

/// The native frame for event `event` with `args` (acknowledged as `ack`, if asked), or why
/// it is refused. `binary`: the event carried binary attachments.
pub fn request(
    event: &str,
    args: &[Value],
    ack: Option<u64>,
    binary: bool,
) -> Result<Vec<u8>, Refusal> {
    let id = match ack {
        Some(a) => Value::from(a),
        None => Value::from(NO_ACK),
    };
    let conv_arg = || match args.first() {
        Some(Value::String(c)) => Ok(Value::String(c.clone())),
        _ => Err(Refusal::bad(format!(
            "{event}: the first argument must be a conversation name (room:<id> or user:<id>)"
        ))),
    };
    let object_arg = || match args.first() {
        Some(Value::Object(o)) => Ok(o.clone()),
        _ => Err(Refusal::bad(format!(
            "{event}: the first argument must be an object"
        ))),
    };
    let mut frame = Map::new();
    match event {
        "subscribe" => {
            frame.insert("conv".into(), conv_arg()?);
            match args.get(1) {
                None | Some(Value::Null) => {}
                Some(Value::Object(o)) => {
                    for key in ["since", "epoch"] {
                        if let Some(v) = o.get(key) {
                            frame.insert(key.into(), v.clone());
                        }
                    }
                }
                Some(_) => {
                    return Err(Refusal::bad(
                        "subscribe: the second argument, if any, must be {since, epoch}",
                    ));
                }
            }
        }
        "unsubscribe" | "presence" => {
            frame.insert("conv".into(), conv_arg()?);
        }
        "publish" => {
            if binary {
                return Err(Refusal::bad(
                    "publish: bodies are JSON; binary attachments are not accepted",
                ));
            }
            let o = object_arg()?;
            for key in ["conv", "body", "client_msg_id"] {
                if let Some(v) = o.get(key) {
                    frame.insert(key.into(), v.clone());
                }
            }
        }
        "history" => {
            let o = object_arg()?;
            for key in ["conv", "after", "before", "limit"] {
                if let Some(v) = o.get(key) {
                    frame.insert(key.into(), v.clone());
                }
            }
        }
        other => {
            let shown: String = other.chars().take(64).collect();
            return Err(Refusal::bad(format!(
                "unknown event `{shown}` (subscribe, unsubscribe, publish, history, presence)"
            )));
        }
    }
    frame.insert("type".into(), Value::from(event));
    frame.insert("id".into(), id);
    Ok(serde_json::to_vec(&Value::Object(frame)).unwrap_or_default())
}

/// What one native server frame becomes.
#[derive(Debug, PartialEq)]
pub enum Outgoing<'a> {
    /// A `message` event: the message object (the frame without its `type`), its conversation
    /// and seq.
    Message {
        /// `conv`.
        conv: &'a str,
        /// `seq`.
        seq: u64,
        /// The frame's bytes after `{"type":"message",`: the object is `{` + these.
        rest: &'a [u8],
    },
    /// An acknowledgement with its one argument.
    Ack(u64, Value),
    /// A subscription started (or moved) after seq `start` (slot bookkeeping), acknowledged
    /// with the argument when asked.
    Subscribed {
        /// The conversation.
        conv: String,
        /// The last seq the socket has.
        start: u64,
        /// Its epoch.
        epoch: String,
        /// Whether the client named a position (`since`): else an existing subscription
        /// stays where it is.
        moved: bool,
        /// The acknowledgement, if asked.
        ack: Option<(u64, Value)>,
    },
    /// A subscription ended: acknowledged when asked, else told (`reason`, e.g. `not_member`).
    Unsubscribed {
        /// The conversation.
        conv: String,
        /// The acknowledgement, if asked.
        ack: Option<(u64, Value)>,
        /// Why the server ended it, when it did so unasked.
        reason: Option<String>,
    },
    /// The node goes away: `switchboard:reconnect` with this argument, close after `delay_ms`.
    Reconnect(Value, u64),
    /// The session ends for `reason`.
    Disconnect(String),
    /// Nothing for the client (welcome, pong, replies nobody asked for).
    Nothing,
}

const MESSAGE_PREFIX: &[u8] = br#"{"type":"message","conv":"#;

/// What the session's frame `frame` becomes for a Socket.IO client.
pub fn outgoing(frame: &[u8]) -> Outgoing<'_> {
    if let Some(m) = message(frame) {
        return m;
    }
    let Ok(Value::Object(mut o)) = serde_json::from_slice::<Value>(frame) else {
        return Outgoing::Nothing;
    };
    let kind = match o.remove("type") {
        Some(Value::String(t)) => t,
        _ => return Outgoing::Nothing,
    };
    let ack = match o.remove("id") {
        Some(Value::Number(n)) => n.as_u64(),
        _ => None,
    };
    let text =
        |o: &Map<String, Value>, k: &str| o.get(k).and_then(Value::as_str).unwrap_or("").to_owned();
    match kind.as_str() {
        "error" => match ack {
            Some(a) => Outgoing::Ack(a, error_arg(&text(&o, "code"), &text(&o, "message"))),
            None => Outgoing::Nothing,
        },
        "subscribed" => {
            let head = o.get("head_seq").and_then(Value::as_u64).unwrap_or(0);
            let from = o.get("from_seq").and_then(Value::as_u64);
            Outgoing::Subscribed {
                conv: text(&o, "conv"),
                start: from.map_or(head, |f| f.saturating_sub(1)),
                epoch: text(&o, "epoch"),
                moved: from.is_some(),
                ack: ack.map(|a| (a, Value::Object(o))),
            }
        }
        "unsubscribed" => Outgoing::Unsubscribed {
            conv: text(&o, "conv"),
            reason: o.get("reason").and_then(Value::as_str).map(str::to_owned),
            ack: ack.map(|a| {
                o.remove("reason");
                (a, Value::Object(o))
            }),
        },
        "published" | "history" | "presence" => match ack {
            Some(a) => Outgoing::Ack(a, Value::Object(o)),
            None => Outgoing::Nothing,
        },
        "reconnect" => {
            let delay = o.get("delay_ms").and_then(Value::as_u64).unwrap_or(0);
            Outgoing::Reconnect(Value::Object(o), delay)
        }
        "disconnect" => Outgoing::Disconnect(text(&o, "reason")),
        _ => Outgoing::Nothing,
    }
}

/// A `message` frame read without parsing it whole: `{"type":"message","conv":"…","seq":N,…`,
/// the layout `Message::encode_frame` writes (conversation names need no escaping).
fn message(frame: &[u8]) -> Option<Outgoing<'_>> {
    let rest = frame.strip_prefix(MESSAGE_PREFIX)?;
    let rest = rest.strip_prefix(b"\"")?;
    let end = rest.iter().position(|b| *b == b'"')?;
    let conv = std::str::from_utf8(&rest[..end]).ok()?;
    if conv.contains('\\') {
        return None;
    }
    let after = rest[end + 1..].strip_prefix(br#","seq":"#)?;
    let digits = after.iter().take_while(|b| b.is_ascii_digit()).count();
    let seq = std::str::from_utf8(&after[..digits]).ok()?.parse().ok()?;
    Some(Outgoing::Message {
        conv,
        seq,
        rest: &frame[br#"{"type":"message","#.len()..],
    })
}

/// What a `message` frame gives every socket it goes to, read once per frame per thread.
struct Cached {
    /// The frame (kept, so that its address cannot be reused while it is the key).
    frame: Bytes,
    conv: Box<str>,
    seq: u64,
    /// The message object: the frame without its `type`.
    object: Box<RawValue>,
}

/// Calls `f` with a `message` frame's conversation, seq and message object (the frame
/// without its `type`); `None` when `frame` is not a `message` frame. Each is read once per
/// frame and shared: the fan-out hands every subscriber on a thread the same frame bytes one
/// after the other, so each thread keeps the last one it read, and a socket's share is a
/// pointer comparison.
pub fn with_message<R>(frame: &Bytes, f: impl FnOnce(&str, u64, &RawValue) -> R) -> Option<R> {
    thread_local! {
        static LAST: RefCell<Option<Cached>> = const { RefCell::new(None) };
    }
    LAST.with(|last| {
        let mut last = last.borrow_mut();
        let hit = last
            .as_ref()
            .is_some_and(|c| c.frame.as_ptr() == frame.as_ptr() && c.frame.len() == frame.len());
        if !hit {
            let Outgoing::Message { conv, seq, rest } = message(frame)? else {
                return None;
            };
            let mut text = String::with_capacity(rest.len() + 1);
            text.push('{');
            // `rest` is a tail of a JSON text (UTF-8) cut after an ASCII comma.
            text.push_str(std::str::from_utf8(rest).ok()?);
            *last = Some(Cached {
                frame: frame.clone(),
                conv: conv.into(),
                seq,
                object: RawValue::from_string(text).ok()?,
            });
        }
        let c = last.as_ref()?;
        Some(f(&c.conv, c.seq, &c.object))
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use switchboard_proto::{Conv, Message};

    #[test]
    fn messages_become_events_without_reencoding() {
        let m = Message {
            conv: Conv::room("r1"),
            seq: 42,
            message_id: "m_1".into(),
            from: Some("u_1".into()),
            to: None,
            ts: 7,
            client_msg_id: None,
            body: switchboard_proto::MessageBody(
                serde_json::value::RawValue::from_string("{\"t\":1}".into()).unwrap(),
            ),
            encoded: Default::default(),
        };
        let frame = m.encode_frame();
        let Outgoing::Message { conv, seq, .. } = outgoing(&frame) else {
            panic!("not a message");
        };
        assert_eq!((conv, seq), ("room:r1", 42));
        let read =
            |f: &Bytes| with_message(f, |c, s, o| (c.to_owned(), s, o.get().as_ptr())).unwrap();
        let (conv, seq, object) = read(&frame);
        assert_eq!((conv.as_str(), seq), ("room:r1", 42));
        assert_eq!(read(&frame).2, object, "made once per frame");
        let other = Bytes::from(frame.to_vec());
        assert_ne!(read(&other).2, object, "another frame is read again");
        assert!(with_message(&Bytes::from_static(br#"{"type":"pong"}"#), |_, _, _| ()).is_none());
        let object = with_message(&frame, |_, _, o| o.to_owned()).unwrap();
        let args: Value =
            serde_json::from_str(&serde_json::to_string(&(&*object, "c.1")).unwrap()).unwrap();
        assert_eq!(args[0]["seq"], 42);
        assert_eq!(args[0]["body"]["t"], 1);
        assert!(args[0].get("type").is_none());
        assert_eq!(args[1], "c.1");
    }

    #[test]
    fn events_become_requests() {
        let f = request(
            "subscribe",
            &[json!("room:r1"), json!({"since": 3})],
            Some(4),
            false,
        );
        let f: Value = serde_json::from_slice(&f.unwrap()).unwrap();
        assert_eq!(
            f,
            json!({"type":"subscribe","id":4,"conv":"room:r1","since":3})
        );
        let f = request("presence", &[json!("room:r1")], None, false).unwrap();
        let f: Value = serde_json::from_slice(&f).unwrap();
        assert_eq!(f["id"], NO_ACK);
        assert_eq!(
            request("nope", &[], Some(1), false).unwrap_err().code,
            ErrorCode::BadRequest
        );
        assert!(
            request(
                "publish",
                &[json!({"conv":"room:r1","body":1})],
                Some(1),
                true
            )
            .is_err()
        );
        assert!(request("subscribe", &[json!(5)], Some(1), false).is_err());
        assert!(request("history", &[json!("room:r1")], Some(1), false).is_err());
    }

    #[test]
    fn replies_become_acks() {
        let o = outgoing(br#"{"type":"error","id":3,"code":"not_found","message":"no"}"#);
        assert_eq!(o, Outgoing::Ack(3, error_arg("not_found", "no")));
        let o = outgoing(br#"{"type":"error","id":"-","code":"not_found","message":"no"}"#);
        assert_eq!(o, Outgoing::Nothing);
        let o = outgoing(
            br#"{"type":"subscribed","id":1,"conv":"room:a","head_seq":9,"epoch":"e","recovered":true,"from_seq":4}"#,
        );
        let Outgoing::Subscribed { start, ack, .. } = o else {
            panic!()
        };
        assert_eq!(start, 3);
        assert_eq!(ack.unwrap().1["head_seq"], 9);
        let o = outgoing(br#"{"type":"reconnect","reason":"shutdown","delay_ms":12}"#);
        assert_eq!(
            o,
            Outgoing::Reconnect(json!({"reason":"shutdown","delay_ms":12}), 12)
        );
        assert_eq!(outgoing(b"not json"), Outgoing::Nothing);
    }
}
