//! Engine.IO and Socket.IO packets and the socketio crate's WebSocket frames.
#![no_main]
#[path = "../shared/sio.rs"]
mod sio;
libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    sio::check_sio(data);
});
