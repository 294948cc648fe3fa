//! The decoders split at every byte boundary: each stream of frames is decoded whole, fed in two
//! parts at every split point, and fed one byte at a time, and all must give the same items.

use super::*;
use bytes::Bytes;

/// A client frame: FIN, opcode and payload; masked unless `mask` is false; `wide` forces a
/// 64-bit length (legal if unusual for short payloads).
pub(crate) fn ws_frame(fin: bool, opcode: u8, payload: &[u8], mask: bool, wide: bool) -> Vec<u8> {
    let mut f = vec![if fin { 0x80 } else { 0 } | opcode];
    let m = if mask { 0x80 } else { 0 };
    match payload.len() {
        n if n < 126 && !wide => f.push(m | n as u8),
        n if n <= 65535 && !wide => {
            f.push(m | 126);
            f.extend_from_slice(&(n as u16).to_be_bytes());
        }
        n => {
            f.push(m | 127);
            f.extend_from_slice(&(n as u64).to_be_bytes());
        }
    }
    let key = [0x12, 0x34, 0x56, 0x78];
    if mask {
        f.extend_from_slice(&key);
        f.extend(payload.iter().enumerate().map(|(i, b)| b ^ key[i & 3]));
    } else {
        f.extend_from_slice(payload);
    }
    f
}

fn masked(fin: bool, opcode: u8, payload: &[u8]) -> Vec<u8> {
    ws_frame(fin, opcode, payload, true, false)
}

fn msg(s: &[u8]) -> WsItem {
    WsItem::Message(Bytes::copy_from_slice(s))
}

fn bin(s: &[u8]) -> WsItem {
    WsItem::Binary(Bytes::copy_from_slice(s))
}

/// Every way of feeding `bytes` that is checked: whole, split in two at every point (or at
/// every `step`-th point for long inputs), one byte at a time.
fn splits(bytes: &[u8], step: usize) -> Vec<Vec<&[u8]>> {
    let mut ways = vec![vec![bytes]];
    for at in (0..=bytes.len()).step_by(step) {
        ways.push(vec![&bytes[..at], &bytes[at..]]);
    }
    if bytes.len() < 2000 {
        ways.push(bytes.chunks(1).collect());
    }
    ways
}

fn ws_case(bytes: &[u8], max: usize, items: Vec<WsItem>, error: Option<u16>) {
    let step = if bytes.len() > 4000 { 997 } else { 1 };
    for chunks in splits(bytes, step) {
        let got = decode_ws(max, &chunks);
        let sizes: Vec<usize> = chunks.iter().map(|c| c.len()).collect();
        assert_eq!(got.items, items, "split {sizes:?}");
        assert_eq!(got.error.map(|e| e.code), error, "split {sizes:?}");
    }
}

fn tcp_frame(payload: &[u8]) -> Vec<u8> {
    let mut f = (payload.len() as u32).to_be_bytes().to_vec();
    f.extend_from_slice(payload);
    f
}

#[test]
fn websocket_frames_of_every_length_form_and_kind() {
    let mut bytes = masked(true, 0x1, br#"{"a":1}"#);
    let mid = vec![b'm'; 300]; // 16-bit length
    bytes.extend(masked(true, 0x2, &mid));
    bytes.extend(ws_frame(true, 0x1, b"wide", true, true)); // 64-bit length
    bytes.extend(masked(false, 0x1, b"{\"b\""));
    bytes.extend(masked(true, 0x9, b"hi")); // a ping between fragments
    bytes.extend(masked(false, 0x0, b":"));
    bytes.extend(masked(true, 0x0, b"2}"));
    bytes.extend(masked(true, 0xA, b""));
    bytes.extend(masked(true, 0x1, b""));
    let mut close = 1001u16.to_be_bytes().to_vec();
    close.extend_from_slice("bye ✓".as_bytes());
    bytes.extend(masked(true, 0x8, &close));
    bytes.extend(masked(true, 0x1, b"after the close: ignored"));
    let items = vec![
        msg(br#"{"a":1}"#),
        bin(&mid),
        msg(b"wide"),
        WsItem::Ping(Bytes::from_static(b"hi")),
        msg(br#"{"b":2}"#),
        WsItem::Pong,
        msg(b""),
        WsItem::Close(Some(1001)),
    ];
    ws_case(&bytes, 1024, items, None);
    ws_case(
        &masked(true, 0x8, b""),
        1024,
        vec![WsItem::Close(None)],
        None,
    );
}

#[test]
fn a_64_bit_length_frame_split_across_its_head_and_payload() {
    let big = vec![b'z'; 70_000];
    let mut bytes = masked(true, 0x2, &big);
    bytes.extend(masked(true, 0x1, b"{}"));
    ws_case(&bytes, 100_000, vec![bin(&big), msg(b"{}")], None);
    // Every split inside the head, where the 64-bit length is.
    for at in 0..=14 {
        let got = decode_ws(100_000, &[&bytes[..at], &bytes[at..]]);
        assert_eq!(got.items, vec![bin(&big), msg(b"{}")]);
    }
}

#[test]
fn oversized_websocket_messages_are_skipped_then_the_hard_limit_closes() {
    // max 1024, hard limit 16 KiB.
    let mut bytes = masked(true, 0x1, &[b'x'; 2000]);
    bytes.extend(masked(true, 0x1, b"{}"));
    bytes.extend(masked(false, 0x1, &[b'y'; 1500]));
    for _ in 0..20 {
        bytes.extend(masked(false, 0x0, &[b'y'; 1000]));
    }
    let items = vec![WsItem::TooLarge(2000), msg(b"{}"), WsItem::TooLarge(1500)];
    ws_case(&bytes, 1024, items, Some(1009));
    // One frame announcing more than the hard limit: too_large at once, then 1009.
    let mut huge = vec![0x81, 0xFF];
    huge.extend_from_slice(&u64::MAX.to_be_bytes());
    huge.extend_from_slice(&[1, 2, 3, 4]);
    ws_case(&huge, 1024, vec![WsItem::TooLarge(usize::MAX)], Some(1009));
    // Fragments that add up past the limit.
    let mut parts = masked(false, 0x1, &[b'a'; 600]);
    parts.extend(masked(true, 0x0, &[b'b'; 600]));
    parts.extend(masked(true, 0x1, b"ok"));
    ws_case(&parts, 1024, vec![WsItem::TooLarge(1200), msg(b"ok")], None);
}

#[test]
fn websocket_violations_close_with_their_codes_wherever_the_bytes_split() {
    let rsv = {
        let mut f = masked(true, 0x1, b"{}");
        f[0] |= 0x40;
        f
    };
    let nested = {
        let mut f = masked(false, 0x1, b"{");
        f.extend(masked(true, 0x1, b"{}"));
        f
    };
    let cases: Vec<(Vec<u8>, u16)> = vec![
        (ws_frame(true, 0x1, b"{}", false, false), 1002), // unmasked
        (masked(true, 0x3, b""), 1002),                   // reserved opcode
        (masked(true, 0xB, b""), 1002),                   // reserved control opcode
        (masked(true, 0x0, b"x"), 1002),                  // continuation of nothing
        (masked(false, 0x9, b""), 1002),                  // fragmented control frame
        (masked(true, 0x9, &[0; 126]), 1002),             // control frame over 125 bytes
        (masked(true, 0x8, &[3]), 1002),                  // one-byte close payload
        (masked(true, 0x8, &1005u16.to_be_bytes()), 1002), // reserved close code
        (masked(true, 0x8, &[0x03, 0xE8, 0xC3]), 1007),   // close reason not UTF-8
        (masked(true, 0x1, &[0xff, 0xfe]), 1007),         // text not UTF-8
        (rsv, 1002),
        (nested, 1002),
    ];
    for (bytes, code) in cases {
        ws_case(&bytes, 1024, vec![], Some(code));
    }
    // Binary need not be UTF-8; a message before the violation is still delivered.
    let mut bytes = masked(true, 0x2, &[0xff]);
    bytes.extend(masked(true, 0x7, b""));
    ws_case(&bytes, 1024, vec![bin(&[0xff])], Some(1002));
}

#[test]
fn an_incomplete_websocket_frame_waits_for_more() {
    let f = masked(true, 0x1, b"{\"x\":1}");
    for at in 0..f.len() {
        let got = decode_ws(1024, &[&f[..at]]);
        assert_eq!((got.items.len(), got.error), (0, None), "{at} bytes");
    }
}

#[test]
fn tcp_frames_split_at_every_byte() {
    let mut bytes = tcp_frame(br#"{"type":"ping"}"#);
    bytes.extend(tcp_frame(b""));
    bytes.extend(tcp_frame(&[b'x'; 2000])); // over max: skipped
    bytes.extend(tcp_frame(&[b'y'; 1024])); // exactly max
    bytes.extend(tcp_frame(b"{}"));
    bytes.extend_from_slice(&[0, 0, 0]); // an incomplete length stays
    let items = vec![
        TcpItem::Frame(Bytes::from_static(br#"{"type":"ping"}"#)),
        TcpItem::Frame(Bytes::new()),
        TcpItem::TooLarge(2000),
        TcpItem::Frame(Bytes::from(vec![b'y'; 1024])),
        TcpItem::Frame(Bytes::from_static(b"{}")),
    ];
    for chunks in splits(&bytes, 1) {
        let got = decode_tcp(1024, &chunks);
        assert_eq!(got.items, items);
        assert_eq!((got.error, got.left), (None, 3));
    }
    // A length past the hard limit (16 KiB here): too_large, then the end.
    let mut bad = tcp_frame(b"{}");
    bad.extend_from_slice(&u32::MAX.to_be_bytes());
    bad.extend(tcp_frame(b"{}"));
    for chunks in splits(&bad, 1) {
        let got = decode_tcp(1024, &chunks);
        let len = u32::MAX as usize;
        let want = vec![
            TcpItem::Frame(Bytes::from_static(b"{}")),
            TcpItem::TooLarge(len),
        ];
        assert_eq!((got.items, got.error), (want, Some(TcpError { len })));
    }
}

#[test]
fn the_fuzz_property_holds_on_hand_made_inputs() {
    let mut ws = vec![128u8];
    ws.extend(masked(true, 0x1, b"{}"));
    ws.extend(masked(false, 0x1, &[b'a'; 200]));
    ws.extend(masked(true, 0x0, &[b'a'; 200]));
    assert_eq!(check_ws(&ws), 2);
    assert_eq!(check_ws(&[]), 0);
    assert_eq!(
        check_tcp(&[7, 0, 0, 0, 2, b'{', b'}', 0xFF, 0xFF, 0xFF, 0xFF]),
        2
    );
}
