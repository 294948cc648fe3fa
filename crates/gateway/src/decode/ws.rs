//! The WebSocket (RFC 6455) decoder for client frames: a pure function over a buffer, with no
//! socket. The reader ([`crate::ws::WsReader`]) appends what it reads and calls
//! [`WsDecoder::decode`] until it answers `Ok(None)` (more bytes are needed); the fuzz target and
//! the split-at-every-byte tests call the same function.

use bytes::{Buf, Bytes, BytesMut};
// One RFC 6455 unmasking for both WebSocket servers (word at a time).
use switchboard_socketio::engine::wsframe::apply_mask;

/// What the decoder took out of the buffer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum WsItem {
    /// A whole text message, its fragments joined.
    Message(Bytes),
    /// A whole binary message (the native protocol reads the same JSON in it; Engine.IO's
    /// binary attachments come this way).
    Binary(Bytes),
    /// A message over `max_frame_bytes` (its size so far): it is skipped, not buffered. If it
    /// passed the hard limit as well, the next call fails with 1009.
    TooLarge(usize),
    /// A ping with its payload.
    Ping(Bytes),
    /// A pong.
    Pong,
    /// The client's close frame, with its status code if it had one. Nothing follows.
    Close(Option<u16>),
}

/// A violation that ends the connection: the close code to send, and why.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct WsError {
    /// 1002 (protocol error), 1007 (invalid UTF-8) or 1009 (too big).
    pub code: u16,
    /// For the log.
    pub why: &'static str,
}

/// The decoder's state between calls: a fragmented message being put together, or an oversized
/// one being thrown away.
#[derive(Debug, Default)]
pub struct WsDecoder {
    /// Messages above this are [`WsItem::TooLarge`]. (A `u32`, beside the flag below: every
    /// connection's task holds the decoder, and this keeps the native one in its 768 bytes.)
    max_frame_bytes: u32,
    /// A fragmented message being put together: its opcode and the data so far.
    message: Option<Box<(u8, BytesMut)>>,
    /// Payload bytes of an oversized frame still to be thrown away.
    skipping: usize,
    /// The rest of an oversized fragmented message is thrown away too.
    skipping_message: bool,
    /// Bytes of the message being thrown away so far (past the hard limit it closes with 1009).
    skipped: u64,
    /// Set once the stream cannot go on: every later call returns it.
    failed: Option<WsError>,
}

fn fail(code: u16, why: &'static str) -> WsError {
    WsError { code, why }
}

impl WsDecoder {
    /// A decoder for messages of at most `max_frame_bytes`.
    pub fn new(max_frame_bytes: usize) -> WsDecoder {
        WsDecoder {
            max_frame_bytes: u32::try_from(max_frame_bytes).unwrap_or(u32::MAX),
            ..WsDecoder::default()
        }
    }

    /// The size past which a message ends the connection (close 1009; [`super::hard_limit`]).
    pub fn hard_limit(&self) -> usize {
        super::hard_limit(self.max_frame_bytes as usize)
    }

    /// Takes the next item out of `buf`: `Ok(None)` when more bytes are needed (what is there
    /// stays, or is consumed into the decoder's state), `Err` once the stream is broken (and
    /// on every call after). The result does not depend on how the bytes were split.
    pub fn decode(&mut self, buf: &mut BytesMut) -> Result<Option<WsItem>, WsError> {
        if let Some(e) = self.failed {
            return Err(e);
        }
        let r = self.step(buf);
        if let Err(e) = r {
            self.failed = Some(e);
        }
        r
    }

    fn step(&mut self, buf: &mut BytesMut) -> Result<Option<WsItem>, WsError> {
        loop {
            if self.skipping > 0 {
                let n = self.skipping.min(buf.len());
                buf.advance(n);
                self.skipping -= n;
                if self.skipping > 0 {
                    return Ok(None);
                }
            }
            match self.frame(buf)? {
                Step::Item(item) => return Ok(Some(item)),
                Step::More => return Ok(None),
                Step::Again => {}
            }
        }
    }

    /// One frame, if it is all there (or its head, for a frame to skip).
    fn frame(&mut self, buf: &mut BytesMut) -> Result<Step, WsError> {
        if buf.len() < 2 {
            return Ok(Step::More);
        }
        let (b0, b1) = (buf[0], buf[1]);
        let (fin, rsv, opcode) = (b0 & 0x80 != 0, b0 & 0x70, b0 & 0x0F);
        if rsv != 0 {
            return Err(fail(1002, "reserved bits set (no extension was agreed)"));
        }
        if b1 & 0x80 == 0 {
            return Err(fail(1002, "client frames must be masked"));
        }
        let (len, head) = match b1 & 0x7F {
            126 if buf.len() < 4 => return Ok(Step::More),
            126 => (u16::from_be_bytes([buf[2], buf[3]]) as u64, 4),
            127 if buf.len() < 10 => return Ok(Step::More),
            127 => {
                let mut b = [0u8; 8];
                b.copy_from_slice(&buf[2..10]);
                (u64::from_be_bytes(b), 10)
            }
            n => (n as u64, 2),
        };
        let head = head + 4; // the masking key
        if buf.len() < head {
            return Ok(Step::More);
        }
        let control = opcode & 0x8 != 0;
        let in_message = self.message.is_some() || self.skipping_message;
        match opcode {
            0x8..=0xA if !fin || len > 125 => {
                return Err(fail(1002, "control frames are short and unfragmented"));
            }
            0x1 | 0x2 if in_message => {
                return Err(fail(1002, "a new message inside a fragmented one"));
            }
            0x0 if !in_message => {
                return Err(fail(1002, "a continuation frame with nothing to continue"));
            }
            0x3..=0x7 | 0xB..=0xF => return Err(fail(1002, "reserved opcode")),
            _ => {}
        }
        if !control {
            if opcode == 0 && self.skipping_message {
                // The rest of an oversized message, still counted against the hard limit.
                self.skipped = self.skipped.saturating_add(len);
                if self.skipped > self.hard_limit() as u64 {
                    return Err(fail(1009, "a fragmented message past the hard limit"));
                }
                self.skip(buf, head, len, fin);
                return Ok(Step::Again);
            }
            let so_far = self.message.as_ref().map_or(0, |m| m.1.len() as u64);
            let total = so_far.saturating_add(len);
            let size = usize::try_from(total).unwrap_or(usize::MAX);
            if total > self.hard_limit() as u64 {
                self.failed = Some(fail(1009, "a message past the hard limit"));
                return Ok(Step::Item(WsItem::TooLarge(size)));
            }
            if total > self.max_frame_bytes as u64 {
                self.skipped = total;
                self.message = None;
                self.skip(buf, head, len, fin);
                return Ok(Step::Item(WsItem::TooLarge(size)));
            }
        }
        // Under the hard limit (or a control frame): fits in memory.
        let len = len as usize;
        if buf.len() < head + len {
            buf.reserve(head + len - buf.len());
            return Ok(Step::More);
        }
        let mut mask = [0u8; 4];
        mask.copy_from_slice(&buf[head - 4..head]);
        buf.advance(head);
        let mut payload = buf.split_to(len);
        apply_mask(&mut payload, mask);
        match opcode {
            0x8 => close(&payload).map(|code| Step::Item(WsItem::Close(code))),
            // Copied: the payload would otherwise keep the whole read chunk alive.
            0x9 => Ok(Step::Item(WsItem::Ping(Bytes::copy_from_slice(&payload)))),
            0xA => Ok(Step::Item(WsItem::Pong)),
            _ => {
                let (opcode, data) = match self.message.take() {
                    Some(m) => {
                        let (op, mut data) = *m;
                        data.extend_from_slice(&payload);
                        (op, data)
                    }
                    None => (opcode, payload),
                };
                if !fin {
                    self.message = Some(Box::new((opcode, data)));
                    return Ok(Step::Again);
                }
                if opcode == 0x1 && std::str::from_utf8(&data).is_err() {
                    return Err(fail(1007, "a text message that is not UTF-8"));
                }
                Ok(Step::Item(if opcode == 0x2 {
                    WsItem::Binary(data.freeze())
                } else {
                    WsItem::Message(data.freeze())
                }))
            }
        }
    }

    /// Drops a frame's head and starts throwing its payload away.
    fn skip(&mut self, buf: &mut BytesMut, head: usize, len: u64, fin: bool) {
        buf.advance(head);
        self.skipping = usize::try_from(len).unwrap_or(usize::MAX);
        self.skipping_message = !fin;
    }
}

/// What one frame gave.
enum Step {
    Item(WsItem),
    More,
    /// Something was consumed (a fragment, a skipped frame's head): go on.
    Again,
}

/// A close frame's status code, checked (RFC 6455 §7.4), and its reason, which must be UTF-8.
fn close(payload: &[u8]) -> Result<Option<u16>, WsError> {
    match payload {
        [] => Ok(None),
        [_] => Err(fail(1002, "a close frame with a one-byte payload")),
        [a, b, reason @ ..] => {
            let code = u16::from_be_bytes([*a, *b]);
            if !matches!(code, 1000..=1003 | 1007..=1014 | 3000..=4999) {
                return Err(fail(1002, "a close frame with an invalid code"));
            }
            if std::str::from_utf8(reason).is_err() {
                return Err(fail(1007, "a close reason that is not UTF-8"));
            }
            Ok(Some(code))
        }
    }
}
