//! The message object: one stored message of one conversation, and its encodings.

use crate::conv::Conv;
use bytes::Bytes;
use serde::{Deserialize, Serialize, Serializer};
use serde_json::value::RawValue;
use std::sync::OnceLock;

/// A message body: any JSON value, kept as its raw text so that it is parsed once (to check it
/// is JSON) and never re-encoded on the way to subscribers.
#[derive(Debug, Clone)]
pub struct MessageBody(pub Box<RawValue>);

impl MessageBody {
    /// Wraps already-validated JSON text.
    pub fn from_json(text: String) -> Result<MessageBody, serde_json::Error> {
        RawValue::from_string(text).map(MessageBody)
    }

    /// The raw JSON text.
    pub fn get(&self) -> &str {
        self.0.get()
    }
}

/// Bodies are equal when their JSON text is (no normalization: the text is what is sent).
impl PartialEq for MessageBody {
    fn eq(&self, other: &MessageBody) -> bool {
        self.get() == other.get()
    }
}

impl Serialize for MessageBody {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        self.0.serialize(s)
    }
}

impl<'de> Deserialize<'de> for MessageBody {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        Box::<RawValue>::deserialize(d).map(MessageBody)
    }
}

/// One stored message. `(conv, seq)` identifies it; `seq` is its order in `conv`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Message {
    /// The conversation it belongs to.
    pub conv: Conv,
    /// Its position in `conv`: 1, 2, 3 ... with no gaps.
    pub seq: u64,
    /// Server-made unique id.
    pub message_id: String,
    /// Sender's user id; `None` for server-published messages.
    pub from: Option<String>,
    /// Recipient's user id on direct messages (in both copies).
    pub to: Option<String>,
    /// Server time of storage, in milliseconds since the Unix epoch. Informational: `seq` is the order.
    pub ts: u64,
    /// The sender's idempotency key, if it gave one.
    pub client_msg_id: Option<String>,
    /// The payload.
    pub body: MessageBody,
    /// Its `message` frame, once [`Message::encode_frame`] made it. Not part of the message:
    /// never serialized, always equal, empty in a clone. Build with `encoded: Default::default()`.
    #[serde(skip)]
    pub encoded: EncodedFrame,
}

/// A message's encoded `message` frame, made by the first [`Message::encode_frame`] call and
/// shared by every later one: the sender's session (its own copy, written with its answer) and
/// the node's fan-out hold the same message and so the same bytes. Costs 40 bytes per message,
/// made or not. A made frame lives as long as the message: on the live path no longer than
/// before, since a delivery holds the message and its frame together; a replayed history page
/// uses [`Message::encode_frame_unkept`], so its messages do not hold their frames as well.
#[derive(Default)]
pub struct EncodedFrame(OnceLock<Bytes>);

impl EncodedFrame {
    /// Whether the frame was made.
    pub fn is_made(&self) -> bool {
        self.0.get().is_some()
    }
}

/// A clone starts empty: a cloned message may be changed, and must not keep a stale frame.
impl Clone for EncodedFrame {
    fn clone(&self) -> EncodedFrame {
        EncodedFrame::default()
    }
}

/// A cache, not content: two messages compare by their fields alone.
impl PartialEq for EncodedFrame {
    fn eq(&self, _: &EncodedFrame) -> bool {
        true
    }
}

impl std::fmt::Debug for EncodedFrame {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(if self.is_made() { "made" } else { "not made" })
    }
}

impl Message {
    /// The `message` server frame. Encoded by the first call and kept with the message; later
    /// calls (on this message, or on any clone of its `Arc`) share the same bytes, so a message
    /// is encoded once per node whoever writes it first. Its fields must not change once it
    /// was called (messages are shared as `Arc<Message>` and never changed after storage).
    pub fn encode_frame(&self) -> Bytes {
        self.encoded
            .0
            .get_or_init(|| self.encode_frame_anew())
            .clone()
    }

    /// The `message` frame for a message only one writer will use (a history page replayed to
    /// one connection): the kept frame if there is one, else encoded without keeping it, so
    /// that a page does not hold every frame it wrote alive until it is done.
    pub fn encode_frame_unkept(&self) -> Bytes {
        match self.encoded.0.get() {
            Some(frame) => frame.clone(),
            None => self.encode_frame_anew(),
        }
    }

    /// Encodes the frame without looking at or filling the cache: `{"type":"message","conv":…,
    /// "seq":…,"message_id":…,"from":…,"to":…,"ts":…,"client_msg_id":…,"body":…}`, in the field
    /// order of the contract, compact, absent options as `null`. The keys and punctuation are
    /// written as they are and every value by serde_json (strings escaped as it escapes them, the
    /// body's raw text as it is), so the bytes are what serializing the fields as a struct gave
    /// (a test compares them), without escaping nine constant keys per frame (callgrind: the
    /// struct's serialization was 3,900 instructions per frame, 8% of a DM's).
    fn encode_frame_anew(&self) -> Bytes {
        fn text(out: &mut Vec<u8>, s: &str) {
            // Writing a string into a Vec cannot fail.
            serde_json::to_writer(&mut *out, s).expect("a string serializes");
        }
        fn optional(out: &mut Vec<u8>, s: &Option<String>) {
            match s {
                Some(s) => text(out, s),
                None => out.extend_from_slice(b"null"),
            }
        }
        fn number(out: &mut Vec<u8>, n: u64) {
            serde_json::to_writer(&mut *out, &n).expect("a number serializes");
        }
        let body = self.body.get();
        let strings = self.conv.as_str().len()
            + self.message_id.len()
            + self.from.as_ref().map_or(0, String::len)
            + self.to.as_ref().map_or(0, String::len)
            + self.client_msg_id.as_ref().map_or(0, String::len);
        let mut out = Vec::with_capacity(160 + strings + body.len());
        out.extend_from_slice(br#"{"type":"message","conv":"#);
        text(&mut out, self.conv.as_str());
        out.extend_from_slice(br#","seq":"#);
        number(&mut out, self.seq);
        out.extend_from_slice(br#","message_id":"#);
        text(&mut out, &self.message_id);
        out.extend_from_slice(br#","from":"#);
        optional(&mut out, &self.from);
        out.extend_from_slice(br#","to":"#);
        optional(&mut out, &self.to);
        out.extend_from_slice(br#","ts":"#);
        number(&mut out, self.ts);
        out.extend_from_slice(br#","client_msg_id":"#);
        optional(&mut out, &self.client_msg_id);
        out.extend_from_slice(br#","body":"#);
        out.extend_from_slice(body.as_bytes());
        out.push(b'}');
        Bytes::from(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The frame as a derived struct serialized it (the encoding before the literal keys): the
    /// reference the frame must match byte for byte.
    #[derive(Serialize)]
    struct Reference<'a> {
        r#type: &'static str,
        conv: &'a Conv,
        seq: u64,
        message_id: &'a str,
        from: &'a Option<String>,
        to: &'a Option<String>,
        ts: u64,
        client_msg_id: &'a Option<String>,
        body: &'a MessageBody,
    }

    fn reference(m: &Message) -> Vec<u8> {
        serde_json::to_vec(&Reference {
            r#type: "message",
            conv: &m.conv,
            seq: m.seq,
            message_id: &m.message_id,
            from: &m.from,
            to: &m.to,
            ts: m.ts,
            client_msg_id: &m.client_msg_id,
            body: &m.body,
        })
        .unwrap()
    }

    #[test]
    fn the_frame_is_byte_for_byte_what_the_struct_serialized() {
        let strings = [
            "",
            "plain",
            "quo\"te and back\\slash",
            "ctl \u{0} \u{1f} \u{7f} \n\r\t \u{8} \u{c}",
            "é ü 中文 🎉 \u{2028}\u{2029} \u{fffd}",
            "</script><!-- & ' ",
        ];
        let bodies = [
            "{}",
            r#"{"text":"hi","n":[1,2.5e3,-0,null,true]}"#,
            r#""a string body""#,
            "12345678901234567890123",
            "[ 1 , { \"a\" : [ ] } ]",
        ];
        let mut n = 0u64;
        for (i, s) in strings.iter().enumerate() {
            for body in bodies {
                for (seq, ts) in [(0, 0), (1, 1_700_000_000_000), (u64::MAX, u64::MAX)] {
                    let some = |k: usize| {
                        k.is_multiple_of(2)
                            .then(|| strings[(i + k) % strings.len()].to_string())
                    };
                    let m = Message {
                        conv: Conv::room("r1"),
                        seq,
                        message_id: s.to_string(),
                        from: some(n as usize),
                        to: some(n as usize + 1),
                        ts,
                        client_msg_id: some(n as usize + 3),
                        body: MessageBody::from_json(body.into()).unwrap(),
                        encoded: Default::default(),
                    };
                    assert_eq!(
                        String::from_utf8(m.encode_frame().to_vec()).unwrap(),
                        String::from_utf8(reference(&m)).unwrap()
                    );
                    n += 1;
                }
            }
        }
        let dm = Message {
            conv: Conv::user("u_2"),
            to: Some("u_2".into()),
            ..message()
        };
        assert_eq!(dm.encode_frame_unkept().to_vec(), reference(&dm));
    }

    fn message() -> Message {
        Message {
            conv: Conv::room("r1"),
            seq: 42,
            message_id: "m_1".into(),
            from: Some("u_1".into()),
            to: None,
            ts: 1,
            client_msg_id: Some("c-17".into()),
            body: MessageBody::from_json(r#"{"text":"hi","n":[1,2]}"#.into()).unwrap(),
            encoded: Default::default(),
        }
    }

    #[test]
    fn frame_keeps_body_verbatim() {
        let text = String::from_utf8(message().encode_frame().to_vec()).unwrap();
        assert_eq!(
            text,
            r#"{"type":"message","conv":"room:r1","seq":42,"message_id":"m_1","from":"u_1","to":null,"ts":1,"client_msg_id":"c-17","body":{"text":"hi","n":[1,2]}}"#
        );
    }

    #[test]
    fn a_message_is_encoded_once_and_every_writer_shares_the_bytes() {
        let m = std::sync::Arc::new(message());
        let held_elsewhere = m.clone();
        let first = m.encode_frame();
        assert!(m.encoded.is_made());
        let again = held_elsewhere.encode_frame();
        assert_eq!(
            first.as_ptr(),
            again.as_ptr(),
            "the same bytes, not a second encoding"
        );
        assert_eq!(first, m.encode_frame_anew());
        assert_eq!(
            m.encode_frame_unkept().as_ptr(),
            first.as_ptr(),
            "the kept frame"
        );
    }

    #[test]
    fn a_frame_made_unkept_is_not_kept() {
        let m = message();
        assert_eq!(m.encode_frame_unkept(), m.encode_frame_anew());
        assert!(!m.encoded.is_made());
    }

    #[test]
    fn the_frame_is_not_content_serialized_compared_or_cloned() {
        let m = message();
        let plain = serde_json::to_string(&m).unwrap();
        m.encode_frame();
        assert_eq!(
            serde_json::to_string(&m).unwrap(),
            plain,
            "serde shape unchanged"
        );
        assert!(!plain.contains("encoded"), "{plain}");
        let read: Message = serde_json::from_str(&plain).unwrap();
        assert!(!read.encoded.is_made());
        assert_eq!(read, m, "equal whether encoded or not");
        let mut changed = m.clone();
        assert!(!changed.encoded.is_made(), "a clone starts empty");
        changed.seq = 43;
        assert!(String::from_utf8_lossy(&changed.encode_frame()).contains(r#""seq":43"#));
    }

    #[cfg(target_pointer_width = "64")]
    #[test]
    fn the_cache_costs_40_bytes_per_message() {
        assert_eq!(std::mem::size_of::<EncodedFrame>(), 40);
    }
}
