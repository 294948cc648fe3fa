//! The command line: one subcommand per scenario, each bounded in connections, rate and time,
//! plus `report` (the comparison table of a results directory).

use crate::proto::Protocol;
use clap::{Args, Parser, Subcommand, ValueEnum};
use std::path::PathBuf;

/// Most connections any scenario opens.
pub const MAX_CONNECTIONS: usize = 100_000;
/// Longest measured phase, seconds.
pub const MAX_DURATION_S: f64 = 600.0;
/// Highest publish or message rate, per second.
pub const MAX_RATE: f64 = 1_000_000.0;
/// Most worker processes.
pub const MAX_WORKERS: usize = 32;
/// Largest padding in a message body, bytes.
pub const MAX_PAYLOAD: usize = 60_000;

/// Load generator for Switchboard and its Socket.IO peer. Every scenario is bounded in count
/// and time and only ever targets 127.0.0.0/8.
#[derive(Parser)]
#[command(name = "switchboard-bench", version, about, long_about = None)]
pub struct Cli {
    /// Internal: run as a worker process (reads its plan from stdin).
    #[arg(long, hide = true)]
    pub worker: bool,
    /// Internal: run as the `floor` scenario's reader (`ADDR/N/SOURCE_IPS`).
    #[arg(long, hide = true)]
    pub floor_reader: Option<String>,
    /// Internal: run as the `msg-floor` scenario's sender (see `scenario::msg_floor`).
    #[arg(long, hide = true)]
    pub msg_floor_sender: Option<String>,
    /// The scenario to run.
    #[command(subcommand)]
    pub command: Option<Command>,
}

/// The scenarios.
#[derive(Subcommand)]
pub enum Command {
    /// Idle connections: server RSS per authenticated connection.
    Idle(IdleArgs),
    /// One room with N subscribers: fan-out throughput, CPU per delivery, latency.
    Fanout(FanoutArgs),
    /// Many small rooms with publishes spread over them.
    Rooms(RoomsArgs),
    /// Direct messages from connected users to random users.
    Dm(DmArgs),
    /// One connection keeping `--in-flight` publishes outstanding, to a room or as DMs:
    /// acknowledged publishes/s (or, at `--rate`, publish-to-delivery latency), answer and seq
    /// order.
    Pipeline(PipelineArgs),
    /// A connection storm: authenticated connections per second.
    Storm(StormArgs),
    /// Cluster routing cost: CPU of a node with no interested connection while another is busy.
    Cluster(ClusterArgs),
    /// Requests per second of GET /v1/dispatch (Switchboard only).
    Dispatch(DispatchArgs),
    /// The kernel's own cost of one delivery: CPU per small TCP write to one of N loopback
    /// connections, with no server at all (the floor under CPU per delivery).
    Floor(FloorArgs),
    /// The least any server pays per direct message (or small-room message): the thinnest
    /// one-thread event loop reading each frame and writing it to its recipients and an answer
    /// to its sender, optionally syncing each turn to disk first; no server at all.
    MsgFloor(MsgFloorArgs),
    /// Prints the comparison tables (runs, peer ratios, targets) of a directory of JSON reports.
    Report(ReportArgs),
    /// Prints a free TCP port on 127.0.0.1 (for scripts).
    #[command(hide = true)]
    FreePort,
}

/// How a report is printed on stdout.
#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum Format {
    /// A Markdown table.
    Markdown,
    /// The JSON report.
    Json,
}

/// Options every scenario takes.
#[derive(Args, Clone, Debug)]
pub struct Common {
    /// The server: http://127.0.0.x:PORT or http://localhost:PORT (nothing else is accepted).
    #[arg(long)]
    pub target: String,
    /// How to speak to the server.
    #[arg(long, value_enum, default_value = "switchboard")]
    pub protocol: Protocol,
    /// The server's process id: CPU (utime+stime) and RSS are read from /proc before and after.
    #[arg(long)]
    pub server_pid: Option<u32>,
    /// Client source addresses (each in 127.0.0.0/8), used in turn; each gives ~28k ports.
    #[arg(long, default_value = "127.0.0.1")]
    pub source_ips: String,
    /// Client processes (each below the per-process open-file limit).
    #[arg(long, default_value_t = 1)]
    pub workers: usize,
    /// Tokio threads per client process.
    #[arg(long, default_value_t = 1)]
    pub client_threads: usize,
    /// The server API key (Switchboard `--api-key`).
    #[arg(long, env = "SWITCHBOARD_BENCH_API_KEY", default_value = "bench-key")]
    pub api_key: String,
    /// Connections being opened at the same time, per worker.
    #[arg(long, default_value_t = 256)]
    pub connect_concurrency: usize,
    /// Concurrent HTTP requests while setting up users and rooms.
    #[arg(long, default_value_t = 32)]
    pub setup_concurrency: usize,
    /// A name for the server set-up in reports (for example `socketio-redis`).
    #[arg(long)]
    pub label: Option<String>,
    #[command(flatten)]
    #[allow(missing_docs)]
    pub output: Output,
}

/// Where the report goes, and what fails a run.
#[derive(Args, Clone, Debug)]
pub struct Output {
    /// Also write the JSON report to this file.
    #[arg(long)]
    pub json: Option<PathBuf>,
    /// What to print on stdout.
    #[arg(long, value_enum, default_value = "markdown")]
    pub format: Format,
    /// Exit non-zero on any failed connection, lost delivery (or write), error frame or server
    /// disconnect.
    #[arg(long)]
    pub strict: bool,
}

/// Publishing options.
#[derive(Args, Clone, Debug)]
pub struct PublishOpts {
    /// Messages published per second (spread over the rooms).
    #[arg(long)]
    pub rate: Option<f64>,
    /// Seconds of publishing.
    #[arg(long, default_value_t = 10.0)]
    pub duration: f64,
    /// Padding bytes in each message body.
    #[arg(long, default_value_t = 100)]
    pub payload: usize,
    /// Keep-alive HTTP connections publishing (one request in flight each).
    #[arg(long, default_value_t = 8)]
    pub publishers: usize,
}

/// `floor`.
#[derive(Args, Clone, Debug)]
pub struct FloorArgs {
    /// Connections written to.
    #[arg(long, default_value_t = 10_000)]
    pub connections: usize,
    /// Rounds per second (one write to every connection each).
    #[arg(long, default_value_t = 10.0)]
    pub rate: f64,
    /// Seconds of writing.
    #[arg(long, default_value_t = 10.0)]
    pub duration: f64,
    /// Bytes per write (a Switchboard message frame of the fan-out scenario is about 320).
    #[arg(long, default_value_t = 320)]
    pub frame_bytes: usize,
    /// Source addresses of the reader's connections (each in 127.0.0.0/8).
    #[arg(long, default_value = "127.0.0.1")]
    pub source_ips: String,
    #[command(flatten)]
    #[allow(missing_docs)]
    pub output: Output,
}

/// `msg-floor`.
#[derive(Args, Clone, Debug)]
pub struct MsgFloorArgs {
    /// Connections (users), one each.
    #[arg(long, default_value_t = 10_000)]
    pub connections: usize,
    /// Messages per second, all senders together.
    #[arg(long, default_value_t = 5_000.0)]
    pub rate: f64,
    /// Seconds of sending.
    #[arg(long, default_value_t = 10.0)]
    pub duration: f64,
    /// Bytes per message frame, read once and written to each recipient (a `dm` scenario
    /// message frame is about 320).
    #[arg(long, default_value_t = 320)]
    pub frame_bytes: usize,
    /// Recipients per message: 1 is a DM to a random user; k > 1 is a room of k the sender is
    /// not in (the connections in groups of k; a message goes to the group after the sender's),
    /// as the `rooms` scenario's server-side publishes are.
    #[arg(long, default_value_t = 1)]
    pub recipients: usize,
    /// Append each loop turn's messages to a file in this directory and `fdatasync` it before
    /// writing anything out (the durable floor).
    #[arg(long)]
    pub durable_dir: Option<PathBuf>,
    /// With `--durable-dir`: how long a message may wait for later ones to share its sync, µs
    /// (0: each loop turn syncs what it read).
    #[arg(long, default_value_t = 0)]
    pub commit_window_us: u64,
    /// Source addresses of the sender's connections (each in 127.0.0.0/8).
    #[arg(long, default_value = "127.0.0.1")]
    pub source_ips: String,
    #[command(flatten)]
    #[allow(missing_docs)]
    pub output: Output,
}

/// `idle`.
#[derive(Args, Clone, Debug)]
pub struct IdleArgs {
    #[command(flatten)]
    #[allow(missing_docs)]
    pub common: Common,
    /// Connections to open.
    #[arg(long, default_value_t = 1000)]
    pub connections: usize,
    /// Seconds to hold them after measuring.
    #[arg(long, default_value_t = 2.0)]
    pub duration: f64,
    /// Seconds to wait after the last connection before reading the server's RSS.
    #[arg(long, default_value_t = 2.0)]
    pub settle: f64,
}

/// `fanout`.
#[derive(Args, Clone, Debug)]
pub struct FanoutArgs {
    #[command(flatten)]
    #[allow(missing_docs)]
    pub common: Common,
    /// Subscribers of the room.
    #[arg(long, default_value_t = 1000)]
    pub connections: usize,
    #[command(flatten)]
    #[allow(missing_docs)]
    pub publish: PublishOpts,
}

/// `rooms`.
#[derive(Args, Clone, Debug)]
pub struct RoomsArgs {
    #[command(flatten)]
    #[allow(missing_docs)]
    pub common: Common,
    /// Connections, split into rooms of `--room-size`.
    #[arg(long, default_value_t = 1000)]
    pub connections: usize,
    /// Subscribers per room.
    #[arg(long, default_value_t = 10)]
    pub room_size: usize,
    #[command(flatten)]
    #[allow(missing_docs)]
    pub publish: PublishOpts,
}

/// `dm`.
#[derive(Args, Clone, Debug)]
pub struct DmArgs {
    #[command(flatten)]
    #[allow(missing_docs)]
    pub common: Common,
    /// Users, one connection each.
    #[arg(long, default_value_t = 1000)]
    pub connections: usize,
    /// Direct messages per second, all senders together.
    #[arg(long, default_value_t = 1000.0)]
    pub rate: f64,
    /// Seconds of sending.
    #[arg(long, default_value_t = 10.0)]
    pub duration: f64,
    /// Padding bytes in each message body.
    #[arg(long, default_value_t = 100)]
    pub payload: usize,
    /// A second node of the same cluster: the users are split between the two (the first half
    /// on `--target`), each DM goes to a random user on either, and the report is `dm_cluster`
    /// with both nodes' CPU (and Redis's, with `--redis-pid`).
    #[arg(long)]
    pub other_target: Option<String>,
    /// The second node's process id.
    #[arg(long)]
    pub other_pid: Option<u32>,
    /// The Redis server's process id(s), comma-separated, to count Redis's CPU too.
    #[arg(long, value_delimiter = ',')]
    pub redis_pid: Vec<u32>,
}

/// Where the `pipeline` scenario's publishes go.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum PipelineTo {
    /// One room of `--room-size`: the publisher and `--room-size` - 1 subscribers.
    Room,
    /// Direct messages to random users among `--connections`, each connected.
    Dm,
}

impl PipelineTo {
    /// The name in reports.
    pub fn name(self) -> &'static str {
        match self {
            PipelineTo::Room => "room",
            PipelineTo::Dm => "dm",
        }
    }
}

/// `pipeline`.
#[derive(Args, Clone, Debug)]
pub struct PipelineArgs {
    #[command(flatten)]
    #[allow(missing_docs)]
    pub common: Common,
    /// Where the publishes go (`--target` is the server's URL).
    #[arg(long, value_enum, default_value = "room")]
    pub to: PipelineTo,
    /// Publishes outstanding at once: the next is sent as each answer arrives.
    #[arg(long, default_value_t = 64)]
    pub in_flight: usize,
    /// `--to room`: members of the room, the publisher included.
    #[arg(long, default_value_t = 10)]
    pub room_size: usize,
    /// `--to dm`: recipients, one connection each.
    #[arg(long, default_value_t = 1000)]
    pub connections: usize,
    /// Publishes per second (open loop, still at most `--in-flight` outstanding); without it,
    /// as fast as the answers come back.
    #[arg(long)]
    pub rate: Option<f64>,
    /// Seconds of publishing.
    #[arg(long, default_value_t = 10.0)]
    pub duration: f64,
    /// Padding bytes in each message body.
    #[arg(long, default_value_t = 100)]
    pub payload: usize,
}

/// `storm`.
#[derive(Args, Clone, Debug)]
pub struct StormArgs {
    #[command(flatten)]
    #[allow(missing_docs)]
    pub common: Common,
    /// Connections opened as fast as the server takes them (held until the end).
    #[arg(long, default_value_t = 5000)]
    pub connections: usize,
}

/// `cluster`.
#[derive(Args, Clone, Debug)]
pub struct ClusterArgs {
    #[command(flatten)]
    #[allow(missing_docs)]
    pub common: Common,
    /// The node with no interested connection (it holds `--idle-connections`).
    #[arg(long)]
    pub other_target: String,
    /// Its process id.
    #[arg(long)]
    pub other_pid: Option<u32>,
    /// The Redis server's process id, to report its CPU too; on a Redis Cluster every
    /// `redis-server` of it, comma-separated (their CPU is summed).
    #[arg(long, value_delimiter = ',')]
    pub redis_pid: Vec<u32>,
    /// Subscribers of the busy room, on `--target`.
    #[arg(long, default_value_t = 100)]
    pub connections: usize,
    /// Connections on the other node, none of them in the busy room.
    #[arg(long, default_value_t = 1000)]
    pub idle_connections: usize,
    /// Seconds of a quiet window (no publishes) measured before the traffic, to show what the
    /// nodes spend without it; defaults to `--duration`, 0 skips it.
    #[arg(long)]
    pub baseline_s: Option<f64>,
    #[command(flatten)]
    #[allow(missing_docs)]
    pub publish: PublishOpts,
}

/// `dispatch`.
#[derive(Args, Clone, Debug)]
pub struct DispatchArgs {
    #[command(flatten)]
    #[allow(missing_docs)]
    pub common: Common,
    /// Keep-alive HTTP connections, one request in flight each.
    #[arg(long, default_value_t = 32)]
    pub connections: usize,
    /// Seconds of load.
    #[arg(long, default_value_t = 10.0)]
    pub duration: f64,
}

/// `report`.
#[derive(Args, Clone, Debug)]
pub struct ReportArgs {
    /// Directory of JSON reports (`*.json`).
    pub dir: PathBuf,
}
