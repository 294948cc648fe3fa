//! Switchboard's core: the backend interfaces, the fan-out hub, transport-neutral sessions,
//! and the rules of sequencing and resume. It knows nothing of where data lives (see
//! [`backend`]) nor of how bytes reach a client (see [`transport`]).

pub mod admission;
pub mod auth;
pub mod backend;
pub mod config;
pub mod conn;
pub mod delivery;
pub mod error;
pub mod hub;
pub mod interest;
pub mod metrics;
pub mod moment;
pub mod names;
pub mod node;
mod offline;
pub mod ratelimit;
pub mod recovery;
pub mod session;
pub(crate) mod subscriptions;
pub mod transport;

pub use error::{Error, Result};
pub use node::Node;
