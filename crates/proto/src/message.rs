//! The message object: one stored message of one conversation, and its encodings.

use crate::conv::Conv;
use serde::{Deserialize, Serialize, Serializer};
use serde_json::value::RawValue;

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
}

/// The `{"type":"message", ...}` frame, borrowed from a message, in the field order of the contract.
#[derive(Serialize)]
struct MessageFrame<'a> {
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

impl Message {
    /// Encodes the `message` server frame. Done once per message per node; the bytes are then
    /// shared by every local subscriber.
    pub fn encode_frame(&self) -> bytes::Bytes {
        let frame = MessageFrame {
            r#type: "message",
            conv: &self.conv,
            seq: self.seq,
            message_id: &self.message_id,
            from: &self.from,
            to: &self.to,
            ts: self.ts,
            client_msg_id: &self.client_msg_id,
            body: &self.body,
        };
        // Serializing plain strings, numbers and already-valid raw JSON cannot fail.
        bytes::Bytes::from(serde_json::to_vec(&frame).expect("message frame serializes"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frame_keeps_body_verbatim() {
        let m = Message {
            conv: Conv::room("r1"),
            seq: 42,
            message_id: "m_1".into(),
            from: Some("u_1".into()),
            to: None,
            ts: 1,
            client_msg_id: Some("c-17".into()),
            body: MessageBody::from_json(r#"{"text":"hi","n":[1,2]}"#.into()).unwrap(),
        };
        let text = String::from_utf8(m.encode_frame().to_vec()).unwrap();
        assert_eq!(
            text,
            r#"{"type":"message","conv":"room:r1","seq":42,"message_id":"m_1","from":"u_1","to":null,"ts":1,"client_msg_id":"c-17","body":{"text":"hi","n":[1,2]}}"#
        );
    }
}
