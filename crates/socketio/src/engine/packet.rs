//! Engine.IO v4 packets and HTTP long-polling payloads: pure decoders and encoders over bytes,
//! with no IO, so that every byte boundary and every error case can be tested (and fuzzed).
//!
//! A packet is one type digit (`0` open ... `6` noop) followed by its data. A WebSocket text
//! frame holds one packet and a binary frame holds one binary message. A polling payload holds
//! packets separated by the record separator `\x1e`; a binary message in it is `b` followed by
//! its base64.

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use bytes::Bytes;

/// The record separator between packets of a polling payload.
pub const SEPARATOR: u8 = 0x1e;

/// One Engine.IO packet.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Packet {
    /// `0`: the handshake, with its JSON (sent by the server only).
    Open(String),
    /// `1`: the end of the session.
    Close,
    /// `2`: a ping, with optional data (`probe` during an upgrade).
    Ping(String),
    /// `3`: the answer to a ping, with the ping's data.
    Pong(String),
    /// `4`: a text message.
    Message(String),
    /// A binary message (a WebSocket binary frame, or `b<base64>` in a polling payload).
    Binary(Bytes),
    /// `5`: the end of an upgrade to WebSocket.
    Upgrade,
    /// `6`: a packet that carries nothing (ends a pending poll during an upgrade).
    Noop,
}

/// Why bytes are not an Engine.IO packet or payload.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DecodeError {
    /// An empty packet (no type digit).
    #[error("empty packet")]
    Empty,
    /// The first character is not a packet type `0`-`6`.
    #[error("unknown packet type {0:?}")]
    UnknownType(char),
    /// The text is not UTF-8.
    #[error("packet is not UTF-8")]
    NotUtf8,
    /// A `b` packet whose data is not base64.
    #[error("binary packet is not base64")]
    BadBase64,
    /// The payload holds more packets than allowed.
    #[error("payload holds more than {0} packets")]
    TooManyPackets(usize),
    /// The client sent a packet that only a server sends (`open`).
    #[error("packet type not allowed from a client")]
    NotFromClient,
}

impl Packet {
    /// The packet's type digit (`b` for binary in a payload).
    fn type_char(&self) -> u8 {
        match self {
            Packet::Open(_) => b'0',
            Packet::Close => b'1',
            Packet::Ping(_) => b'2',
            Packet::Pong(_) => b'3',
            Packet::Message(_) => b'4',
            Packet::Binary(_) => b'b',
            Packet::Upgrade => b'5',
            Packet::Noop => b'6',
        }
    }
}

/// Decodes one text packet (a WebSocket text frame, or one part of a polling payload).
pub fn decode_text(text: &str) -> Result<Packet, DecodeError> {
    let mut chars = text.chars();
    let first = chars.next().ok_or(DecodeError::Empty)?;
    let data = chars.as_str();
    Ok(match first {
        '0' => Packet::Open(data.to_owned()),
        '1' => Packet::Close,
        '2' => Packet::Ping(data.to_owned()),
        '3' => Packet::Pong(data.to_owned()),
        '4' => Packet::Message(data.to_owned()),
        '5' => Packet::Upgrade,
        '6' => Packet::Noop,
        other => return Err(DecodeError::UnknownType(other)),
    })
}

/// Decodes one WebSocket frame: text frames are packets, binary frames binary messages.
pub fn decode_frame(bytes: &[u8], binary: bool) -> Result<Packet, DecodeError> {
    if binary {
        return Ok(Packet::Binary(Bytes::copy_from_slice(bytes)));
    }
    let text = std::str::from_utf8(bytes).map_err(|_| DecodeError::NotUtf8)?;
    decode_text(text)
}

/// Decodes a polling payload (a POST body) into its packets, at most `max_packets` of them.
/// The caller bounds the body's length by `maxPayload` before.
pub fn decode_payload(body: &[u8], max_packets: usize) -> Result<Vec<Packet>, DecodeError> {
    let mut packets = Vec::new();
    for part in body.split(|&b| b == SEPARATOR) {
        if packets.len() == max_packets {
            return Err(DecodeError::TooManyPackets(max_packets));
        }
        let packet = match part.split_first() {
            Some((b'b', base64)) => Packet::Binary(Bytes::from(
                BASE64.decode(base64).map_err(|_| DecodeError::BadBase64)?,
            )),
            _ => decode_frame(part, false)?,
        };
        packets.push(packet);
    }
    Ok(packets)
}

/// Encodes one packet as a WebSocket text frame's text (binary messages go in binary frames,
/// for which this returns `None`).
pub fn encode_text(packet: &Packet) -> Option<String> {
    let data = match packet {
        Packet::Binary(_) => return None,
        Packet::Open(d) | Packet::Ping(d) | Packet::Pong(d) | Packet::Message(d) => d.as_str(),
        Packet::Close | Packet::Upgrade | Packet::Noop => "",
    };
    let mut out = String::with_capacity(1 + data.len());
    out.push(packet.type_char() as char);
    out.push_str(data);
    Some(out)
}

/// Appends one packet to a polling payload being built in `out` (with the separator before it
/// when `out` is not empty). `text` is the packet already encoded as text (`4hello`), or the
/// bytes of a binary message when `binary` is true.
pub fn append_to_payload(out: &mut Vec<u8>, text: &[u8], binary: bool) {
    if !out.is_empty() {
        out.push(SEPARATOR);
    }
    if binary {
        out.push(b'b');
        let start = out.len();
        out.resize(
            start + base64::encoded_len(text.len(), true).unwrap_or(0),
            0,
        );
        let written = BASE64.encode_slice(text, &mut out[start..]).unwrap_or(0);
        out.truncate(start + written);
    } else {
        out.extend_from_slice(text);
    }
}

/// Encodes packets as a polling payload.
pub fn encode_payload(packets: &[Packet]) -> Vec<u8> {
    let mut out = Vec::new();
    for packet in packets {
        match packet {
            Packet::Binary(b) => append_to_payload(&mut out, b, true),
            other => {
                let text = encode_text(other).unwrap_or_default();
                append_to_payload(&mut out, text.as_bytes(), false)
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_text_packet_type() {
        assert_eq!(decode_text("0{}"), Ok(Packet::Open("{}".into())));
        assert_eq!(decode_text("1"), Ok(Packet::Close));
        assert_eq!(decode_text("2"), Ok(Packet::Ping(String::new())));
        assert_eq!(decode_text("2probe"), Ok(Packet::Ping("probe".into())));
        assert_eq!(decode_text("3probe"), Ok(Packet::Pong("probe".into())));
        assert_eq!(decode_text("4héllo"), Ok(Packet::Message("héllo".into())));
        assert_eq!(decode_text("5"), Ok(Packet::Upgrade));
        assert_eq!(decode_text("6"), Ok(Packet::Noop));
    }

    #[test]
    fn text_errors() {
        assert_eq!(decode_text(""), Err(DecodeError::Empty));
        assert_eq!(decode_text("abc"), Err(DecodeError::UnknownType('a')));
        assert_eq!(decode_text("7"), Err(DecodeError::UnknownType('7')));
        assert_eq!(decode_text("é"), Err(DecodeError::UnknownType('é')));
        assert_eq!(
            decode_frame(&[b'4', 0xff], false),
            Err(DecodeError::NotUtf8)
        );
    }

    #[test]
    fn binary_frames_are_binary_messages() {
        assert_eq!(
            decode_frame(&[1, 2, 3], true),
            Ok(Packet::Binary(Bytes::from_static(&[1, 2, 3])))
        );
    }

    #[test]
    fn payloads_round_trip() {
        let body = b"4hello\x1ebAQIDBA==\x1e2\x1e6";
        let packets = decode_payload(body, 16).unwrap();
        assert_eq!(
            packets,
            vec![
                Packet::Message("hello".into()),
                Packet::Binary(Bytes::from_static(&[1, 2, 3, 4])),
                Packet::Ping(String::new()),
                Packet::Noop
            ]
        );
        assert_eq!(encode_payload(&packets), body.to_vec());
    }

    #[test]
    fn payload_errors() {
        assert_eq!(decode_payload(b"", 4), Err(DecodeError::Empty));
        assert_eq!(decode_payload(b"4a\x1e", 4), Err(DecodeError::Empty));
        assert_eq!(
            decode_payload(b"bnot base64!", 4),
            Err(DecodeError::BadBase64)
        );
        assert_eq!(
            decode_payload(b"4a\x1e4b\x1e4c", 2),
            Err(DecodeError::TooManyPackets(2))
        );
        assert_eq!(
            decode_payload(b"4a\x1ex", 4),
            Err(DecodeError::UnknownType('x'))
        );
    }

    #[test]
    fn empty_binary_in_payload() {
        assert_eq!(
            decode_payload(b"b", 4),
            Ok(vec![Packet::Binary(Bytes::new())])
        );
        assert_eq!(
            encode_payload(&[Packet::Binary(Bytes::new())]),
            b"b".to_vec()
        );
    }
}
