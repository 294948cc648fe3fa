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

/// The native frame for a client's event `event` with arguments `args` as the client wrote
/// them, checked against the node's frame limit `max`, or why it is refused. A `publish` (the
/// busiest event) is copied as written; anything else goes through values.
pub fn event_frame(
    event: &str,
    args: &[Box<RawValue>],
    ack: Option<u64>,
    binary: bool,
    max: usize,
) -> Result<Vec<u8>, Refusal> {
    publish_request(event, args, ack, binary)
        .map(Ok)
        .unwrap_or_else(|| {
            let args: Vec<Value> = args
                .iter()
                .map(|a| serde_json::from_str(a.get()).unwrap_or(Value::Null))
                .collect();
            request(event, &args, ack, binary)
        })
        .and_then(|frame| within_limit(frame, max))
}

/// `frame` if the node takes frames of its size (`max`, its `--max-frame-bytes`), else the
/// refusal `too_large`. A Socket.IO packet within `maxPayload` (the same limit) becomes a native
/// frame a few bytes longer (the envelope's `"type"` and `"id"`), so one near the limit can make
/// a frame over it: refused here, where its acknowledgement is known, since the session answers
/// a frame it cannot read without an id (and so without an acknowledgement).
pub fn within_limit(frame: Vec<u8>, max: usize) -> Result<Vec<u8>, Refusal> {
    if frame.len() <= max {
        return Ok(frame);
    }
    Err(Refusal {
        code: ErrorCode::TooLarge,
        message: format!(
            "the event makes a frame of {} bytes, over the {max}-byte limit",
            frame.len()
        ),
    })
}

/// A `publish` event's object, its fields borrowed as the client wrote them. A field that is
/// present is `Some`, `null` included (as [`request`] copies it).
#[derive(serde::Deserialize)]
struct PublishFields<'a> {
    #[serde(borrow, default, deserialize_with = "present")]
    conv: Option<&'a RawValue>,
    #[serde(borrow, default, deserialize_with = "present")]
    body: Option<&'a RawValue>,
    #[serde(borrow, default, deserialize_with = "present")]
    client_msg_id: Option<&'a RawValue>,
}

/// A field that is present, whatever its value.
fn present<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<&'de RawValue>, D::Error> {
    <&RawValue as serde::Deserialize>::deserialize(d).map(Some)
}

/// [`request`] for a `publish` event read from its arguments' JSON text, without building
/// values: the fields are copied as the client wrote them. `None` when the event is not a
/// plain `publish` of one object (binary, another event, duplicate or unreadable fields):
/// [`request`] then answers it as it always did.
///
/// So a body is stored verbatim, as a native client's is (PROTOCOL.md): its layout, escapes and
/// numbers as written, duplicate keys inside it kept, and also what values cannot hold and
/// [`request`] refused (`1e400`, a lone surrogate `"\ud800"`), which the native protocol takes.
pub fn publish_request(
    event: &str,
    args: &[Box<RawValue>],
    ack: Option<u64>,
    binary: bool,
) -> Option<Vec<u8>> {
    if event != "publish" || binary {
        return None;
    }
    let object = args.first()?.get();
    if !object.trim_start().starts_with('{') {
        // A struct would also take an array, by position.
        return None;
    }
    let fields: PublishFields<'_> = serde_json::from_str(object).ok()?;
    let mut frame = Vec::with_capacity(64 + args[0].get().len());
    frame.extend_from_slice(br#"{"type":"publish","id":"#);
    match ack {
        Some(a) => frame.extend_from_slice(a.to_string().as_bytes()),
        None => {
            frame.push(b'"');
            frame.extend_from_slice(NO_ACK.as_bytes());
            frame.push(b'"');
        }
    }
    for (key, value) in [
        ("conv", fields.conv),
        ("body", fields.body),
        ("client_msg_id", fields.client_msg_id),
    ] {
        if let Some(v) = value {
            frame.extend_from_slice(b",\"");
            frame.extend_from_slice(key.as_bytes());
            frame.extend_from_slice(b"\":");
            frame.extend_from_slice(v.get().as_bytes());
        }
    }
    frame.push(b'}');
    Some(frame)
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
    /// An acknowledgement whose one argument is the answer itself without its `type` and `id`:
    /// the object is `{` + `fields` (read without parsing, see `plain_ack`).
    AckObject {
        /// The acknowledgement id.
        id: u64,
        /// The answer's bytes after `"id":N,` (its other fields and the closing brace).
        fields: &'a [u8],
    },
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
    if let Some(m) = message(frame).or_else(|| plain_ack(frame)) {
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
    let (seq, _) = leading_u64(rest[end + 1..].strip_prefix(br#","seq":"#)?)?;
    Some(Outgoing::Message {
        conv,
        seq,
        rest: &frame[br#"{"type":"message","#.len()..],
    })
}

/// The unsigned number `text` starts with (digits only, as the node writes seqs and ack ids),
/// and the bytes after it; `None` if there is none or it overflows.
fn leading_u64(text: &[u8]) -> Option<(u64, &[u8])> {
    let digits = text.iter().take_while(|b| b.is_ascii_digit()).count();
    let n = std::str::from_utf8(&text[..digits]).ok()?.parse().ok()?;
    Some((n, &text[digits..]))
}

/// The answers acknowledged with themselves (without `type` and `id`), as
/// `ServerFrame::encode` begins them: the tag, then the request id.
const PLAIN_ACKS: [&[u8]; 3] = [
    br#"{"type":"published","id":"#,
    br#"{"type":"history","id":"#,
    br#"{"type":"presence","id":"#,
];

/// An answer to `publish`, `history` or `presence` read without parsing it whole (a DM's
/// answer is the busiest frame a socket gets): `{"type":"published","id":N,…}` becomes the
/// acknowledgement `N` of the rest; `"id":"-"` (no acknowledgement asked) becomes nothing.
/// `None` for any other layout, which [`outgoing`] then parses.
fn plain_ack(frame: &[u8]) -> Option<Outgoing<'_>> {
    let rest = PLAIN_ACKS.iter().find_map(|p| frame.strip_prefix(*p))?;
    let (id, after) = match rest.strip_prefix(b"\"") {
        Some(quoted) => (
            None,
            quoted
                .strip_prefix(NO_ACK.as_bytes())?
                .strip_prefix(b"\"")?,
        ),
        None => {
            let (id, after) = leading_u64(rest)?;
            (Some(id), after)
        }
    };
    let fields = match after.first()? {
        b',' => &after[1..],
        b'}' => after,
        _ => return None,
    };
    if fields.last() != Some(&b'}') {
        return None;
    }
    Some(match id {
        Some(id) => Outgoing::AckObject { id, fields },
        None => Outgoing::Nothing,
    })
}

/// The arguments of an [`Outgoing::AckObject`]: `[{` + `fields` + `]`, JSON text (`fields` is
/// a tail of a JSON text cut after an ASCII comma).
pub fn ack_object_args(fields: &[u8]) -> Option<String> {
    let fields = std::str::from_utf8(fields).ok()?;
    let mut args = String::with_capacity(fields.len() + 3);
    args.push_str("[{");
    args.push_str(fields);
    args.push(']');
    Some(args)
}

/// What a `message` frame gives every socket it goes to, read once per frame per thread.
struct Cached {
    /// The frame (kept, so that its address cannot be reused while it is the key).
    frame: Bytes,
    conv: Box<str>,
    seq: u64,
    /// The message object: the frame without its `type` (JSON text: the node's own encoding,
    /// not read again).
    object: Box<str>,
}

/// Calls `f` with a `message` frame's conversation, seq and message object (the frame
/// without its `type`, JSON text); `None` when `frame` is not a `message` frame. The frame is
/// `Message::encode_frame`'s, so the object is not validated again. Each is read once per
/// frame and shared: the fan-out hands every subscriber on a thread the same frame bytes one
/// after the other, so each thread keeps the last one it read, and a socket's share is a
/// pointer comparison.
pub fn with_message<R>(frame: &Bytes, f: impl FnOnce(&str, u64, &str) -> R) -> Option<R> {
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
                object: text.into_boxed_str(),
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
        let read = |f: &Bytes| with_message(f, |c, s, o| (c.to_owned(), s, o.as_ptr())).unwrap();
        let (conv, seq, object) = read(&frame);
        assert_eq!((conv.as_str(), seq), ("room:r1", 42));
        assert_eq!(read(&frame).2, object, "made once per frame");
        let other = Bytes::from(frame.to_vec());
        assert_ne!(read(&other).2, object, "another frame is read again");
        assert!(with_message(&Bytes::from_static(br#"{"type":"pong"}"#), |_, _, _| ()).is_none());
        let object = with_message(&frame, |_, _, o| o.to_owned()).unwrap();
        let args: Value = serde_json::from_str(&format!("[{object},\"c.1\"]")).unwrap();
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

    /// The answers read without parsing give the acknowledgement the full parse gives, for
    /// every layout `ServerFrame::encode` writes; anything else is left to the full parse.
    #[test]
    fn plain_answers_are_acknowledged_as_parsed() {
        use std::sync::Arc;
        use switchboard_proto::frame::PresenceEntry;
        use switchboard_proto::{Conv, ServerFrame};
        let parsed = |frame: &[u8]| -> Option<(u64, Value)> {
            let mut o = serde_json::from_slice::<Map<String, Value>>(frame).ok()?;
            o.remove("type");
            let id = o.remove("id")?.as_u64()?;
            Some((id, Value::Object(o)))
        };
        let body = RawValue::from_string(r#"{"t":"a \"quoted\" }, text"}"#.into()).unwrap();
        let m = Arc::new(Message {
            conv: Conv::room("r1"),
            seq: 3,
            message_id: "m_1".into(),
            from: Some("u_1".into()),
            to: None,
            ts: 7,
            client_msg_id: Some("k".into()),
            body: switchboard_proto::MessageBody(body),
            encoded: Default::default(),
        });
        for id in [
            Some(json!(0)),
            Some(json!(18446744073709551615u64)),
            Some(json!(42)),
        ] {
            let frames = [
                ServerFrame::Published {
                    id: id.clone(),
                    conv: Conv::user("u_2"),
                    seq: 9,
                    message_id: "m_2".into(),
                    ts: 11,
                },
                ServerFrame::History {
                    id: id.clone(),
                    conv: Conv::room("r1"),
                    messages: vec![m.clone(), m.clone()],
                    more: true,
                },
                ServerFrame::History {
                    id: id.clone(),
                    conv: Conv::room("r1"),
                    messages: vec![],
                    more: false,
                },
                ServerFrame::Presence {
                    id: id.clone(),
                    conv: Conv::room("r1"),
                    users: vec![PresenceEntry {
                        user_id: "u_1".into(),
                        connections: 2,
                    }],
                },
            ];
            for frame in frames {
                let bytes = frame.encode();
                let Outgoing::AckObject { id, fields } = outgoing(&bytes) else {
                    panic!(
                        "not read without parsing: {}",
                        String::from_utf8_lossy(&bytes)
                    );
                };
                let args: Value = serde_json::from_str(&ack_object_args(fields).unwrap()).unwrap();
                let (want_id, want) = parsed(&bytes).unwrap();
                assert_eq!((id, args), (want_id, json!([want])));
            }
        }
        let no_ack = ServerFrame::Published {
            id: Some(json!(NO_ACK)),
            conv: Conv::user("u_2"),
            seq: 1,
            message_id: "m".into(),
            ts: 1,
        };
        assert_eq!(outgoing(&no_ack.encode()), Outgoing::Nothing);
        // Other layouts go to the full parse, which gives what it always gave.
        let o = outgoing(br#"{"type":"published","id":1.5,"conv":"user:u_2","seq":1}"#);
        assert_eq!(o, Outgoing::Nothing, "not a u64 ack id");
        let o = outgoing(br#"{"type":"published","conv":"user:u_2","id":4}"#);
        assert_eq!(o, Outgoing::Ack(4, json!({"conv":"user:u_2"})));
        let o = outgoing(br#"{"type":"published","id":4"#);
        assert_eq!(o, Outgoing::Nothing, "cut short");
        let o = outgoing(br#"{"type":"published","id":4}"#);
        assert_eq!(
            o,
            Outgoing::AckObject {
                id: 4,
                fields: b"}"
            }
        );
        assert_eq!(ack_object_args(b"}").unwrap(), "[{}]");
        let o = outgoing(br#"{"type":"published","id":"x","conv":"user:u_2"}"#);
        assert_eq!(o, Outgoing::Nothing, "a string id that is not ours");
    }

    /// A body copied as written reaches the session as a native client's would: verbatim,
    /// whatever values would have made of it (or refused).
    #[test]
    fn bodies_reach_the_session_verbatim() {
        use switchboard_proto::frame::{ClientFrame, parse_client_frame};
        for body in [
            "1e400",
            r#""\ud800""#,
            r#"{"a":1,"a":2}"#,
            "12345678901234567890123",
            "-0",
            r#"[1,  2, "\/"]"#,
        ] {
            let object = format!(r#"{{"conv":"room:r1","body":{body}}}"#);
            let args = [RawValue::from_string(object.clone()).unwrap()];
            let frame = publish_request("publish", &args, Some(1), false).expect("copied");
            let native = format!(r#"{{"type":"publish","id":1,"conv":"room:r1","body":{body}}}"#);
            for text in [frame, native.into_bytes()] {
                let Ok((_, ClientFrame::Publish { body: read, .. })) = parse_client_frame(&text)
                else {
                    panic!("not a publish: {}", String::from_utf8_lossy(&text));
                };
                assert_eq!(read.get(), body, "{object}");
            }
        }
    }

    /// A publish copied as written is the request that values make, or left to them.
    #[test]
    fn publishes_copied_as_written_are_the_requests_values_make() {
        let raw = |t: &str| RawValue::from_string(t.to_owned()).unwrap();
        let cases: &[(&[&str], bool)] = &[
            (
                &[r#"{"conv":"room:r1","body":{"t":"hi","n":[1,2,{"x":null}]}}"#],
                true,
            ),
            (
                &[r#"{"conv":"user:u_2","body":"x","client_msg_id":"k1"}"#],
                true,
            ),
            (
                &[r#"{ "conv" : "room:r\u0031" , "body" : null , "extra" : [1] }"#],
                true,
            ),
            (&[r#"{"conv":"room:r1"}"#], true),
            (&[r#"{"body":1,"client_msg_id":null}"#], true),
            (&[r#"{}"#], true),
            (&[r#"{"conv":"room:r1","body":1}"#, r#""second""#], true),
            (&[r#"{"conv":"room:r1","conv":"room:r2","body":1}"#], false),
            (&[r#""room:r1""#], false),
            (&[r#"[1]"#], false),
            (&[], false),
        ];
        for (args, copied) in cases {
            let args: Vec<Box<RawValue>> = args.iter().map(|a| raw(a)).collect();
            let values: Vec<Value> = args
                .iter()
                .map(|a| serde_json::from_str(a.get()).unwrap())
                .collect();
            for ack in [Some(7), None] {
                let fast = publish_request("publish", &args, ack, false);
                assert_eq!(fast.is_some(), *copied, "{args:?}");
                if let Some(fast) = fast {
                    let slow = request("publish", &values, ack, false).unwrap();
                    let fast: Value = serde_json::from_slice(&fast).unwrap();
                    let slow: Value = serde_json::from_slice(&slow).unwrap();
                    assert_eq!(fast, slow, "{args:?}");
                }
            }
        }
        let one = [raw(r#"{"conv":"room:r1","body":1}"#)];
        assert!(
            publish_request("publish", &one, Some(1), true).is_none(),
            "binary"
        );
        assert!(publish_request("history", &one, Some(1), false).is_none());
    }

    /// A frame over the node's limit is refused with `too_large` (and so acknowledged); one
    /// at the limit goes on.
    #[test]
    fn frames_over_the_node_limit_are_refused_here() {
        let one = [RawValue::from_string(r#"{"conv":"room:r1","body":"xxxx"}"#.into()).unwrap()];
        let frame = publish_request("publish", &one, Some(7), false).unwrap();
        let len = frame.len();
        assert!(
            len > one[0].get().len(),
            "the envelope makes the frame longer"
        );
        assert_eq!(within_limit(frame.clone(), len), Ok(frame.clone()));
        let refused = within_limit(frame, len - 1).unwrap_err();
        assert_eq!(refused.code, ErrorCode::TooLarge);
        assert_eq!(refused.ack_arg()["error"]["code"], "too_large");
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
