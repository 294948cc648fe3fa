//! The raw TCP transport on `--tcp-listen`: each frame is a 4-byte big-endian length, then that
//! many bytes of the same JSON as on WebSocket.
//!
//! Reading is cancel-safe (the session polls it in a `select!`): bytes go into a buffer that
//! survives a cancelled read, and a frame is only taken out once complete. Writing goes through
//! the shared socket ([`crate::wire`]), so the fan-out writes frames itself. A frame over
//! `max_frame_bytes` is skipped without being buffered and answered `too_large` (the connection
//! goes on); a length over four times that closes the connection. Nothing is buffered without
//! bound.

use crate::decode::{TcpDecoder, TcpItem};
use crate::limits::ConnCaps;
use crate::tls::HANDSHAKE_TIMEOUT;
use crate::tls_wire::TlsWire;
use crate::wire::{ReadSource, SocketWire, TcpFraming};
use bytes::{BufMut, BytesMut};
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;
use switchboard_core::Node;
use switchboard_core::session::run_session;
use switchboard_core::transport::{Inbound, Transport};
use switchboard_proto::{ErrorCode, ServerFrame};
use tokio::io::AsyncWriteExt;
use tokio::net::{TcpListener, TcpStream};
use tokio_rustls::TlsAcceptor;
use tokio_util::sync::CancellationToken;

/// Accepts TCP clients until `stop` is cancelled, at most `max_per_ip` at once from one client
/// address (`0` = no cap; see [`crate::limits::client_key`]). A failing `accept` (e.g. out of
/// file descriptors) backs off and retries; it never ends the loop. With `tls`, every client
/// is a TLS one (its handshake within [`HANDSHAKE_TIMEOUT`], holding its slot), and one that
/// cannot be admitted is closed without an answer.
pub async fn serve_tcp(
    listener: TcpListener,
    node: Arc<Node>,
    max_per_ip: usize,
    tls: Option<TlsAcceptor>,
    stop: CancellationToken,
) {
    let caps = ConnCaps::new(0, max_per_ip);
    let mut backoff = crate::serve::accept_backoff();
    loop {
        let accepted = tokio::select! {
            _ = stop.cancelled() => return,
            a = listener.accept() => a,
        };
        match accepted {
            Ok((stream, peer)) => {
                backoff.reset();
                let Ok(slot) = caps.try_admit(peer.ip()) else {
                    tracing::debug!(%peer, "TCP connection over the per-address cap refused");
                    if tls.is_none() {
                        tokio::spawn(refuse(stream));
                    }
                    continue;
                };
                let _ = stream.set_nodelay(true);
                // The slot is taken here, before the session exists, and held by its task.
                let permit = (!node.is_draining()).then(|| node.admission.try_admit());
                let Some(Some(permit)) = permit else {
                    if tls.is_none() {
                        tokio::spawn(refuse(stream));
                    }
                    continue;
                };
                let max = node.limits.max_frame_bytes;
                let Some(acceptor) = &tls else {
                    let wire = Arc::new(SocketWire::new(stream, TcpFraming));
                    let reader = TcpReader::new(wire.clone(), max);
                    let session = run_session(node.clone(), reader, wire, None);
                    // The address's place is held for as long as the session runs.
                    node.admission.spawn(permit, async move {
                        session.await;
                        drop(slot);
                    });
                    continue;
                };
                let (acceptor, session_node) = (acceptor.clone(), node.clone());
                node.admission.spawn(permit, async move {
                    let handshake =
                        tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(stream));
                    let Ok(Ok(tls)) = handshake.await else {
                        tracing::debug!(%peer, "TLS handshake failed or timed out");
                        return;
                    };
                    let (stream, conn) = tls.into_inner();
                    let wire = Arc::new(TlsWire::new(stream, conn, TcpFraming));
                    let reader = TcpReader::new(wire.clone(), max);
                    run_session(session_node, reader, wire, None).await;
                    drop(slot);
                });
            }
            Err(e) => {
                let delay = backoff.next_delay();
                tracing::warn!(error = %e, ?delay, "TCP accept failed; backing off");
                tokio::time::sleep(delay).await;
            }
        }
    }
}

/// Tells a client the node (or its share for the client's address) is full, or draining, then
/// closes.
async fn refuse(mut stream: TcpStream) {
    let frame = ServerFrame::error(
        None,
        ErrorCode::Overloaded,
        "this node is full or draining; ask the dispatcher",
    )
    .encode();
    let mut out = BytesMut::with_capacity(frame.len() + 4);
    out.put_u32(frame.len() as u32);
    out.put_slice(&frame);
    let _ = tokio::time::timeout(Duration::from_secs(1), stream.write_all(&out)).await;
}

/// The reading half of a TCP connection: reads into a buffer and hands it to the pure
/// [`TcpDecoder`].
pub struct TcpReader<S = SocketWire<TcpFraming>> {
    socket: Arc<S>,
    /// Bytes read but not yet decoded; empty (no allocation) between frames.
    read: BytesMut,
    decoder: TcpDecoder,
    /// The connection cannot continue (a length beyond the hard limit, or the peer closed).
    done: bool,
}

impl<S: ReadSource> TcpReader<S> {
    /// Reads frames from `socket`.
    pub fn new(socket: Arc<S>, max_frame: usize) -> TcpReader<S> {
        TcpReader {
            socket,
            read: BytesMut::new(),
            decoder: TcpDecoder::new(max_frame),
            done: false,
        }
    }

    fn poll_recv(&mut self, cx: &mut Context<'_>) -> Poll<Option<Inbound>> {
        loop {
            if self.done {
                return Poll::Ready(None);
            }
            match self.decoder.decode(&mut self.read) {
                Ok(Some(TcpItem::Frame(f))) => return Poll::Ready(Some(Inbound::Frame(f))),
                Ok(Some(TcpItem::TooLarge(n))) => return Poll::Ready(Some(Inbound::TooLarge(n))),
                Ok(None) => {}
                Err(e) => {
                    tracing::debug!(len = e.len, "TCP frame length past the hard limit");
                    self.done = true;
                    return Poll::Ready(None);
                }
            }
            // A clean close, or one in the middle of a frame (a truncated frame is dropped).
            if !std::task::ready!(self.socket.poll_read_into(&mut self.read, cx)) {
                self.done = true;
                return Poll::Ready(None);
            }
        }
    }
}

impl<S: ReadSource> Transport for TcpReader<S> {
    async fn recv(&mut self) -> Option<Inbound> {
        std::future::poll_fn(|cx| self.poll_recv(cx)).await
    }
}
