//! The HTTP API in-process: the router a node serves, called with `tower::ServiceExt::oneshot`
//! (no socket), for every request/response check of the contract: success shapes, and error
//! cases (authorization, validation, limits, 404s) with the `{"error":{"code":..., "message":...}}`
//! body. What needs sockets, WebSocket clients or a restart is in `http_api/`. The nodes are
//! [`InProcess`](crate::common::InProcess).

mod messages;
mod rooms;
mod routes;
mod server_api;
mod users;
