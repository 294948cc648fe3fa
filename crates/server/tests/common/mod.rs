//! Test fixtures: nodes started in-process on port 0 (or as real `switchboard` processes when a
//! test kills them), an HTTP helper, and a WebSocket client over a real socket; and the same
//! router called in-process ([`InProcess`]) for request/response checks.
#![allow(dead_code, missing_docs)]

mod any_client;
mod checks;
mod client;
mod http;
mod inprocess;
mod node;
mod poll_client;
mod process;
mod tcp_client;
pub mod tls;
mod ws_client;
// Not every test binary uses them all.
#[allow(unused_imports)]
pub use any_client::{AnyClient, Kind};
#[allow(unused_imports)]
pub use checks::{assert_error, eventually, ids, now_ms, seqs};
#[allow(unused_imports)]
pub use client::Client;
#[allow(unused_imports)]
pub use http::{Http, JsonApi};
#[allow(unused_imports)]
pub use inprocess::InProcess;
#[allow(unused_imports)]
pub use node::{TestNode, metric, test_config};
#[allow(unused_imports)]
pub use poll_client::PollClient;
#[allow(unused_imports)]
pub use process::{NodeProcess, data_path, redis_node};
#[allow(unused_imports)]
pub use tcp_client::TcpClient;
#[allow(unused_imports)]
pub use ws_client::WsClient;

use std::time::Duration;

pub const API_KEY: &str = "test-api-key";
pub const PASSWORD: &str = "correct horse";
/// Upper bound on waiting for any single expected event.
pub const WAIT: Duration = Duration::from_secs(10);
