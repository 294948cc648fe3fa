//! The embedded backend's integration tests, as one test binary (one link instead of three).
//! `persistence` stays a binary of its own: it re-runs its own executable as a child with an
//! exact test name (`crash_child --exact`) and SIGKILLs it.

#[path = "../common/mod.rs"]
mod common;

mod caches;
mod conformance;
mod throughput;
mod upgrade;
