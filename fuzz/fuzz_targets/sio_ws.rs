//! A direct Socket.IO WebSocket's reading (gateway::socketio::ws_read): client frames to
//! Engine.IO and Socket.IO packets to what the session does with them. Must not panic, and
//! must give the same actions however the bytes are split.
#![no_main]
libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    switchboard_gateway::socketio::ws_read::check_reading(data);
});
