//! How the bench speaks to each server, so every scenario runs unchanged against both:
//!
//! - **switchboard**: tokens from the server API (`POST /v1/server/users/{id}/tokens` with
//!   `X-Api-Key`), public rooms from `POST /v1/rooms`, WebSocket `/v1/ws?token=` (`welcome`
//!   unasked), `subscribe` frames, `publish` frames for direct messages, and server publishes
//!   through `POST /v1/server/publish`.
//! - **socketio**: the peer in `bench/socketio/server.js`, spoken as Engine.IO v4 over a raw
//!   WebSocket (`/socket.io/?EIO=4&transport=websocket`): `0{...}` open, `40{"token"}` connect,
//!   `42[...]` events, `42<id>[...]`/`43<id>[...]` acknowledgements, `2` pings answered `3`.
//!   Tokens come from its `POST /tokens/{id}`, publishes go through its `POST /publish`.
//! - **switchboard-socketio**: Switchboard's own `/socket.io/` endpoint (docs/SOCKETIO.md),
//!   spoken the same way as the Socket.IO peer (Engine.IO v4 over a raw WebSocket), with
//!   Switchboard's tokens, rooms and server publishes and its events: `subscribe` and `publish`
//!   (a direct message is a `publish` to `user:<id>`), acknowledged.
//!
//! Message bodies carry `bench_ts` (the publisher's send time, µs since the epoch) and `src`
//! (the sending user's index, -1 for server publishes); receivers find them by scanning the
//! frame text, which costs the client far less than parsing it.
//!
//! This file holds the [`Protocol`] itself; [`server_api`] holds its HTTP calls (tokens, rooms,
//! server publishes), [`session`] its WebSocket handshake and subscriptions, [`frames`] the
//! frames it writes and reads.

mod frames;
mod server_api;
mod session;
#[cfg(test)]
mod tests;

pub use frames::{Incoming, body, conv_seq};

use serde::{Deserialize, Serialize};
use std::time::Duration;

/// Longest wait for a handshake or subscription answer.
const REPLY_WAIT: Duration = Duration::from_secs(20);

/// The server a run talks to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum Protocol {
    /// Switchboard's HTTP API and WebSocket protocol.
    Switchboard,
    /// Socket.IO v4 (Engine.IO v4 over WebSocket) against bench/socketio/server.js.
    Socketio,
    /// Socket.IO v4 against Switchboard's `/socket.io/` endpoint.
    SwitchboardSocketio,
}

impl Protocol {
    /// The protocol's name in reports.
    pub fn name(self) -> &'static str {
        match self {
            Protocol::Switchboard => "switchboard",
            Protocol::Socketio => "socketio",
            Protocol::SwitchboardSocketio => "switchboard-socketio",
        }
    }

    /// The conversation or room name of the bench's `k`-th room of run `tag` (Socket.IO rooms
    /// are just names; Switchboard rooms are created with [`Protocol::create_room`]).
    pub fn local_room(self, tag: &str, k: usize) -> String {
        format!("room:bench-{tag}-{k}")
    }
}
