//! What a direct Socket.IO WebSocket ([`super::ws_session`]) reads, as pure functions with no
//! IO: bytes become WebSocket messages ([`WsDecoder`]), Engine.IO packets, then Socket.IO
//! packets (a binary one with its attachments) in [`Reading`]; a packet becomes what the
//! session does with it in [`action`]. [`check_reading`] is the `sio_ws` fuzz target's
//! property: the same actions however the bytes are split, and no panic.

use super::translate::{self, NO_ACK};
use crate::decode::{WsDecoder, WsItem};
use bytes::{Bytes, BytesMut};
use serde_json::Value;
use switchboard_core::transport::{Inbound, Refused};
use switchboard_socketio::sio::binary::{Partial, check_placeholders};
use switchboard_socketio::sio::packet::{
    Limits, Packet, PacketType, decode, split_ack, split_event,
};

/// What the connection read: a Socket.IO packet (with whether it carried binary attachments),
/// a WebSocket ping (for the session to answer), or proof of life.
#[derive(Debug)]
pub enum Step {
    /// A Socket.IO packet, and whether binary attachments came with it.
    Packet(Packet, bool),
    /// A WebSocket ping with its payload.
    Ping(Bytes),
    /// A pong (or anything else that says the client is there).
    Alive,
}

/// The reading state of a direct connection: bytes, WebSocket frames, Engine.IO packets,
/// Socket.IO packets (binary ones with their attachments).
pub struct Reading {
    /// Bytes read but not yet decoded; empty (no allocation) between frames.
    buf: BytesMut,
    decoder: WsDecoder,
    /// A binary packet waiting for its attachments (boxed: rare, and every idle connection
    /// would keep its room).
    partial: Option<Box<Partial>>,
    /// `maxPayload`, for a binary packet's attachments together.
    max_payload: u32,
    /// The client left, or broke the protocol: nothing more is read.
    ended: bool,
}

impl Reading {
    /// Reading messages of at most `max_payload` bytes, starting with `read` (the bytes that
    /// came with the upgrade request).
    pub fn new(read: Bytes, max_payload: usize) -> Reading {
        Reading {
            buf: BytesMut::from(&read[..]),
            decoder: WsDecoder::new(max_payload),
            partial: None,
            max_payload: u32::try_from(max_payload).unwrap_or(u32::MAX),
            ended: false,
        }
    }

    /// Where bytes read from the socket go.
    pub fn buf_mut(&mut self) -> &mut BytesMut {
        &mut self.buf
    }

    /// Whether nothing more is read (the client left or broke the protocol).
    pub fn is_over(&self) -> bool {
        self.ended
    }

    /// Nothing more is read: the client left (or the socket ended).
    pub fn end(&mut self) {
        self.ended = true;
    }

    /// The next step in what was read so far; `None` when more bytes are needed, or once the
    /// reading is over.
    pub fn next_step(&mut self) -> Option<Step> {
        while !self.ended {
            match self.decoder.decode(&mut self.buf) {
                Err(e) => {
                    tracing::debug!(code = e.code, why = e.why, "Socket.IO WebSocket error");
                    self.ended = true;
                }
                Ok(Some(item)) => {
                    if let Some(step) = self.on_item(item) {
                        return Some(step);
                    }
                }
                Ok(None) => return None,
            }
        }
        None
    }

    /// Ends the reading: the client broke the protocol (Engine.IO closes such a session).
    pub fn fail(&mut self, why: &'static str) {
        tracing::debug!(why, "Socket.IO protocol error");
        self.ended = true;
    }

    fn failed(&mut self, why: &'static str) -> Option<Step> {
        self.fail(why);
        None
    }

    fn on_item(&mut self, item: WsItem) -> Option<Step> {
        match item {
            WsItem::Message(text) => self.on_text(&text),
            WsItem::Binary(data) => {
                let max = self.max_payload as usize;
                let Some(partial) = self.partial.as_mut() else {
                    return self.failed("a binary message with no packet waiting for it");
                };
                if partial.held_bytes() + data.len() > max {
                    return self.failed("attachments over maxPayload");
                }
                if !partial.push(data) {
                    return None;
                }
                match self.partial.take().map(|p| p.finish()) {
                    Some(Ok((packet, _))) => Some(Step::Packet(packet, true)),
                    _ => self.failed("bad binary placeholders"),
                }
            }
            WsItem::TooLarge(_) => self.failed("a message over maxPayload"),
            WsItem::Ping(payload) => Some(Step::Ping(payload)),
            WsItem::Pong => Some(Step::Alive),
            WsItem::Close(_) => {
                self.ended = true;
                None
            }
        }
    }

    /// One Engine.IO packet (a text message).
    fn on_text(&mut self, text: &[u8]) -> Option<Step> {
        if self.partial.is_some() {
            return self.failed("a text message while attachments were expected");
        }
        let Ok(text) = std::str::from_utf8(text) else {
            return self.failed("not UTF-8");
        };
        match text.as_bytes().first() {
            Some(b'4') => {
                let Ok(packet) = decode(&text[1..], &Limits::default()) else {
                    return self.failed("a malformed Socket.IO packet");
                };
                if packet.kind.is_binary() && packet.attachments > 0 {
                    self.partial = Some(Box::new(Partial::new(packet)));
                    return None;
                }
                if packet.kind.is_binary() {
                    let data = packet.data.as_deref().map_or("null", |d| d.get());
                    if check_placeholders(data, 0).is_err() {
                        return self.failed("bad binary placeholders");
                    }
                }
                Some(Step::Packet(packet, false))
            }
            // A pong, or a client's ping (Engine.IO 3 had them; protocol 4 clients send none):
            // proof of life. The library answers a ping; here the session's heartbeat does.
            Some(b'3' | b'2') => Some(Step::Alive),
            Some(b'6') => None,
            Some(b'1') => {
                self.ended = true;
                None
            }
            _ => self.failed("not an Engine.IO packet a client sends on a WebSocket"),
        }
    }
}

/// What the session does with a packet read once connected.
#[derive(Debug)]
pub enum Action {
    /// Hands this to the session (an event as a request frame, a refusal, proof of life, a
    /// ping to answer).
    Inbound(Inbound),
    /// Answers a CONNECT to a namespace that does not exist.
    InvalidNamespace(String),
    /// The client left `/` on purpose (nothing to recover).
    Left,
    /// A protocol violation: the connection ends.
    Fail(&'static str),
    /// Nothing (a repeat CONNECT, the client's acknowledgements, another namespace's events).
    Nothing,
}

/// What a step read once connected becomes, events checked against the node's frame limit
/// `max_frame`: as on the library's sockets.
pub fn action(step: Step, max_frame: usize) -> Action {
    let (packet, binary) = match step {
        Step::Alive => return Action::Inbound(Inbound::Alive),
        Step::Ping(payload) => return Action::Inbound(Inbound::Ping(payload)),
        Step::Packet(packet, binary) => (packet, binary),
    };
    match packet.kind {
        PacketType::Event | PacketType::BinaryEvent => {
            let Some(Ok((name, args))) = packet.data.as_deref().map(split_event) else {
                return Action::Fail("an event that is not [name, ...args]");
            };
            // Events for a namespace the client is not connected to are dropped.
            if packet.nsp != "/" {
                return Action::Nothing;
            }
            match translate::event_frame(&name, &args, packet.id, binary, max_frame) {
                Ok(frame) => Action::Inbound(Inbound::Frame(frame.into())),
                // Answered by the session, in order with its replies (an event that asked for
                // no acknowledgement gets none: its id is `NO_ACK`).
                Err(refusal) => Action::Inbound(Inbound::Refused(Box::new(Refused {
                    id: Some(packet.id.map_or(Value::from(NO_ACK), Value::from)),
                    code: refusal.code,
                    message: refusal.message,
                }))),
            }
        }
        // The server asks for no acknowledgement: the client's are read and dropped.
        PacketType::Ack | PacketType::BinaryAck => match packet.data.as_deref().map(split_ack) {
            Some(Ok(_)) => Action::Nothing,
            _ => Action::Fail("an acknowledgement that is not an array"),
        },
        // A repeat CONNECT to `/` is ignored, as socket.io does.
        PacketType::Connect if packet.nsp == "/" => Action::Nothing,
        PacketType::Connect => Action::InvalidNamespace(packet.nsp),
        PacketType::Disconnect if packet.nsp == "/" => Action::Left,
        PacketType::Disconnect => Action::Nothing,
        PacketType::ConnectError => Action::Fail("a CONNECT_ERROR from the client"),
    }
}

/// Everything `chunks` (client WebSocket frames, fed one chunk after another) make, described
/// for comparison, with the end of the reading last.
pub fn read_all(max_payload: usize, chunks: &[&[u8]]) -> Vec<String> {
    let mut reading = Reading::new(Bytes::new(), max_payload);
    let mut out = Vec::new();
    for chunk in chunks {
        reading.buf_mut().extend_from_slice(chunk);
        while let Some(step) = reading.next_step() {
            match action(step, max_payload) {
                Action::Fail(why) => reading.fail(why),
                Action::Left => reading.end(),
                a => out.push(format!("{a:?}")),
            }
        }
    }
    if reading.is_over() {
        out.push("over".into());
    }
    out
}

/// The `sio_ws` fuzz property: the input (its first byte picks a split point and a small
/// `maxPayload`) read whole and split in two gives the same actions. Panics if not. Returns
/// how many there were.
pub fn check_reading(data: &[u8]) -> usize {
    let Some((&k, rest)) = data.split_first() else {
        return 0;
    };
    let at = ((k as usize * rest.len()) / 255).min(rest.len());
    let max = 64 + (k as usize % 4) * 100;
    let once = read_all(max, &[rest]);
    let split = read_all(max, &[&rest[..at], &rest[at..]]);
    assert_eq!(once, split, "split at {at}");
    once.len()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A masked client frame.
    fn frame(opcode: u8, payload: &[u8]) -> Vec<u8> {
        crate::decode::tests::ws_frame(true, opcode, payload, true, false)
    }

    #[test]
    fn packets_become_actions_however_the_bytes_are_split() {
        let mut bytes = Vec::new();
        for text in [
            r#"421["publish",{"conv":"room:a","body":{"x":1}}]"#,
            r#"422["shout"]"#,
            "3",
            "2",
            r#"40/admin,{}"#,
            r#"40{"token":"again"}"#,
            r#"431[1]"#,
            r#"451-3["publish",{"conv":"room:a","body":{"_placeholder":true,"num":0}}]"#,
        ] {
            bytes.extend(frame(0x1, text.as_bytes()));
        }
        bytes.extend(frame(0x2, b"\x01\x02"));
        bytes.extend(frame(0x9, b"hi"));
        bytes.extend(frame(0x1, b"41"));
        bytes.extend(frame(0x1, r#"42["after","the","end"]"#.as_bytes()));
        let once = read_all(4096, &[&bytes]);
        let kinds: Vec<&str> = once
            .iter()
            .map(|a| &a[..a.find('(').unwrap_or(a.len())])
            .collect();
        assert_eq!(
            kinds,
            [
                "Inbound",
                "Inbound",
                "Inbound",
                "Inbound",
                "InvalidNamespace",
                "Nothing",
                "Nothing",
                "Inbound",
                "Inbound",
                "over"
            ],
            "{once:#?}"
        );
        assert!(once[0].contains("publish"), "{}", once[0]);
        assert!(
            once[1].contains("Refused") && once[1].contains("BadRequest"),
            "{}",
            once[1]
        );
        assert!(
            once[7].contains("Refused") && once[7].contains("binary"),
            "{}",
            once[7]
        );
        for at in 0..bytes.len() {
            assert_eq!(
                once,
                read_all(4096, &[&bytes[..at], &bytes[at..]]),
                "split at {at}"
            );
        }
    }

    #[test]
    fn violations_end_the_reading() {
        for bad in [
            frame(0x1, b"9"),
            frame(0x1, b"49"),
            frame(0x1, br#"42{"a":1}"#),
            frame(0x1, br#"4511-["x"]"#),
            frame(0x2, b"stray"),
            frame(0x1, b"0"),
            frame(0x1, b"44{}"),
            frame(0x1, &[b'4'; 5000]),
            crate::decode::tests::ws_frame(true, 0x1, b"unmasked", false, false),
        ] {
            assert_eq!(read_all(4096, &[&bad]), ["over"], "{bad:?}");
        }
    }
}
