//! [`serve`]: serves a router (the library's routes, with any of the application's) on a
//! listener with hyper, each connection as its plain `TcpStream`, so that WebSocket sessions
//! run on their sockets and packets sent to an idle session are written by the sender
//! directly (see [`Hooks::take_socket`](crate::engine::Hooks::take_socket)). `axum::serve`
//! works too, on the slower path: it wraps connections in a type of its own.

use std::convert::Infallible;

use axum::Router;
use axum::extract::ConnectInfo;
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper_util::rt::TokioIo;
use hyper_util::service::TowerToHyperService;
use tokio::net::TcpListener;
use tower::ServiceExt;

/// How [`serve_with`] treats each accepted connection.
#[derive(Debug, Clone, Copy)]
pub struct ServeOptions {
    /// `TCP_NODELAY` on every socket (the default): each packet leaves at once. Off, the
    /// kernel's Nagle algorithm holds a small write while an earlier one is unacknowledged, so
    /// two packets written back to back usually reach the client in two reads. Clients that
    /// take only the first frame of a read (the official protocol test suites' do) need that.
    pub nodelay: bool,
}

impl Default for ServeOptions {
    fn default() -> ServeOptions {
        ServeOptions { nodelay: true }
    }
}

/// Serves `router` on `listener` with the default [`ServeOptions`] until accepting fails for
/// good (the error is returned). Each request carries the client's address as
/// `ConnectInfo<SocketAddr>`. A failed `accept` (out of descriptors, say) is retried after 10 ms.
pub async fn serve(listener: TcpListener, router: Router) -> std::io::Result<()> {
    serve_with(listener, router, ServeOptions::default()).await
}

/// [`serve`] with `options`.
pub async fn serve_with(
    listener: TcpListener,
    router: Router,
    options: ServeOptions,
) -> std::io::Result<()> {
    loop {
        let (stream, peer) = match listener.accept().await {
            Ok(accepted) => accepted,
            Err(e) if is_transient(&e) => {
                tokio::time::sleep(std::time::Duration::from_millis(10)).await;
                continue;
            }
            Err(e) => return Err(e),
        };
        let _ = stream.set_nodelay(options.nodelay);
        let router = router.clone();
        let service = tower::service_fn(move |mut req: axum::http::Request<Incoming>| {
            req.extensions_mut().insert(ConnectInfo(peer));
            let router = router.clone();
            async move { Ok::<_, Infallible>(router.oneshot(req).await.unwrap_or_else(|e| match e {})) }
        });
        tokio::spawn(async move {
            let conn = http1::Builder::new()
                .serve_connection(TokioIo::new(stream), TowerToHyperService::new(service))
                .with_upgrades();
            if let Err(e) = conn.await {
                tracing::debug!(error = %e, "connection ended with an error");
            }
        });
    }
}

/// Whether `accept` failed for a reason that passes (out of descriptors, an aborted
/// connection) rather than a broken listener.
fn is_transient(e: &std::io::Error) -> bool {
    use std::io::ErrorKind::*;
    matches!(
        e.kind(),
        ConnectionAborted | ConnectionReset | Interrupted | WouldBlock
    ) || e
        .raw_os_error()
        .is_some_and(|code| code == 23 || code == 24) // ENFILE, EMFILE
}
