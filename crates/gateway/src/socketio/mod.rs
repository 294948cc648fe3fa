//! Socket.IO v4 clients on Switchboard (SOCKETIO.md): the mapping of Socket.IO events onto the
//! core's session, on top of the protocol library `switchboard-socketio`.
//!
//! The files, one concern each:
//! - [`translate`]: client events to native request frames, native frames to events and acks;
//! - [`offset`]: the recovery offset and the slots it counts in;
//! - [`record`]: recovery records in the backend, their writes and renewals;
//! - [`connect`]: the CONNECT: token, recovery, the `pid`;
//! - [`wire`] and [`inbox`]: the session's two halves on a Socket.IO socket;
//! - [`forward`]: polling requests for another node's session, forwarded to it;
//! - [`ws_session`], [`ws_read`] and [`ws_outlet`]: a client that opens its WebSocket directly
//!   runs as one core session on the socket, without the library's session.

pub mod connect;
pub mod forward;
pub mod inbox;
pub mod offset;
pub mod record;
pub mod serve;
pub mod translate;
pub mod wire;
pub mod ws_outlet;
pub mod ws_read;
pub mod ws_session;
