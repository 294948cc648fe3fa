//! The node's HTTP/1.1 server: an accept loop that serves the routes with hyper, upgrades
//! included.
//!
//! It is ours rather than `axum::serve` because the WebSocket transport needs the plain
//! `TcpStream` back at the upgrade, to share it with the fan-out (`axum::serve` wraps every
//! connection in a private type that cannot be taken back apart). It also sets `TCP_NODELAY`,
//! backs off when `accept` fails (out of descriptors, say) instead of ending, and shuts down
//! gracefully: stop accepting, let requests in flight finish, close idle keep-alive connections.

use axum::Router;
use hyper::server::conn::http1;
use hyper_util::rt::TokioIo;
use hyper_util::service::TowerToHyperService;
use std::time::Duration;
use switchboard_proto::backoff::Backoff;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tower::Layer;

/// The delays of an accept loop whose `accept` fails (out of descriptors, say): from 5 ms up to
/// 1 s, never under 5 ms so the loop does not spin while nothing has been freed.
pub(crate) fn accept_backoff() -> Backoff {
    Backoff::new(Duration::from_millis(5), Duration::from_secs(1))
        .with_floor(Duration::from_millis(5))
}

/// Serves `router` on `listener` until `stop` is cancelled, then waits for the connections it
/// is serving (not the upgraded ones, which their sessions own) to finish.
pub async fn serve_http(listener: TcpListener, router: Router, stop: CancellationToken) {
    let connections = TaskTracker::new();
    let (closing_tx, closing_rx) = tokio::sync::watch::channel(false);
    let mut backoff = accept_backoff();
    loop {
        let accepted = tokio::select! {
            _ = stop.cancelled() => break,
            a = listener.accept() => a,
        };
        let (stream, peer) = match accepted {
            Ok(accepted) => accepted,
            Err(e) => {
                let delay = backoff.next_delay();
                tracing::warn!(error = %e, ?delay, "HTTP accept failed; backing off");
                tokio::time::sleep(delay).await;
                continue;
            }
        };
        backoff.reset();
        let _ = stream.set_nodelay(true);
        // A `Router` clone is a reference count: its routes were built once, by the caller.
        // Every request carries the peer's address (`ConnectInfo`): per-IP limits read it.
        // (A wrapper around the whole router, not `Router::layer`, which would redo every route.)
        let service = TowerToHyperService::new(
            axum::Extension(axum::extract::ConnectInfo(peer)).layer(router.clone()),
        );
        let mut closing = closing_rx.clone();
        connections.spawn(async move {
            let conn = http1::Builder::new()
                .serve_connection(TokioIo::new(stream), service)
                .with_upgrades();
            tokio::pin!(conn);
            let result = tokio::select! {
                r = conn.as_mut() => r,
                _ = closing.changed() => {
                    conn.as_mut().graceful_shutdown();
                    conn.await
                }
            };
            if let Err(e) = result {
                tracing::debug!(error = %e, "HTTP connection ended with an error");
            }
        });
    }
    drop(listener);
    let _ = closing_tx.send(true);
    connections.close();
    connections.wait().await;
}
