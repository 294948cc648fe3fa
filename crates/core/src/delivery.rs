//! A message on its way to a node's local subscribers. Its own module so that the hub (which
//! makes deliveries) and the connection (which takes them) both depend on it and not on each
//! other.

use bytes::Bytes;
use std::sync::Arc;
use switchboard_proto::{Conv, Message};

/// A message on its way to local subscribers: the message and its encoded frame, shared.
#[derive(Debug)]
pub struct Delivery {
    /// The conversation, as the hub names it: the very name its subscribers were given by
    /// [`Hub::subscribe`](crate::hub::Hub::subscribe), so the fan-out finds a connection's subscription by a pointer
    /// compare instead of reading and comparing the text of every connection's copy.
    pub conv: Conv,
    /// The message (its conv and seq drive ordering and deduplication).
    pub message: Arc<Message>,
    /// The `{"type":"message",...}` frame, encoded once per node: the bytes kept with
    /// `message` (see [`Message::encode_frame`]).
    pub frame: Bytes,
}

/// A stored message of `conv` with seq `seq` and the body `1`, for tests.
#[cfg(test)]
pub(crate) fn test_message(conv: &Conv, seq: u64) -> Arc<Message> {
    Arc::new(Message {
        conv: conv.clone(),
        seq,
        message_id: format!("m{seq}"),
        from: None,
        to: None,
        ts: 0,
        client_msg_id: None,
        body: switchboard_proto::MessageBody::from_json("1".into()).expect("a JSON body"),
        encoded: Default::default(),
    })
}
