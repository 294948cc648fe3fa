//! The server's integration tests, as one test binary: each links the whole server, so one
//! binary instead of fourteen saves most of the link time. Run one suite with a filter, e.g.
//! `cargo test -p switchboard-server --test e2e sdk::`. `measure` stays a binary of its own:
//! it is run alone, in release, with `--test-threads 1`.

#[path = "../common/mod.rs"]
mod common;

mod balancer;
mod chaos;
mod chat_cli;
mod cluster;
mod dispatcher;
mod http_abuse;
mod http_api;
mod http_inprocess;
mod limits;
mod memory;
mod names;
mod ops_listen;
mod ordering;
mod origins;
mod persistence;
mod persistence_limit;
mod pipelining;
mod pipelining_mixed;
mod rebalance;
mod redis_cluster;
mod revocation;
mod sdk;
mod smoke;
mod socketio_ws;
mod tls;
mod transports;
mod web;
mod webhook;
mod ws_protocol;
