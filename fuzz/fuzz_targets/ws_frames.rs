//! WebSocket client frames: the decoder must not panic, must bound its memory, and must give
//! the same result however the bytes are split.
#![no_main]
libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    switchboard_gateway::decode::check_ws(data);
});
