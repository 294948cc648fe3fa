//! Sessions driven directly through `run_session`, with a test transport and wire, over real
//! backends: what a session releases when its task panics, and its timers (on paused time).

mod common;
mod teardown;
mod timers;
mod writes;
