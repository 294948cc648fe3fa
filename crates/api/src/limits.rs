//! What the HTTP API's abuse limits need from a request: the client's address. The limits
//! themselves are the node's ([`switchboard_core::node::Guards`]), so that a direct message is
//! counted the same over HTTP and over a connection.
//!
//! The address is the socket's peer, which the HTTP server puts in every request's extensions
//! as axum's `ConnectInfo`. Behind a reverse proxy that is the proxy's address (forwarded
//! headers are not trusted): raise the per-IP limits there, or set them to `0`. A request
//! without it (an in-process test calling the router) is not limited per address.

use axum::extract::{ConnectInfo, FromRequestParts};
use axum::http::request::Parts;
use std::convert::Infallible;
use std::net::{IpAddr, SocketAddr};

/// The client's IP address, when the server knows it.
pub struct ClientIp(pub Option<IpAddr>);

impl<S: Send + Sync> FromRequestParts<S> for ClientIp {
    type Rejection = Infallible;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self, Self::Rejection> {
        Ok(ClientIp(
            parts
                .extensions
                .get::<ConnectInfo<SocketAddr>>()
                .map(|ConnectInfo(addr)| addr.ip().to_canonical()),
        ))
    }
}
