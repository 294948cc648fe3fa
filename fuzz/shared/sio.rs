//! The `sio_packets` fuzz target's function, shared with CI's corpus test
//! (crates/api/tests/fuzz_corpus.rs includes this file): Engine.IO payloads and packets,
//! Socket.IO packets, and the socketio crate's own WebSocket frames, as its server decodes
//! them. Errors are fine; panics are not. Returns how many things decoded.

use switchboard_socketio::{engine, sio};

/// Runs every Engine.IO / Socket.IO decoder over `data`.
pub fn check_sio(data: &[u8]) -> usize {
    let mut ok = 0;
    if let Ok(packets) = engine::packet::decode_payload(data, 64) {
        ok += packets.len();
        // Each message's text is a Socket.IO packet.
        for p in packets {
            if let engine::packet::Packet::Message(text) = p {
                let limits = sio::packet::Limits::default();
                ok += usize::from(sio::packet::decode(&text, &limits).is_ok());
            }
        }
    }
    for binary in [false, true] {
        ok += usize::from(engine::packet::decode_frame(data, binary).is_ok());
    }
    if let Ok(text) = std::str::from_utf8(data) {
        ok += usize::from(sio::packet::decode(text, &sio::packet::Limits::default()).is_ok());
    }
    // WebSocket frames one after another, as the crate's reader consumes them.
    let mut rest = data;
    while let Ok(Some((_, used))) = engine::wsframe::decode(rest, 1024) {
        if used == 0 || used > rest.len() {
            break;
        }
        rest = &rest[used..];
        ok += 1;
    }
    ok
}
