//! The raw TCP transport's decoder: a 4-byte big-endian length, then that many bytes of JSON.
//! A pure function over a buffer, called by [`crate::tcp::TcpReader`], the fuzz target and the
//! split-at-every-byte tests alike.

use bytes::{Buf, Bytes, BytesMut};

/// What the decoder took out of the buffer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TcpItem {
    /// One whole frame.
    Frame(Bytes),
    /// A frame over `max_frame` (its announced length), skipped without being buffered. If the
    /// length is past the hard limit as well, the next call fails.
    TooLarge(usize),
}

/// The stream cannot go on: a length past the hard limit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TcpError {
    /// The length announced.
    pub len: usize,
}

/// The decoder's state between calls: how much of an oversized frame is still to be dropped.
#[derive(Debug, Default)]
pub struct TcpDecoder {
    max_frame: usize,
    /// Bytes of an oversized frame still to be thrown away.
    skipping: usize,
    /// Set once a length past the hard limit was seen: every later call returns it.
    failed: Option<TcpError>,
}

impl TcpDecoder {
    /// A decoder for frames of at most `max_frame` bytes.
    pub fn new(max_frame: usize) -> TcpDecoder {
        TcpDecoder {
            max_frame,
            ..TcpDecoder::default()
        }
    }

    /// The length past which the connection is closed ([`super::hard_limit`]).
    pub fn hard_limit(&self) -> usize {
        super::hard_limit(self.max_frame)
    }

    /// Takes the next item out of `buf`: `Ok(None)` when more bytes are needed, `Err` once the
    /// stream is broken (and on every call after). The result does not depend on how the
    /// bytes were split.
    pub fn decode(&mut self, buf: &mut BytesMut) -> Result<Option<TcpItem>, TcpError> {
        if let Some(e) = self.failed {
            return Err(e);
        }
        if self.skipping > 0 {
            let n = self.skipping.min(buf.len());
            buf.advance(n);
            self.skipping -= n;
            if self.skipping > 0 {
                return Ok(None);
            }
        }
        if buf.len() < 4 {
            return Ok(None);
        }
        let len = u32::from_be_bytes([buf[0], buf[1], buf[2], buf[3]]) as usize;
        if len > self.hard_limit() {
            self.failed = Some(TcpError { len });
            return Ok(Some(TcpItem::TooLarge(len)));
        }
        if len > self.max_frame {
            buf.advance(4);
            // Throw away what is already here; the rest is dropped as it arrives.
            let n = len.min(buf.len());
            buf.advance(n);
            self.skipping = len - n;
            return Ok(Some(TcpItem::TooLarge(len)));
        }
        if buf.len() < 4 + len {
            buf.reserve(4 + len - buf.len());
            return Ok(None);
        }
        buf.advance(4);
        Ok(Some(TcpItem::Frame(buf.split_to(len).freeze())))
    }
}
