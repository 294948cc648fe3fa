//! Socket.IO v5 packets: a pure decoder and encoder over text, with no IO.
//!
//! A packet is `<type>[<attachments>-][<namespace>,][<ack id>][<JSON data>]`: the type digit
//! (`0` CONNECT ... `6` BINARY_ACK), the number of binary attachments for the two binary types,
//! the namespace when it is not `/`, the acknowledgement id, and the data, whose shape depends
//! on the type. The decoder checks all of it, so whatever reaches a handler is well formed; JSON
//! data is kept as raw text (`RawValue`) so that it is written back exactly as it came.

use serde_json::value::RawValue;

/// The largest acknowledgement id: JavaScript's largest safe integer.
pub const MAX_ACK_ID: u64 = (1 << 53) - 1;

/// The seven Socket.IO packet types.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PacketType {
    /// `0`: connect to a namespace (client), or its acceptance (server).
    Connect,
    /// `1`: leave a namespace.
    Disconnect,
    /// `2`: an event: `["name", ...args]`.
    Event,
    /// `3`: an acknowledgement: `[...args]`.
    Ack,
    /// `4`: a refused CONNECT (server only).
    ConnectError,
    /// `5`: an event with binary attachments.
    BinaryEvent,
    /// `6`: an acknowledgement with binary attachments.
    BinaryAck,
}

impl PacketType {
    /// The type's digit.
    pub fn digit(self) -> char {
        match self {
            PacketType::Connect => '0',
            PacketType::Disconnect => '1',
            PacketType::Event => '2',
            PacketType::Ack => '3',
            PacketType::ConnectError => '4',
            PacketType::BinaryEvent => '5',
            PacketType::BinaryAck => '6',
        }
    }

    fn from_digit(c: u8) -> Option<Self> {
        Some(match c {
            b'0' => PacketType::Connect,
            b'1' => PacketType::Disconnect,
            b'2' => PacketType::Event,
            b'3' => PacketType::Ack,
            b'4' => PacketType::ConnectError,
            b'5' => PacketType::BinaryEvent,
            b'6' => PacketType::BinaryAck,
            _ => return None,
        })
    }

    /// Whether packets of this type are followed by binary attachments.
    pub fn is_binary(self) -> bool {
        matches!(self, PacketType::BinaryEvent | PacketType::BinaryAck)
    }
}

/// One decoded Socket.IO packet (the binary attachments, if any, follow it separately).
#[derive(Debug)]
pub struct Packet {
    /// The packet's type.
    pub kind: PacketType,
    /// The namespace, `/` when the packet names none.
    pub nsp: String,
    /// The acknowledgement id, if any.
    pub id: Option<u64>,
    /// The JSON data as it came, if any.
    pub data: Option<Box<RawValue>>,
    /// How many binary attachments follow (0 for the non-binary types).
    pub attachments: usize,
}

/// Bounds the decoder enforces.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    /// Most binary attachments one packet may announce.
    pub max_attachments: usize,
    /// Deepest nesting of arrays and objects in the data.
    pub max_depth: usize,
    /// Longest namespace name, in bytes.
    pub max_namespace_len: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_attachments: 10,
            max_depth: 32,
            max_namespace_len: 128,
        }
    }
}

/// Why text is not a valid Socket.IO packet.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DecodeError {
    /// No type digit, or an unknown one.
    #[error("unknown packet type")]
    UnknownType,
    /// A binary packet whose attachment count is missing, not a number, or has no `-`.
    #[error("bad attachment count")]
    BadAttachments,
    /// More attachments than allowed.
    #[error("more than {0} attachments")]
    TooManyAttachments(usize),
    /// A namespace that is too long or not terminated properly.
    #[error("bad namespace")]
    BadNamespace,
    /// An acknowledgement id that is too large.
    #[error("bad acknowledgement id")]
    BadAckId,
    /// Data that is not JSON.
    #[error("data is not JSON")]
    BadJson,
    /// Data nested deeper than allowed.
    #[error("data nested deeper than {0}")]
    TooDeep(usize),
    /// Data of the wrong shape for the packet type (e.g. an EVENT that is not `["name", ...]`).
    #[error("invalid payload for the packet type")]
    BadPayload,
    /// A binary placeholder that names no attachment, or attachments of a non-binary packet.
    #[error("bad binary placeholder")]
    BadPlaceholder,
}

/// Decodes one Socket.IO packet from the text of an Engine.IO message.
pub fn decode(text: &str, limits: &Limits) -> Result<Packet, DecodeError> {
    let bytes = text.as_bytes();
    let kind = bytes
        .first()
        .and_then(|&c| PacketType::from_digit(c))
        .ok_or(DecodeError::UnknownType)?;
    let mut i = 1;

    let mut attachments = 0usize;
    if kind.is_binary() {
        let start = i;
        while i < bytes.len() && bytes[i].is_ascii_digit() {
            i += 1;
        }
        if i == start || i - start > 6 || bytes.get(i) != Some(&b'-') {
            return Err(DecodeError::BadAttachments);
        }
        attachments = text[start..i]
            .parse()
            .map_err(|_| DecodeError::BadAttachments)?;
        if attachments > limits.max_attachments {
            return Err(DecodeError::TooManyAttachments(limits.max_attachments));
        }
        i += 1;
    }

    let mut nsp = "/";
    if bytes.get(i) == Some(&b'/') {
        let start = i;
        while i < bytes.len() && bytes[i] != b',' {
            i += 1;
        }
        nsp = &text[start..i];
        if nsp.len() > limits.max_namespace_len {
            return Err(DecodeError::BadNamespace);
        }
        if i < bytes.len() {
            i += 1; // the comma
        }
    }

    let mut id = None;
    let start = i;
    while i < bytes.len() && bytes[i].is_ascii_digit() {
        i += 1;
    }
    if i > start {
        let value: u64 = text[start..i].parse().map_err(|_| DecodeError::BadAckId)?;
        if value > MAX_ACK_ID {
            return Err(DecodeError::BadAckId);
        }
        id = Some(value);
    }

    let rest = &text[i..];
    let data = if rest.is_empty() {
        None
    } else {
        if switchboard_proto::depth::exceeds_depth(rest.as_bytes(), limits.max_depth) {
            return Err(DecodeError::TooDeep(limits.max_depth));
        }
        Some(RawValue::from_string(rest.to_owned()).map_err(|_| DecodeError::BadJson)?)
    };
    check_payload(kind, data.as_deref(), id)?;
    Ok(Packet {
        kind,
        nsp: nsp.to_owned(),
        id,
        data,
        attachments,
    })
}

/// The first non-blank byte of a JSON text: tells an object, array or string apart.
fn json_kind(raw: &RawValue) -> u8 {
    raw.get()
        .bytes()
        .find(|b| !b.is_ascii_whitespace())
        .unwrap_or(b' ')
}

/// Checks the data's shape against the packet type, as socket.io's own parser does.
fn check_payload(
    kind: PacketType,
    data: Option<&RawValue>,
    id: Option<u64>,
) -> Result<(), DecodeError> {
    let ok = match kind {
        PacketType::Connect => data.is_none_or(|d| json_kind(d) == b'{'),
        PacketType::Disconnect => data.is_none(),
        PacketType::ConnectError => data.is_some_and(|d| matches!(json_kind(d), b'{' | b'"')),
        // The data is valid JSON (read into a `RawValue`): an array whose first element is a
        // string is `[`, then `"` past any blanks.
        PacketType::Event | PacketType::BinaryEvent => data.is_some_and(|d| {
            let blank = |c| matches!(c, ' ' | '\t' | '\n' | '\r');
            d.get()
                .trim_start_matches(blank)
                .strip_prefix('[')
                .is_some_and(|rest| rest.trim_start_matches(blank).starts_with('"'))
        }),
        PacketType::Ack | PacketType::BinaryAck => {
            id.is_some() && data.is_some_and(|d| json_kind(d) == b'[')
        }
    };
    if ok {
        Ok(())
    } else {
        Err(DecodeError::BadPayload)
    }
}

/// Splits an EVENT's data `["name", ...args]` into the name and the arguments (raw).
pub fn split_event(data: &RawValue) -> Result<(String, Vec<Box<RawValue>>), DecodeError> {
    let mut items: Vec<Box<RawValue>> =
        serde_json::from_str(data.get()).map_err(|_| DecodeError::BadPayload)?;
    if items.is_empty() {
        return Err(DecodeError::BadPayload);
    }
    let name: String =
        serde_json::from_str(items.remove(0).get()).map_err(|_| DecodeError::BadPayload)?;
    Ok((name, items))
}

/// Splits an ACK's data `[...args]` into its arguments (raw).
pub fn split_ack(data: &RawValue) -> Result<Vec<Box<RawValue>>, DecodeError> {
    serde_json::from_str(data.get()).map_err(|_| DecodeError::BadPayload)
}

/// Writes a packet's header (everything before the data) into `out`.
fn header(out: &mut String, kind: PacketType, nsp: &str, id: Option<u64>, attachments: usize) {
    out.push(kind.digit());
    if kind.is_binary() {
        out.push_str(&attachments.to_string());
        out.push('-');
    }
    if nsp != "/" {
        out.push_str(nsp);
        out.push(',');
    }
    if let Some(id) = id {
        out.push_str(&id.to_string());
    }
}

/// Encodes a packet as socket.io writes it: compact, the namespace only when it is not `/`.
/// `data` is JSON text (already compact).
pub fn encode(
    kind: PacketType,
    nsp: &str,
    id: Option<u64>,
    data: Option<&str>,
    attachments: usize,
) -> String {
    let mut out = String::with_capacity(8 + nsp.len() + data.map_or(0, str::len));
    header(&mut out, kind, nsp, id, attachments);
    if let Some(data) = data {
        out.push_str(data);
    }
    out
}

/// Encodes an EVENT (or BINARY_EVENT when `attachments > 0`) whose arguments `args` are a JSON
/// array's text (`[1,"two"]`, or `[]` for none): the data written is `["name",1,"two"]`.
/// `prefix` is written first (`"4"` to get an Engine.IO message's text in one allocation).
pub fn encode_event(
    prefix: &str,
    nsp: &str,
    id: Option<u64>,
    name: &str,
    args: &str,
    attachments: usize,
) -> Result<String, EncodeError> {
    let inner = array_inner(args)?;
    let name = serde_json::to_string(name).map_err(|_| EncodeError::NotAnArray)?;
    let kind = if attachments > 0 {
        PacketType::BinaryEvent
    } else {
        PacketType::Event
    };
    let mut out = String::with_capacity(prefix.len() + 16 + nsp.len() + name.len() + inner.len());
    out.push_str(prefix);
    header(&mut out, kind, nsp, id, attachments);
    out.push('[');
    out.push_str(&name);
    if !inner.trim().is_empty() {
        out.push(',');
        out.push_str(inner);
    }
    out.push(']');
    Ok(out)
}

/// Encodes an EVENT whose arguments are the JSON values `values` (each already encoded), after
/// `prefix`, in one allocation.
pub fn encode_event_values(
    prefix: &str,
    nsp: &str,
    name: &str,
    values: &[&str],
) -> Result<String, EncodeError> {
    let name = serde_json::to_string(name).map_err(|_| EncodeError::NotAnArray)?;
    let len: usize = values.iter().map(|v| v.len() + 1).sum();
    let mut out = String::with_capacity(prefix.len() + 4 + nsp.len() + name.len() + len);
    out.push_str(prefix);
    header(&mut out, PacketType::Event, nsp, None, 0);
    out.push('[');
    out.push_str(&name);
    for v in values {
        out.push(',');
        out.push_str(v);
    }
    out.push(']');
    Ok(out)
}

/// Encodes an ACK (or BINARY_ACK when `attachments > 0`) whose arguments `args` are a JSON
/// array's text, after `prefix`.
pub fn encode_ack(
    prefix: &str,
    nsp: &str,
    id: u64,
    args: &str,
    attachments: usize,
) -> Result<String, EncodeError> {
    array_inner(args)?;
    let kind = if attachments > 0 {
        PacketType::BinaryAck
    } else {
        PacketType::Ack
    };
    let mut out = String::with_capacity(prefix.len() + 16 + nsp.len() + args.len());
    out.push_str(prefix);
    header(&mut out, kind, nsp, Some(id), attachments);
    out.push_str(args);
    Ok(out)
}

/// The text between the brackets of a JSON array's text.
fn array_inner(args: &str) -> Result<&str, EncodeError> {
    let t = args.trim();
    if t.len() >= 2 && t.starts_with('[') && t.ends_with(']') {
        Ok(&t[1..t.len() - 1])
    } else {
        Err(EncodeError::NotAnArray)
    }
}

/// Why arguments cannot be encoded.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EncodeError {
    /// The arguments did not serialize to a JSON array (pass a tuple, array, slice or `Vec`).
    #[error("event arguments must serialize to a JSON array")]
    NotAnArray,
}

#[cfg(test)]
#[path = "packet_tests.rs"]
mod tests;
