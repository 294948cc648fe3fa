//! Long-poll request bodies: the open body, the frames array and each frame in it.
#![no_main]
libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    switchboard_gateway::poll::body::parse_any_poll_body(data);
});
