//! Pure decoders for the bytes clients send: WebSocket frames ([`ws`]) and the raw TCP
//! transport's length-prefixed frames ([`tcp`]). They hold no socket: a reader appends what it
//! reads to a buffer and asks the decoder for the next item, `Ok(None)` meaning "more bytes".
//! That makes them testable at every byte boundary and fuzzable (`fuzz/`); the helpers here
//! run a decoder over a whole input, the way the fuzz targets and the corpus tests do.

pub mod tcp;
pub mod ws;

#[cfg(test)]
pub(crate) mod tests;

use bytes::BytesMut;
pub use tcp::{TcpDecoder, TcpError, TcpItem};
pub use ws::{WsDecoder, WsError, WsItem};

/// The size past which a frame (TCP) or message (WebSocket) of a connection whose limit is
/// `max_frame` ends the connection instead of being skipped with `too_large`: four times the
/// limit, and at least 16 KiB. Both transports close at the same point.
pub fn hard_limit(max_frame: usize) -> usize {
    max_frame.saturating_mul(4).max(16 * 1024)
}

/// Everything a decoder gives for an input fed in `chunks`: its items, then the error that
/// ended it (if one did), and how many bytes were left unconsumed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Decoded<I, E> {
    /// The items, in order.
    pub items: Vec<I>,
    /// What ended the stream, if anything did.
    pub error: Option<E>,
    /// Bytes still in the buffer at the end (an incomplete frame); 0 after an error or a close,
    /// when the rest of the input is not the decoder's business.
    pub left: usize,
}

/// Feeds `chunks` to `decode` one after another, taking every item after each, until the input
/// ends, an error comes or `done` says the stream is over (a WebSocket close).
fn run<I, E>(
    chunks: &[&[u8]],
    mut decode: impl FnMut(&mut BytesMut) -> Result<Option<I>, E>,
    done: impl Fn(&I) -> bool,
) -> Decoded<I, E> {
    let mut buf = BytesMut::new();
    let mut out = Decoded {
        items: Vec::new(),
        error: None,
        left: 0,
    };
    for chunk in chunks {
        buf.extend_from_slice(chunk);
        loop {
            match decode(&mut buf) {
                Ok(Some(item)) => {
                    let end = done(&item);
                    out.items.push(item);
                    if end {
                        return out;
                    }
                }
                Ok(None) => break,
                Err(e) => {
                    out.error = Some(e);
                    return out;
                }
            }
        }
    }
    out.left = buf.len();
    out
}

/// Decodes WebSocket client frames fed in `chunks`, up to the first close or error.
pub fn decode_ws(max_frame_bytes: usize, chunks: &[&[u8]]) -> Decoded<WsItem, WsError> {
    let mut d = WsDecoder::new(max_frame_bytes);
    run(chunks, |b| d.decode(b), |i| matches!(i, WsItem::Close(_)))
}

/// Decodes TCP frames fed in `chunks`, up to the first error.
pub fn decode_tcp(max_frame: usize, chunks: &[&[u8]]) -> Decoded<TcpItem, TcpError> {
    let mut d = TcpDecoder::new(max_frame);
    run(chunks, |b| d.decode(b), |_| false)
}

/// Splits a fuzz input: its first byte picks the split point in the rest and the size limit
/// (small, so that oversized frames, skipping and the hard limit are all reached).
fn fuzz_split(data: &[u8]) -> Option<FuzzInput<'_>> {
    let (&k, rest) = data.split_first()?;
    let at = (k as usize * rest.len()) / 255;
    let (a, b) = rest.split_at(at.min(rest.len()));
    Some((64 + (k as usize % 4) * 100, rest, a, b))
}

/// A fuzz input taken apart: the size limit, the whole input, and its two parts.
type FuzzInput<'a> = (usize, &'a [u8], &'a [u8], &'a [u8]);

/// The `ws_frames` fuzz property: the input decoded whole and split in two (see `fuzz_split`)
/// gives the same items, error and leftover. Panics if not. Returns the number of items.
pub fn check_ws(data: &[u8]) -> usize {
    let Some((max, whole, a, b)) = fuzz_split(data) else {
        return 0;
    };
    let once = decode_ws(max, &[whole]);
    assert_eq!(
        once,
        decode_ws(max, &[a, b]),
        "WebSocket: split at {}",
        a.len()
    );
    once.items.len()
}

/// The `tcp_frames` fuzz property, as [`check_ws`] for the TCP framing.
pub fn check_tcp(data: &[u8]) -> usize {
    let Some((max, whole, a, b)) = fuzz_split(data) else {
        return 0;
    };
    let once = decode_tcp(max, &[whole]);
    assert_eq!(once, decode_tcp(max, &[a, b]), "TCP: split at {}", a.len());
    once.items.len()
}
