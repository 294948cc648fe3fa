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
