//! The shared socket of a TLS connection (WSS, TLS on the TCP transport): rustls's connection
//! state beside the plain socket, under one lock, so that the fan-out can write frames from any
//! task as it does on a plain socket ([`crate::wire::SocketWire`], which stays as it is).
//!
//! Writing encrypts a batch of frames into rustls's buffer and sends what the socket takes. A
//! frame counts as written only once its last encrypted byte is in the socket: a batch that
//! could not all go out reports its last frame as not yet complete (its offset at its end), so
//! the session waits for the socket and calls again, and the rest goes out then. So rustls
//! holds at most one batch (about [`BATCH_BYTES`]) per connection. Reading decrypts what the
//! socket has into the reader's buffer.

use crate::wire::{Framing, MAX_HEAD, ReadSource, read_chunk, with_read_chunk};
use bytes::BytesMut;
use parking_lot::Mutex;
use rustls::ServerConnection;
use std::io::{self, Read, Write};
use std::task::{Context, Poll};
use switchboard_core::transport::{Out, Progress, Wire};
use tokio::net::TcpStream;

/// Plain bytes encrypted per write call before they are sent.
pub const BATCH_BYTES: usize = 64 * 1024;

/// A TLS connection as a [`Wire`] and its reader's source.
pub struct TlsWire<F> {
    stream: TcpStream,
    tls: Mutex<ServerConnection>,
    framing: F,
}

/// The socket as `io::Write` for rustls, without waiting (tokio's `try_write`, which keeps the
/// socket's readiness right for `poll_write_ready`).
struct Sock<'a>(&'a TcpStream);

impl Write for Sock<'_> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.0.try_write(buf)
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

/// Sends what rustls has encrypted; `Ok(true)` once all of it is in the socket.
fn send(tls: &mut ServerConnection, stream: &TcpStream) -> io::Result<bool> {
    while tls.wants_write() {
        match tls.write_tls(&mut Sock(stream)) {
            Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
            Ok(_) => {}
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(false),
            Err(e) => return Err(e),
        }
    }
    Ok(true)
}

impl<F: Framing> TlsWire<F> {
    /// The socket and its TLS state after the handshake (which may hold data already read).
    pub fn new(stream: TcpStream, mut tls: ServerConnection, framing: F) -> TlsWire<F> {
        // rustls's own cap (64 KiB) would refuse part of a frame; what it holds is bounded
        // here instead, by one batch (see the module's documentation).
        tls.set_buffer_limit(None);
        TlsWire {
            stream,
            tls: Mutex::new(tls),
            framing,
        }
    }
}

impl<F: Framing> Wire for TlsWire<F> {
    fn try_write(
        &self,
        frames: &mut dyn Iterator<Item = &Out>,
        offset: usize,
    ) -> io::Result<Progress> {
        let mut tls = self.tls.lock();
        let mut progress = Progress {
            frames: 0,
            offset,
            blocked: false,
        };
        // What an earlier call encrypted goes first.
        if !send(&mut tls, &self.stream)? {
            progress.blocked = true;
            return Ok(progress);
        }
        let mut taken = 0;
        // Whether a frame was taken whose completion is not yet counted.
        let mut open = false;
        for frame in frames {
            // The previous frame is complete once this one is taken: the batch goes on.
            if std::mem::take(&mut open) {
                progress.frames += 1;
                progress.offset = 0;
            }
            let mut head = [0u8; MAX_HEAD];
            let n = self.framing.head(frame, &mut head);
            let payload = self.framing.payload(frame);
            let skip = progress.offset;
            let mut writer = tls.writer();
            if skip < n {
                writer.write_all(&head[skip..n])?;
                writer.write_all(payload)?;
            } else {
                writer.write_all(&payload[(skip - n).min(payload.len())..])?;
            }
            let len = n + payload.len();
            taken += len - skip.min(len);
            progress.offset = len;
            open = true;
            if taken >= BATCH_BYTES {
                break;
            }
        }
        if send(&mut tls, &self.stream)? {
            // Everything taken is in the socket: the last frame is complete too.
            if open {
                progress.frames += 1;
                progress.offset = 0;
            }
        } else {
            // The last frame stays "being written" (at its end) until the rest goes out.
            progress.blocked = true;
        }
        Ok(progress)
    }

    fn poll_writable(&self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        self.stream.poll_write_ready(cx)
    }

    fn shutdown(&self) {
        let mut tls = self.tls.lock();
        tls.send_close_notify();
        let _ = send(&mut tls, &self.stream);
        let _ = socket2::SockRef::from(&self.stream).shutdown(std::net::Shutdown::Write);
    }
}

impl<F: Framing> ReadSource for TlsWire<F> {
    fn poll_read_into(&self, buf: &mut BytesMut, cx: &mut Context<'_>) -> Poll<bool> {
        if buf.is_empty() && buf.capacity() > 0 {
            *buf = BytesMut::new();
        }
        loop {
            {
                let mut tls = self.tls.lock();
                // Decrypted data first (some may have come with the handshake).
                let read = with_read_chunk(|chunk| {
                    let n = tls.reader().read(chunk)?;
                    buf.extend_from_slice(&chunk[..n]);
                    Ok::<_, io::Error>(n)
                });
                match read {
                    Ok(0) => return Poll::Ready(false), // close_notify
                    Ok(_) => return Poll::Ready(true),
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
                    Err(_) => return Poll::Ready(false),
                }
            }
            if let Err(e) = std::task::ready!(self.stream.poll_read_ready(cx)) {
                tracing::debug!(error = %e, "read failed");
                return Poll::Ready(false);
            }
            // `Err`: the connection ended; `Ok(None)`: nothing came after all.
            let fed = with_read_chunk(|raw| {
                let n = match read_chunk(&self.stream, raw) {
                    Ok(0) => return Err(()),
                    Ok(n) => n,
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(None),
                    Err(_) => return Err(()),
                };
                let mut tls = self.tls.lock();
                let mut input = &raw[..n];
                while !input.is_empty() {
                    if tls.read_tls(&mut input).is_err() {
                        return Err(());
                    }
                    if let Err(e) = tls.process_new_packets() {
                        tracing::debug!(error = %e, "TLS error");
                        // The alert, if it can go.
                        let _ = send(&mut tls, &self.stream);
                        return Err(());
                    }
                }
                Ok(Some(tls))
            });
            let mut tls = match fed {
                Ok(Some(tls)) => tls,
                Ok(None) => continue,
                Err(()) => return Poll::Ready(false),
            };
            // Anything rustls must answer (a key update) goes now, best effort; frames that
            // find it still there send it first.
            if send(&mut tls, &self.stream).is_err() {
                return Poll::Ready(false);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wire::TcpFraming;
    use crate::wire::tests::{framed, write_all};
    use bytes::Bytes;
    use rustls_pki_types::pem::PemObject;
    use rustls_pki_types::{CertificateDer, ServerName};
    use std::sync::Arc;
    use tokio::io::AsyncReadExt;

    /// Frames through a TLS connection whose socket buffers are small: batches that could not
    /// all go out, resumed at their offsets, and every byte arrives decrypted in order.
    #[tokio::test]
    async fn partial_tls_writes_resume_and_lose_nothing() {
        let ca = switchboard_testkit::TestCa::new("test CA");
        let files = ca.issue("node", "node");
        let tls_files = crate::tls::TlsFiles::load(&files.cert, &files.key).unwrap();
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let mut roots = rustls::RootCertStore::empty();
        roots
            .add(CertificateDer::from_pem_file(ca.ca_path()).unwrap())
            .unwrap();
        let config = rustls::ClientConfig::builder_with_provider(crate::tls::provider())
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_root_certificates(roots)
            .with_no_client_auth();
        let connector = tokio_rustls::TlsConnector::from(Arc::new(config));
        let client = tokio::spawn(async move {
            let tcp = TcpStream::connect(addr).await.unwrap();
            socket2::SockRef::from(&tcp)
                .set_recv_buffer_size(4096)
                .unwrap();
            let name = ServerName::try_from("localhost").unwrap();
            let mut tls = connector.connect(name, tcp).await.unwrap();
            // Let the writer hit a full buffer first.
            tokio::time::sleep(std::time::Duration::from_millis(200)).await;
            let mut got = Vec::new();
            let _ = tls.read_to_end(&mut got).await;
            got
        });
        let (server, _) = listener.accept().await.unwrap();
        socket2::SockRef::from(&server)
            .set_send_buffer_size(4096)
            .unwrap();
        let tls = tls_files.acceptor().accept(server).await.unwrap();
        let (stream, conn) = tls.into_inner();
        let wire = TlsWire::new(stream, conn, TcpFraming);
        let frames: Vec<Out> = (0..600)
            .map(|i| Out::Text(Bytes::from(format!("frame-{i:06}-{}", "y".repeat(300)))))
            .collect();
        let mut expected = Vec::new();
        for f in &frames {
            expected.extend(framed(&TcpFraming, f));
        }
        let blocked_once = write_all(&wire, &frames).await;
        wire.shutdown();
        drop(wire);
        let got = client.await.unwrap();
        assert!(blocked_once, "the test never filled the socket");
        assert!(got == expected, "bytes differ from the frames written");
    }
}
