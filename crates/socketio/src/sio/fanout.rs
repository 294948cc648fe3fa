//! The fan-out path of an event sent to many sockets with arguments that differ per socket
//! (a shared message and a per-socket value, say): [`EventHead`] is the packet's start, encoded
//! once, and [`Socket::emit_values`] sends it with the socket's arguments. On a WebSocket whose
//! plain socket the session writes directly, with nothing queued, the frame is written from
//! those parts with one `sendmsg` and nothing is copied or allocated; otherwise the parts are
//! joined into one packet and queued, as [`Socket::send`] does.

use super::packet::encode_event_values;
use super::socket::{EmitError, Socket};

/// The start of an EVENT packet of one name in one namespace (`42["message"` or
/// `42/chat,["message"`), encoded once and used for any number of
/// [`emit_values`](Socket::emit_values).
#[derive(Debug, Clone)]
pub struct EventHead {
    /// The Engine.IO message's text up to the event's name, included.
    text: Box<str>,
    nsp: Box<str>,
}

impl EventHead {
    /// The head of event `event` in namespace `nsp`.
    pub fn new(nsp: &str, event: &str) -> Result<Self, EmitError> {
        let mut text = encode_event_values("4", nsp, event, &[])?;
        // `42["name"]`: the closing bracket comes after the arguments.
        text.pop();
        Ok(EventHead {
            text: text.into(),
            nsp: nsp.into(),
        })
    }
}

/// Arguments written from their parts at most (more are joined first).
const MAX_VALUES: usize = 7;

impl Socket {
    /// Emits the event of `head` with the arguments `values`, each a JSON value's text already
    /// encoded (the caller vouches that each is JSON), written as they are. `head` must be of
    /// this socket's namespace.
    pub fn emit_values(&self, head: &EventHead, values: &[&str]) -> Result<(), EmitError> {
        if *head.nsp != *self.namespace() {
            return Err(EmitError::WrongNamespace);
        }
        if !self.is_connected() {
            return Err(EmitError::Disconnected);
        }
        if values.len() > MAX_VALUES {
            let mut text = String::from(&*head.text);
            for v in values {
                text.push(',');
                text.push_str(v);
            }
            text.push(']');
            let parts: [&[u8]; 1] = [text.as_bytes()];
            return Ok(self.conn().send_text_parts(&parts)?);
        }
        let mut parts: [&[u8]; 2 * MAX_VALUES + 2] = [&[]; 2 * MAX_VALUES + 2];
        parts[0] = head.text.as_bytes();
        // The frame's length, counted while the parts are gathered (not summed again below).
        let mut len = head.text.len() + 1;
        let mut n = 1;
        for v in values {
            parts[n] = b",";
            parts[n + 1] = v.as_bytes();
            len += 1 + v.len();
            n += 2;
        }
        parts[n] = b"]";
        Ok(self.conn().send_text_parts_of(&parts[..=n], len)?)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn heads_are_the_packets_start() {
        assert_eq!(
            &*EventHead::new("/", "message").unwrap().text,
            r#"42["message""#
        );
        assert_eq!(
            &*EventHead::new("/chat", "a\"b").unwrap().text,
            r#"42/chat,["a\"b""#
        );
    }
}
