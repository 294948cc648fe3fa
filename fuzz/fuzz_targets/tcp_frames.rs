//! The raw TCP transport's length-prefixed frames: no panic, bounded memory, and the same
//! result however the bytes are split.
#![no_main]
libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    switchboard_gateway::decode::check_tcp(data);
});
