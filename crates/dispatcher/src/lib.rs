//! The dispatcher: tells each client which gateway to connect to.
//!
//! Health and load are *pulled*: a prober asks every known gateway for `GET /v1/node` every
//! second (configurable) with a short timeout; gateways never depend on the dispatcher.
//! Gateways are known from a static list (`--gateways`), from the cluster registry (each
//! gateway announces its URL with its lease), and the local node itself when it is a gateway.
//! `/v1/dispatch` is answered from the prober's in-memory view: no backend round trip.

pub mod health;
pub mod placement;
pub mod prober;
pub mod rebalance;

pub use placement::{Candidate, Placement, place};
pub use prober::{Dispatcher, DispatcherConfig, GatewaySource, LocalGateway};
pub use rebalance::Rebalance;
