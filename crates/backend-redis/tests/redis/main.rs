//! The Redis backend's integration tests, as one test binary (one link instead of six). `bench`
//! stays a binary of its own: a measurement, run alone with `--test bench -- --ignored`.

#[path = "../common/mod.rs"]
mod common;

mod batching;
mod conformance;
mod connect;
mod leases;
mod outage;
mod retention;
mod routing;
mod upgrade;
