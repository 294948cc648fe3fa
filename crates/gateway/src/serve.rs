//! The node's HTTP/1.1 server: an accept loop that serves the routes with hyper, upgrades
//! included.
//!
//! It is ours rather than `axum::serve` because the WebSocket transport needs the plain
//! `TcpStream` back at the upgrade, to share it with the fan-out (`axum::serve` wraps every
//! connection in a private type that cannot be taken back apart). It also sets `TCP_NODELAY`,
//! backs off when `accept` fails (out of descriptors, say) instead of ending, and shuts down
//! gracefully: stop accepting, let requests in flight finish, close idle keep-alive connections.
//!
//! What one client may hold ([`HttpLimits`]): a connection is admitted only under the total and
//! per-address caps (over them it gets a short 503 written on the raw socket, and is closed);
//! its request head must arrive whole within the header timeout (hyper's timer, a total that
//! bytes trickling in do not reset; it also runs while a keep-alive connection waits for its
//! next request) and fit in `max_head_bytes`; a body announced larger than `max_body_bytes` is
//! refused with 413 before any of it is read; a body must arrive within the body timeout; and a
//! response the client does not read ends the connection after the write timeout. An upgraded
//! WebSocket leaves the caps: it is a session then, under `max_connections`.

use crate::http_error::ApiError;
use crate::limits::{ConnCaps, HttpLimits, MIN_HEAD_BYTES, Refused};
use crate::timed::{DeadlineBody, TimedStream};
use crate::tls::HANDSHAKE_TIMEOUT;
use axum::Router;
use axum::http::{Request, header};
use axum::response::{IntoResponse, Response};
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper_util::rt::{TokioIo, TokioTimer};
use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;
use switchboard_core::Error;
use switchboard_core::metrics::Metrics;
use switchboard_proto::ErrorCode;
use switchboard_proto::backoff::Backoff;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio_rustls::TlsAcceptor;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tower::Service;

/// The delays of an accept loop whose `accept` fails (out of descriptors, say): from 5 ms up to
/// 1 s, never under 5 ms so the loop does not spin while nothing has been freed.
pub(crate) fn accept_backoff() -> Backoff {
    Backoff::new(Duration::from_millis(5), Duration::from_secs(1))
        .with_floor(Duration::from_millis(5))
}

/// Refusals being written at once; past it a refused socket is closed without an answer, so a
/// flood of connections cannot turn the refusals themselves into held descriptors.
const MAX_REFUSING: usize = 256;

/// Longest a refusal may take (writing the 503, then reading what the client sent so that
/// closing does not reset the connection before the client has read the answer).
const REFUSAL_TIME: Duration = Duration::from_secs(1);

/// Serves `router` on `listener` within `limits` until `stop` is cancelled, then waits for the
/// connections it is serving (not the upgraded ones, which their sessions own) to finish. The
/// answers given before the routes run (413, and 503 over a cap) are counted in `metrics` by
/// code, as the routes' errors are.
///
/// With `tls`, every connection is a TLS one (HTTPS, WSS): its handshake has
/// [`crate::tls::HANDSHAKE_TIMEOUT`], and a connection over a cap is closed without an answer
/// (a plain 503 would mean nothing to a TLS client).
pub async fn serve_http(
    listener: TcpListener,
    router: Router,
    limits: HttpLimits,
    metrics: Arc<Metrics>,
    tls: Option<TlsAcceptor>,
    stop: CancellationToken,
) {
    let connections = TaskTracker::new();
    let (closing_tx, closing_rx) = tokio::sync::watch::channel(false);
    let caps = ConnCaps::new(limits.max_connections, limits.max_connections_per_ip);
    let refusing = Arc::new(AtomicUsize::new(0));
    let mut builder = http1::Builder::new();
    let head = limits.max_head_bytes.max(MIN_HEAD_BYTES);
    builder
        .timer(TokioTimer::new())
        .header_read_timeout(limits.header_timeout)
        .max_buf_size(head)
        .max_header_size(head);
    let limits = Arc::new(limits);
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
        let slot = match caps.try_admit(peer.ip()) {
            Ok(slot) => slot,
            Err(why) => {
                metrics.error(ErrorCode::Overloaded);
                if tls.is_none() {
                    refuse(stream, peer, why, &refusing);
                }
                continue;
            }
        };
        let _ = stream.set_nodelay(true);
        let io = TimedStream::new(stream, limits.write_timeout);
        // A `Router` clone is a reference count: its routes were built once, by the caller.
        let (router, limits, metrics) = (router.clone(), limits.clone(), metrics.clone());
        let encrypted = tls.is_some();
        let service = hyper::service::service_fn(move |req| {
            guarded(router.clone(), &limits, &metrics, peer, encrypted, req)
        });
        let (builder, closing, tls) = (builder.clone(), closing_rx.clone(), tls.clone());
        connections.spawn(async move {
            // Held while the connection is plain HTTP: an upgrade ends this future.
            let _slot = slot;
            let result = match tls {
                None => serve_connection(&builder, io, service, closing).await,
                // Boxed: the TLS handshake and stream are far larger than a plain connection's
                // state, and this task's size is its largest branch's, for plain connections too.
                Some(tls) => Box::pin(async move {
                    let handshake = tokio::time::timeout(HANDSHAKE_TIMEOUT, tls.accept(io));
                    match handshake.await {
                        Ok(Ok(io)) => Some(serve_connection(&builder, io, service, closing).await),
                        Ok(Err(e)) => {
                            tracing::debug!(%peer, error = %e, "TLS handshake failed");
                            None
                        }
                        Err(_) => None,
                    }
                })
                .await
                .unwrap_or(Ok(())),
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

/// Serves one connection (plain or TLS) until it ends, is upgraded, or the server closes.
async fn serve_connection<I, S>(
    builder: &http1::Builder,
    io: I,
    service: S,
    mut closing: tokio::sync::watch::Receiver<bool>,
) -> hyper::Result<()>
where
    I: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
    S: hyper::service::HttpService<Incoming> + Send,
    S::Future: Send + 'static,
    S::ResBody: Send + 'static,
    <S::ResBody as hyper::body::Body>::Data: Send,
    <S::ResBody as hyper::body::Body>::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    let conn = builder
        .serve_connection(TokioIo::new(io), service)
        .with_upgrades();
    tokio::pin!(conn);
    tokio::select! {
        r = conn.as_mut() => r,
        _ = closing.changed() => {
            conn.as_mut().graceful_shutdown();
            conn.await
        }
    }
}

/// One request: a body announced over the limit is refused before it is read; any other gets
/// its body deadline and the peer's address (`ConnectInfo`, which per-IP limits read) and goes
/// to the routes.
fn guarded(
    mut router: Router,
    limits: &HttpLimits,
    metrics: &Metrics,
    peer: std::net::SocketAddr,
    encrypted: bool,
    mut req: Request<Incoming>,
) -> impl Future<Output = Result<Response, Infallible>> + use<> {
    req.extensions_mut()
        .insert(axum::extract::ConnectInfo(peer));
    if encrypted {
        req.extensions_mut().insert(Encrypted);
    }
    let refused = announced_len(&req)
        .filter(|&n| n > limits.max_body_bytes as u64)
        .map(|n| {
            metrics.error(ErrorCode::TooLarge);
            too_large(n, limits.max_body_bytes)
        });
    let body_timeout = limits.body_timeout;
    async move {
        if let Some(resp) = refused {
            return Ok(resp);
        }
        let req = req.map(|body| DeadlineBody::new(body, body_timeout));
        router.call(req).await
    }
}

/// Marks a request that came over TLS (a request extension): its upgraded connection is a TLS
/// stream, not the plain socket.
#[derive(Debug, Clone, Copy)]
pub struct Encrypted;

/// The request's `Content-Length`, when it has one that parses.
fn announced_len(req: &Request<Incoming>) -> Option<u64> {
    req.headers()
        .get(header::CONTENT_LENGTH)?
        .to_str()
        .ok()?
        .trim()
        .parse()
        .ok()
}

/// The 413 of a body announced at `len` bytes; the connection is closed after it (hyper does
/// not keep a connection whose body was not read), so the body is never read.
fn too_large(len: u64, max: usize) -> Response {
    let mut resp = ApiError(Error::new(
        ErrorCode::TooLarge,
        format!("request body of {len} bytes is over the limit of {max}"),
    ))
    .into_response();
    resp.headers_mut().insert(
        header::CONNECTION,
        header::HeaderValue::from_static("close"),
    );
    resp
}

/// Answers a connection over a cap with a plain 503 on the raw socket and closes it, in a task
/// of its own bounded by [`REFUSAL_TIME`]; past [`MAX_REFUSING`] refusals at once, closes it
/// at once.
fn refuse(stream: TcpStream, peer: SocketAddr, why: Refused, refusing: &Arc<AtomicUsize>) {
    let message = match why {
        Refused::Total => "this node serves its maximum of HTTP connections; retry later",
        Refused::PerIp => "too many connections from your address; retry later",
    };
    tracing::debug!(%peer, ?why, "HTTP connection refused");
    if refusing.fetch_add(1, Ordering::Relaxed) >= MAX_REFUSING {
        refusing.fetch_sub(1, Ordering::Relaxed);
        return;
    }
    let refusing = refusing.clone();
    tokio::spawn(async move {
        let _ = tokio::time::timeout(REFUSAL_TIME, write_503(stream, message)).await;
        refusing.fetch_sub(1, Ordering::Relaxed);
    });
}

/// The whole 503 exchange: the answer, a half close, then what the client sent is read and
/// dropped (up to 64 KiB) until it closes, so the answer is not lost to a reset.
async fn write_503(mut stream: TcpStream, message: &str) {
    let body = serde_json::json!({"error": {"code": ErrorCode::Overloaded, "message": message}})
        .to_string();
    let answer = format!(
        "HTTP/1.1 503 Service Unavailable\r\ncontent-type: application/json\r\n\
         retry-after: 1\r\nconnection: close\r\ncontent-length: {}\r\n\r\n{body}",
        body.len()
    );
    if stream.write_all(answer.as_bytes()).await.is_err() {
        return;
    }
    let _ = stream.shutdown().await;
    let mut sink = [0u8; 4096];
    let mut left: usize = 64 * 1024;
    while left > 0 {
        match stream.read(&mut sink).await {
            Ok(0) | Err(_) => return,
            Ok(n) => left = left.saturating_sub(n),
        }
    }
}
