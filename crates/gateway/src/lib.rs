//! Switchboard's gateway: the transports that hold client connections and hand their frames
//! to the core's session (`switchboard_core::session`): WebSocket and raw TCP, both behind the
//! same small [`switchboard_core::transport::Transport`] seam.

pub mod http_error;
pub mod tcp;
pub mod ws;

pub use ws::{WsConfig, ws_route};
