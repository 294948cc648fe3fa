//! Switchboard's gateway: the transports that hold client connections and hand their frames
//! to the core's session (`switchboard_core::session`): WebSocket, long-polling and raw TCP, all
//! behind the same small [`switchboard_core::transport::Transport`] seam.

pub mod decode;
pub mod http_error;
pub mod limits;
pub mod origin;
pub mod poll;
pub mod serve;
pub mod socketio;
pub mod tcp;
pub mod timed;
pub mod tls;
pub mod tls_wire;
pub mod wire;
pub mod ws;

pub use ws::{WsConfig, ws_route};

/// The size of the future `f` returns, without calling it (the size tests of the futures every
/// connection holds).
#[cfg(test)]
pub(crate) fn returned_size<F: FnOnce() -> Fut, Fut>(_: F) -> usize {
    std::mem::size_of::<Fut>()
}
