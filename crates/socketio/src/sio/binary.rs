//! Binary attachments: the reassembly of a BINARY_EVENT or BINARY_ACK with the binary messages
//! that follow it, and the check that every placeholder `{"_placeholder":true,"num":N}` in its
//! data names one of them. Pure, no IO.

use bytes::Bytes;
use serde_json::Value;

use super::packet::{DecodeError, Packet};

/// A binary packet waiting for its attachments.
#[derive(Debug)]
pub struct Partial {
    packet: Packet,
    buffers: Vec<Bytes>,
}

impl Partial {
    /// Starts collecting the attachments of `packet` (a binary packet with `attachments > 0`).
    pub fn new(packet: Packet) -> Self {
        let buffers = Vec::with_capacity(packet.attachments);
        Partial { packet, buffers }
    }

    /// Adds the next attachment; returns true when all have come.
    pub fn push(&mut self, buffer: Bytes) -> bool {
        self.buffers.push(buffer);
        self.buffers.len() >= self.packet.attachments
    }

    /// Bytes held so far (bounded by the caller against `maxPayload`).
    pub fn held_bytes(&self) -> usize {
        self.buffers.iter().map(Bytes::len).sum()
    }

    /// The complete packet and its attachments, once every placeholder is checked.
    pub fn finish(self) -> Result<(Packet, Vec<Bytes>), DecodeError> {
        let data = self
            .packet
            .data
            .as_deref()
            .map(|d| d.get())
            .unwrap_or("null");
        check_placeholders(data, self.buffers.len())?;
        Ok((self.packet, self.buffers))
    }
}

/// Checks that every placeholder in the JSON text `data` names an attachment below `count`
/// (and that a packet with attachments has no malformed placeholder).
pub fn check_placeholders(data: &str, count: usize) -> Result<(), DecodeError> {
    let value: Value = serde_json::from_str(data).map_err(|_| DecodeError::BadJson)?;
    if walk(&value, count) {
        Ok(())
    } else {
        Err(DecodeError::BadPlaceholder)
    }
}

fn walk(value: &Value, count: usize) -> bool {
    match value {
        Value::Array(items) => items.iter().all(|v| walk(v, count)),
        Value::Object(map) => {
            if map.get("_placeholder") == Some(&Value::Bool(true)) {
                return map
                    .get("num")
                    .and_then(Value::as_u64)
                    .is_some_and(|n| (n as usize) < count);
            }
            map.values().all(|v| walk(v, count))
        }
        _ => true,
    }
}

/// The JSON text of the placeholder for attachment `num`, as socket.io writes it.
pub fn placeholder(num: usize) -> String {
    format!(r#"{{"_placeholder":true,"num":{num}}}"#)
}

#[cfg(test)]
mod tests {
    use super::super::packet::{Limits, decode};
    use super::*;

    #[test]
    fn reassembles_in_order() {
        let p = decode(
            r#"52-["m",{"_placeholder":true,"num":0},{"_placeholder":true,"num":1}]"#,
            &Limits::default(),
        )
        .unwrap();
        let mut partial = Partial::new(p);
        assert!(!partial.push(Bytes::from_static(&[1, 2, 3])));
        assert!(partial.push(Bytes::from_static(&[4, 5, 6])));
        assert_eq!(partial.held_bytes(), 6);
        let (_, bufs) = partial.finish().unwrap();
        assert_eq!(
            bufs,
            vec![
                Bytes::from_static(&[1, 2, 3]),
                Bytes::from_static(&[4, 5, 6])
            ]
        );
    }

    #[test]
    fn placeholders_must_name_an_attachment() {
        assert!(check_placeholders(r#"["m",{"_placeholder":true,"num":0}]"#, 1).is_ok());
        assert!(check_placeholders(r#"["m",{"a":[{"_placeholder":true,"num":1}]}]"#, 2).is_ok());
        assert_eq!(
            check_placeholders(r#"["m",{"_placeholder":true,"num":1}]"#, 1),
            Err(DecodeError::BadPlaceholder)
        );
        assert_eq!(
            check_placeholders(r#"["m",{"_placeholder":true,"num":-1}]"#, 1),
            Err(DecodeError::BadPlaceholder)
        );
        assert_eq!(
            check_placeholders(r#"["m",{"_placeholder":true}]"#, 1),
            Err(DecodeError::BadPlaceholder)
        );
        assert_eq!(
            check_placeholders(r#"["m",{"_placeholder":true,"num":"0"}]"#, 1),
            Err(DecodeError::BadPlaceholder)
        );
        assert!(check_placeholders(r#"["m",{"_placeholder":false}]"#, 0).is_ok());
    }

    #[test]
    fn placeholder_text() {
        assert_eq!(placeholder(1), r#"{"_placeholder":true,"num":1}"#);
    }
}
