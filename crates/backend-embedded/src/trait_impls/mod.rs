//! The four `switchboard_core::backend` traits implemented for [`EmbeddedBackend`](crate::EmbeddedBackend),
//! one file each. They reach the writer and the readers through the backend's own helpers
//! (`write`, `read`, `send_append`, `check_open`) in the crate root.

mod broker;
mod lifecycle;
mod registry;
mod store;
