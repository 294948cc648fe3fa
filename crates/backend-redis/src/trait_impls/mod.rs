//! The four `switchboard_core::backend` traits implemented for [`RedisBackend`](crate::RedisBackend),
//! one file each. Every call checks the backend is open, then hands over to the module that
//! does the work with the shared state.

mod broker;
mod lifecycle;
mod registry;
mod store;
