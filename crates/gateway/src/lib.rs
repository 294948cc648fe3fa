//! Switchboard's gateway: the transports that hold client connections and hand their frames
//! to the core's session (`switchboard_core::session`). WebSocket lives here now; long-poll
//! and TCP plug into the same [`switchboard_core::transport::Transport`] seam.

pub mod http_error;
pub mod ws;

pub use ws::{WsConfig, ws_route};
