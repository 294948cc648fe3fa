//! The server side of a WebSocket on an upgraded HTTP connection: the opening handshake
//! (RFC 6455 section 4.2), then messages in (fragments joined, bounded by `maxPayload`) and
//! frames out. An idle connection holds no read buffer: each read uses a buffer on the stack of
//! the poll, and only the bytes of an unfinished frame are kept between polls.
//!
//! The connection is the plain TCP socket when [`TakeSocket`] gets it out of hyper's upgraded
//! connection (then frames may be written to it directly, [`super::direct`]), else hyper's
//! upgraded connection itself.

use std::future::{Future, poll_fn};
use std::mem::MaybeUninit;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll, ready};

use axum::extract::Request;
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, header};
use axum::response::{IntoResponse, Response};
use base64::Engine as _;
use futures_util::FutureExt;
use futures_util::future::OptionFuture;
use hyper::upgrade::Upgraded;
use hyper_util::rt::TokioIo;
use sha1::{Digest, Sha1};
use tokio::io::{AsyncRead, AsyncWriteExt, ReadBuf};
use tokio::net::TcpStream;

use super::direct::TakeSocket;

use super::wsframe::{self, FrameError, opcode};

/// What a read gave.
#[derive(Debug)]
pub(crate) enum WsIn {
    /// A complete text message (UTF-8 not yet checked).
    Text(Vec<u8>),
    /// A complete binary message.
    Binary(Vec<u8>),
    /// A ping, to be answered with a pong carrying the same bytes.
    Ping(Vec<u8>),
    /// The client closed (a close frame or the end of the stream).
    Closed,
    /// A message past `maxPayload`.
    TooLong,
    /// A protocol violation or a read error.
    Error,
}

/// What a WebSocket runs on.
enum Io {
    /// The plain socket, shared with the direct write path.
    Direct(Arc<TcpStream>),
    /// Hyper's upgraded connection (boxed: it is the rare case, and larger).
    Hyper(Box<TokioIo<Upgraded>>),
}

/// One server WebSocket.
pub(crate) struct WsConn {
    io: Io,
    /// Bytes read but not yet a whole frame; empty (no allocation) between messages.
    buf: Vec<u8>,
    /// A fragmented message being joined: its opcode and its bytes so far.
    partial: Option<(u8, Vec<u8>)>,
    max: usize,
}

/// The bytes read at once (on the stack of the poll, not kept).
const READ_CHUNK: usize = 4096;

impl WsConn {
    /// The next message (cancel-safe: what was read stays in `self`).
    pub async fn recv(&mut self) -> WsIn {
        poll_fn(|cx| self.poll_recv(cx)).await
    }

    /// The next message, or `Pending` (then `cx` is woken when more may be read).
    pub fn poll_recv(&mut self, cx: &mut Context<'_>) -> Poll<WsIn> {
        loop {
            match wsframe::decode(&self.buf, self.max) {
                Err(FrameError::TooLong(_)) => return Poll::Ready(WsIn::TooLong),
                Err(_) => return Poll::Ready(WsIn::Error),
                Ok(Some((frame, used))) => {
                    if used == self.buf.len() {
                        self.buf = Vec::new();
                    } else {
                        self.buf.drain(..used);
                    }
                    if let Some(message) = self.on_frame(frame) {
                        return Poll::Ready(message);
                    }
                }
                Ok(None) => match ready!(self.poll_read_more(cx)) {
                    Err(_) => return Poll::Ready(WsIn::Error),
                    Ok(0) => return Poll::Ready(WsIn::Closed),
                    Ok(_) => {}
                },
            }
        }
    }

    /// Appends what the connection has to `buf`; `Ok(0)` at the end of the stream.
    fn poll_read_more(&mut self, cx: &mut Context<'_>) -> Poll<std::io::Result<usize>> {
        match &mut self.io {
            Io::Direct(stream) => loop {
                ready!(stream.poll_read_ready(cx))?;
                // Straight into `buf`, not zeroed first (it is freed again once its frames are
                // taken, so an idle connection holds none).
                self.buf.reserve(READ_CHUNK);
                match stream.try_read_buf(&mut self.buf) {
                    Ok(n) => return Poll::Ready(Ok(n)),
                    Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                        if self.buf.is_empty() {
                            self.buf = Vec::new();
                        }
                    }
                    Err(e) => return Poll::Ready(Err(e)),
                }
            },
            Io::Hyper(io) => {
                // Not zeroed: a poll that finds nothing to read (every wake-up for queued
                // packets polls the read too) must not clear 4 KiB.
                let mut chunk = [MaybeUninit::<u8>::uninit(); READ_CHUNK];
                let mut read = ReadBuf::uninit(&mut chunk);
                ready!(Pin::new(&mut **io).poll_read(cx, &mut read))?;
                self.buf.extend_from_slice(read.filled());
                Poll::Ready(Ok(read.filled().len()))
            }
        }
    }

    /// The plain socket, borrowed, when the connection is one.
    pub fn direct_ref(&self) -> Option<&TcpStream> {
        match &self.io {
            Io::Direct(stream) => Some(stream),
            Io::Hyper(_) => None,
        }
    }

    /// The plain socket, when the connection is one (frames may then be written directly).
    pub fn direct(&self) -> Option<Arc<TcpStream>> {
        match &self.io {
            Io::Direct(stream) => Some(stream.clone()),
            Io::Hyper(_) => None,
        }
    }

    /// A whole message, a control message, or `None` while fragments are being joined.
    fn on_frame(&mut self, frame: wsframe::Frame) -> Option<WsIn> {
        let message = |op: u8, payload: Vec<u8>| {
            if op == opcode::TEXT {
                WsIn::Text(payload)
            } else {
                WsIn::Binary(payload)
            }
        };
        match frame.opcode {
            opcode::PING => Some(WsIn::Ping(frame.payload)),
            opcode::PONG => None,
            opcode::CLOSE => Some(WsIn::Closed),
            opcode::CONTINUATION => {
                let Some((op, mut joined)) = self.partial.take() else {
                    return Some(WsIn::Error);
                };
                if joined.len() + frame.payload.len() > self.max {
                    return Some(WsIn::TooLong);
                }
                joined.extend_from_slice(&frame.payload);
                if frame.fin {
                    Some(message(op, joined))
                } else {
                    self.partial = Some((op, joined));
                    None
                }
            }
            // A new message before the fragmented one ended.
            _ if self.partial.is_some() => Some(WsIn::Error),
            op if frame.fin => Some(message(op, frame.payload)),
            op => {
                self.partial = Some((op, frame.payload));
                None
            }
        }
    }

    /// Writes one frame. Frames are written one write each: a client may read each TCP segment
    /// as one event and handle only the first frame of it (the official test suites' clients
    /// do), so frames are not packed into one write.
    ///
    /// The header and the payload go out in one vectored write (no copy of the payload).
    ///
    /// On the plain socket this is for frames written before the session may write directly
    /// (the upgrade's probe) and for the close: the session's own frames then go through its
    /// queue, in order with the direct writes.
    pub async fn send(&mut self, op: u8, payload: &[u8]) -> std::io::Result<()> {
        let io = match &mut self.io {
            Io::Direct(stream) => {
                let total = super::direct::wire_len(op, payload.len());
                let mut done = 0;
                while done < total {
                    done +=
                        super::direct::write_parts(stream, op, &[payload], payload.len(), done)?;
                    if done < total {
                        stream.writable().await?;
                    }
                }
                return Ok(());
            }
            Io::Hyper(io) => io,
        };
        let mut head = [0u8; wsframe::MAX_HEADER];
        let used = wsframe::write_header(&mut head, op, payload.len());
        let mut out = bytes::Buf::chain(&head[..used], payload);
        io.write_all_buf(&mut out).await?;
        io.flush().await
    }

    /// Ends the connection without a close frame (one was cut off part-way: the stream cannot
    /// take another frame). On hyper's connection, dropping it ends it.
    pub fn abort(&self) {
        if let Io::Direct(stream) = &self.io {
            let _ = socket2::SockRef::from(&**stream).shutdown(std::net::Shutdown::Both);
        }
    }

    /// Sends a close frame and ends the connection (errors ignored: the peer may be gone). On
    /// the plain socket the close frame is written only if the socket has room for it now (a
    /// client that stopped reading does not hold the task).
    pub async fn close(&mut self) {
        match &mut self.io {
            Io::Direct(stream) => {
                let _ = super::direct::write_parts(stream, opcode::CLOSE, &[], 0, 0);
                let _ = socket2::SockRef::from(&**stream).shutdown(std::net::Shutdown::Write);
            }
            Io::Hyper(_) => {
                let _ = self.send(opcode::CLOSE, b"").await;
                if let Io::Hyper(io) = &mut self.io {
                    let _ = io.shutdown().await;
                }
            }
        }
    }
}

/// Whether a header holds `token` among its comma-separated values (case-insensitive).
fn has_token(headers: &HeaderMap, name: header::HeaderName, token: &str) -> bool {
    headers
        .get_all(name)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .any(|t| t.trim().eq_ignore_ascii_case(token))
}

/// Checks a WebSocket opening handshake; `None` when the request is not one.
pub(crate) fn accept_key(req: &Request) -> Option<String> {
    let headers = req.headers();
    let ok = req.method() == Method::GET
        && has_token(headers, header::UPGRADE, "websocket")
        && has_token(headers, header::CONNECTION, "upgrade")
        && headers
            .get(header::SEC_WEBSOCKET_VERSION)
            .is_some_and(|v| v == "13");
    let key = headers.get(header::SEC_WEBSOCKET_KEY).filter(|_| ok)?;
    let mut sha = Sha1::new();
    sha.update(key.as_bytes());
    sha.update(b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11");
    Some(base64::engine::general_purpose::STANDARD.encode(sha.finalize()))
}

/// Answers the handshake (101) and runs `session` on the WebSocket once hyper hands the
/// connection over (on its plain socket when `take` gets it out). `key` is from
/// [`accept_key`].
pub(crate) fn upgrade<F, Fut>(
    mut req: Request,
    key: String,
    max: usize,
    take: TakeSocket,
    session: F,
) -> Response
where
    F: FnOnce(WsConn) -> Fut + Send + 'static,
    Fut: Future<Output = ()> + Send + 'static,
{
    let on_upgrade = hyper::upgrade::on(&mut req);
    // Two stages, so that the task holds the session's future only, not the upgrade's too.
    let task = on_upgrade.then(move |upgraded| {
        let conn = upgraded.ok().map(|upgraded| {
            let (io, buf) = match take(upgraded) {
                Ok((stream, read)) => (Io::Direct(Arc::new(stream)), read.to_vec()),
                Err(upgraded) => (Io::Hyper(Box::new(TokioIo::new(upgraded))), Vec::new()),
            };
            WsConn {
                io,
                buf,
                partial: None,
                max,
            }
        });
        OptionFuture::from(conn.map(session))
    });
    tokio::spawn(task.map(drop));
    let mut response = StatusCode::SWITCHING_PROTOCOLS.into_response();
    let headers = response.headers_mut();
    headers.insert(header::UPGRADE, HeaderValue::from_static("websocket"));
    headers.insert(header::CONNECTION, HeaderValue::from_static("Upgrade"));
    if let Ok(accept) = HeaderValue::from_str(&key) {
        headers.insert(header::SEC_WEBSOCKET_ACCEPT, accept);
    }
    response
}
