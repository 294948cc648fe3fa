//! Client frame JSON (what every transport hands the session), and server frame JSON (what
//! the Rust SDK parses): errors, never panics.
#![no_main]
libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    switchboard_proto::frame::check_frames(data);
});
