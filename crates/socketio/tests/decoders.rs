//! Every pure decoder on many pseudo-random inputs (a fixed seed, so a failure repeats): none
//! panics, and what decodes re-encodes. A smoke test until the cargo-fuzz targets exist.

use switchboard_socketio::engine::{packet as eio, wsframe};
use switchboard_socketio::sio::{binary, packet as sio};

/// xorshift64*: deterministic, no dependency.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    /// Bytes drawn mostly from `alphabet` (the characters the grammar cares about).
    fn input(&mut self, alphabet: &[u8]) -> Vec<u8> {
        let len = (self.next() % 48) as usize;
        (0..len)
            .map(|_| {
                let r = self.next();
                if r.is_multiple_of(8) {
                    (r >> 8) as u8
                } else {
                    alphabet[(r >> 8) as usize % alphabet.len()]
                }
            })
            .collect()
    }
}

const GRAMMAR: &[u8] = b"0123456789-/,[]{}\":_placeholdertruenum \\\x1eb4AQID=";

#[test]
fn no_decoder_panics() {
    let mut rng = Rng(0x5eed_1234_abcd_0001);
    let limits = sio::Limits::default();
    let mut decoded = 0;
    for _ in 0..50_000 {
        let bytes = rng.input(GRAMMAR);
        let _ = eio::decode_payload(&bytes, 16);
        let _ = eio::decode_frame(&bytes, false);
        let _ = wsframe::decode(&bytes, 1000);
        if let Ok(text) = std::str::from_utf8(&bytes) {
            if let Ok(packet) = sio::decode(text, &limits) {
                decoded += 1;
                let data = packet.data.as_deref().map(|d| d.get());
                let again = sio::encode(
                    packet.kind,
                    &packet.nsp,
                    packet.id,
                    data,
                    packet.attachments,
                );
                let twice = sio::decode(&again, &limits)
                    .expect("what decoded re-encodes to something that decodes");
                assert_eq!(
                    (twice.kind, twice.nsp, twice.id, twice.attachments),
                    (packet.kind, packet.nsp, packet.id, packet.attachments),
                    "{text}"
                );
            }
            let _ = binary::check_placeholders(text, 2);
        }
    }
    assert!(
        decoded > 0,
        "the inputs reach the decoders' success paths too"
    );
}
