//! The lines a worker prints for the coordinator: phase reports, progress, and its final
//! figures.

use crate::latency::Encoded;
use serde::{Deserialize, Serialize};

/// A line a worker prints.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(tag = "event", rename_all = "snake_case")]
pub enum Event {
    /// The `connect` phase finished.
    Connected {
        /// Connections open and subscribed.
        ok: usize,
        /// Connections that failed.
        failed: usize,
        /// Seconds from the command to the last connection.
        elapsed_s: f64,
        /// The first failure, to show.
        first_error: Option<String>,
    },
    /// Deliveries so far (printed every 100 ms during `run`).
    Progress {
        /// Messages received from other senders.
        deliveries: u64,
    },
    /// The `run` phase's own load (direct messages, HTTP requests) is done.
    Done {
        /// Direct messages handed to connections.
        sent: u64,
        /// Direct messages not sent because the connection's queue was full or gone.
        dropped: u64,
        /// HTTP requests answered 2xx.
        requests: u64,
        /// HTTP requests failed.
        request_errors: u64,
        /// Seconds of load.
        elapsed_s: f64,
        /// The first request failure, to show.
        first_error: Option<String>,
    },
    /// Final figures, printed after `stop`.
    Result(Box<WorkerResult>),
}

/// A worker's final figures.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct WorkerResult {
    /// Messages received from someone else.
    pub deliveries: u64,
    /// Copies of a connection's own direct messages (Switchboard's sender copy).
    pub echoes: u64,
    /// Answers to publishes.
    pub acks: u64,
    /// Error frames received.
    pub error_frames: u64,
    /// Deliveries whose seq was not above the last one the connection got in that
    /// conversation (a duplicate or a reordering; Switchboard only, Socket.IO has no seq).
    #[serde(default)]
    pub out_of_order: u64,
    /// Sessions ended by the server before `stop`.
    pub closed: u64,
    /// The first error frame, to show.
    pub first_error_frame: Option<String>,
    /// The first server-ended session, to show.
    pub first_close: Option<String>,
    /// End-to-end latency of deliveries (µs).
    pub latency: Encoded,
    /// Connect + authenticate + subscribe time per connection (µs).
    pub connect_latency: Encoded,
    /// HTTP request latency (µs).
    pub request_latency: Encoded,
}

pub(super) fn emit(ev: &Event) {
    // One println! per event: lines never interleave.
    println!(
        "{}",
        serde_json::to_string(ev).expect("events always serialize")
    );
}
