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
