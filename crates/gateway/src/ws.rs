//! The WebSocket transport at `GET /v1/ws`: the RFC 6455 handshake, and the reading of client
//! frames, on the plain TCP socket that the HTTP server hands over at the upgrade.
//!
//! Owning the socket is what lets the fan-out write a message frame (a two- to ten-byte head and
//! the shared payload, one `writev`) without waking the connection's task; see
//! `switchboard_core::conn` and [`crate::wire`]. An idle connection holds no buffer at all:
//! bytes are read only when the socket is readable, and kept only while a frame is incomplete.
//!
//! Client frames up to `max_frame_bytes` are handed to the session; larger ones up to four times
//! that are skipped without being buffered and answered `too_large` (the connection goes on);
//! beyond that (counting every fragment) the socket is closed with 1009. Invalid UTF-8 in a text
//! message or a close reason closes it with 1007, any other protocol violation (unmasked frame,
//! reserved bits or opcodes, a bad fragment sequence, an oversized control frame, a malformed
//! close frame) with 1002. A client's close is answered with its own status code.

use crate::http_error::{ApiError, bearer};
use crate::timed::TimedStream;
use crate::wire::{SocketWire, WsFraming, poll_read_into};
use axum::Router;
use axum::extract::{Query, Request, State};
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use bytes::{Buf, Bytes, BytesMut};
use futures_util::FutureExt;
use futures_util::future::OptionFuture;
use hyper_util::rt::TokioIo;
use sha1::{Digest, Sha1};
use std::sync::Arc;
use std::task::{Context, Poll};
use switchboard_core::Node;
use switchboard_core::session::run_session;
use switchboard_core::transport::{Inbound, Transport};
use switchboard_core::{Error, auth::Principal};
use switchboard_proto::ErrorCode;
#[cfg(test)]
use tokio::net::TcpStream;

/// WebSocket settings derived from the node's limits.
#[derive(Debug, Clone, Copy)]
pub struct WsConfig {
    /// Messages above this get `too_large`.
    pub max_frame_bytes: usize,
}

impl WsConfig {
    /// The size past which a message ends the connection (close 1009).
    fn hard_limit(self) -> usize {
        self.max_frame_bytes.saturating_mul(4).max(16 * 1024)
    }
}

/// The `/v1/ws` route.
pub fn ws_route(node: Arc<Node>) -> Router {
    Router::new().route("/v1/ws", get(upgrade)).with_state(node)
}

#[derive(serde::Deserialize)]
struct WsQuery {
    token: Option<String>,
}

/// Checks the handshake, then refuses early (before the upgrade) what would be refused anyway:
/// a full or draining node, a bad token on the request. A good token means `welcome` is sent
/// unasked.
async fn upgrade(State(node): State<Arc<Node>>, mut req: Request) -> Response {
    let key = match handshake_key(req.method(), req.headers()) {
        Ok(key) => key,
        Err(msg) => {
            let mut resp = ApiError(Error::bad_request(msg)).into_response();
            *resp.status_mut() = StatusCode::UPGRADE_REQUIRED;
            resp.headers_mut()
                .insert(header::UPGRADE, HeaderValue::from_static("websocket"));
            resp.headers_mut().insert(
                header::SEC_WEBSOCKET_VERSION,
                HeaderValue::from_static("13"),
            );
            return resp;
        }
    };
    if node.is_draining() {
        return ApiError(Error::new(
            ErrorCode::Overloaded,
            "this node is draining; ask the dispatcher for another",
        ))
        .into_response();
    }
    // The session's slot, held from here (through the token check and the upgrade) until the
    // session ends: taking it is the admission, so no two upgrades can share the last one.
    let Some(permit) = node.admission.try_admit() else {
        return ApiError(Error::new(
            ErrorCode::Overloaded,
            "this node is at its connection limit",
        ))
        .into_response();
    };
    let query = Query::<WsQuery>::try_from_uri(req.uri())
        .map(|q| q.0.token)
        .unwrap_or(None);
    let token = bearer(req.headers()).map(str::to_owned).or(query);
    let principal: Option<Principal> = match token {
        Some(t) => match node.authenticate(&t).await {
            Ok(p) => Some(p),
            Err(e) => return ApiError(e).into_response(),
        },
        None => None,
    };
    let cfg = WsConfig {
        max_frame_bytes: node.limits.max_frame_bytes,
    };
    let on_upgrade = hyper::upgrade::on(&mut req);
    let spawner = node.clone();
    // Two stages rather than one async block: what the first needs (the token's principal
    // among it) is gone once the session runs, and the task holds no more than the session.
    let connection = on_upgrade.then(move |upgraded| {
        let session = match upgraded {
            Err(e) => {
                tracing::debug!(error = %e, "WebSocket upgrade failed");
                None
            }
            // The server (crate::serve) serves TCP streams with a write timer; the session has
            // its own (slow consumers), so it takes the plain stream.
            Ok(upgraded) => match upgraded.downcast::<TokioIo<TimedStream>>() {
                Err(_) => {
                    tracing::error!("WebSocket upgrade on a connection that is not a TCP stream");
                    None
                }
                Ok(parts) => {
                    let wire = Arc::new(SocketWire::new(
                        parts.io.into_inner().into_inner(),
                        WsFraming,
                    ));
                    let reader = WsReader::new(wire.clone(), parts.read_buf, cfg);
                    Some(run_session(node, reader, wire, principal.map(Into::into)))
                }
            },
        };
        OptionFuture::from(session)
    });
    spawner.admission.spawn(permit, connection.map(drop));
    let mut resp = StatusCode::SWITCHING_PROTOCOLS.into_response();
    let h = resp.headers_mut();
    h.insert(header::CONNECTION, HeaderValue::from_static("upgrade"));
    h.insert(header::UPGRADE, HeaderValue::from_static("websocket"));
    h.insert(header::SEC_WEBSOCKET_ACCEPT, accept_key(&key));
    resp
}

/// The client's `Sec-WebSocket-Key` if the request is a WebSocket handshake (RFC 6455 §4.2.1).
fn handshake_key(method: &Method, headers: &HeaderMap) -> Result<Vec<u8>, &'static str> {
    let has = |name: header::HeaderName, token: &str| {
        headers.get_all(name).iter().any(|v| {
            v.as_bytes()
                .split(|b| *b == b',')
                .any(|t| t.trim_ascii().eq_ignore_ascii_case(token.as_bytes()))
        })
    };
    if method != Method::GET {
        return Err("a WebSocket handshake is a GET");
    }
    if !has(header::CONNECTION, "upgrade") || !has(header::UPGRADE, "websocket") {
        return Err("this is the WebSocket endpoint: send an upgrade request");
    }
    if !has(header::SEC_WEBSOCKET_VERSION, "13") {
        return Err("only WebSocket version 13 is supported");
    }
    match headers.get(header::SEC_WEBSOCKET_KEY) {
        Some(k) if !k.is_empty() => Ok(k.as_bytes().to_vec()),
        _ => Err("Sec-WebSocket-Key is missing"),
    }
}

/// `Sec-WebSocket-Accept` for a key: base64(SHA-1(key + the RFC's GUID)).
fn accept_key(key: &[u8]) -> HeaderValue {
    use base64::Engine as _;
    let mut sha1 = Sha1::new();
    sha1.update(key);
    sha1.update(b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11");
    let b64 = base64::engine::general_purpose::STANDARD.encode(sha1.finalize());
    HeaderValue::from_str(&b64).expect("base64 is a valid header value")
}

/// The reading half of a WebSocket connection.
pub struct WsReader {
    socket: Arc<SocketWire<WsFraming>>,
    config: WsConfig,
    /// Bytes read but not yet parsed; empty (no allocation) between frames.
    buf: BytesMut,
    /// A fragmented message being put together: its opcode and the data so far.
    message: Option<Box<(u8, BytesMut)>>,
    /// Payload bytes of an oversized frame still to be thrown away.
    skipping: usize,
    /// The rest of an oversized fragmented message is thrown away too.
    skipping_message: bool,
    /// Bytes of the message being thrown away so far (past the hard limit it closes with 1009).
    skipped: u64,
    /// The status code of the client's close frame, echoed in ours.
    peer_close: Option<u16>,
    /// Set once the connection cannot go on, with the close code to send.
    broken: Option<u16>,
    /// The client closed (or the socket failed).
    ended: bool,
}

/// What parsing the buffer gave.
enum Parsed {
    /// An event for the session.
    Event(Inbound),
    /// More bytes are needed.
    More,
    /// Something was consumed (a skipped or partial frame): parse again.
    Again,
}

impl WsReader {
    /// Reads from `stream`, starting with `pending` (bytes read past the upgrade request).
    pub fn new(socket: Arc<SocketWire<WsFraming>>, pending: Bytes, config: WsConfig) -> WsReader {
        WsReader {
            socket,
            config,
            buf: BytesMut::from(&pending[..]),
            message: None,
            skipping: 0,
            skipping_message: false,
            skipped: 0,
            peer_close: None,
            broken: None,
            ended: false,
        }
    }

    fn fail(&mut self, code: u16, why: &str) -> Parsed {
        tracing::debug!(code, why, "WebSocket protocol error");
        self.broken = Some(code);
        Parsed::More
    }

    /// Takes the next frame (or verdict) out of the buffer, if it is all there.
    fn parse(&mut self) -> Parsed {
        if self.skipping > 0 {
            let n = self.skipping.min(self.buf.len());
            self.buf.advance(n);
            self.skipping -= n;
            if self.skipping > 0 {
                return Parsed::More;
            }
        }
        if self.buf.len() < 2 {
            return Parsed::More;
        }
        let (b0, b1) = (self.buf[0], self.buf[1]);
        let (fin, rsv, opcode) = (b0 & 0x80 != 0, b0 & 0x70, b0 & 0x0F);
        if rsv != 0 {
            return self.fail(1002, "reserved bits set (no extension was agreed)");
        }
        if b1 & 0x80 == 0 {
            return self.fail(1002, "client frames must be masked");
        }
        let (len, head) = match b1 & 0x7F {
            126 => {
                if self.buf.len() < 4 {
                    return Parsed::More;
                }
                (u16::from_be_bytes([self.buf[2], self.buf[3]]) as u64, 4)
            }
            127 => {
                if self.buf.len() < 10 {
                    return Parsed::More;
                }
                let mut b = [0u8; 8];
                b.copy_from_slice(&self.buf[2..10]);
                (u64::from_be_bytes(b), 10)
            }
            n => (n as u64, 2),
        };
        let head = head + 4; // the masking key
        if self.buf.len() < head {
            return Parsed::More;
        }
        let control = opcode & 0x8 != 0;
        match opcode {
            0x8..=0xA if !fin || len > 125 => {
                return self.fail(1002, "control frames are short and unfragmented");
            }
            0x1 | 0x2 if self.message.is_some() || self.skipping_message => {
                return self.fail(1002, "a new message inside a fragmented one");
            }
            0x0 if self.message.is_none() && !self.skipping_message => {
                return self.fail(1002, "a continuation frame with nothing to continue");
            }
            0x3..=0x7 | 0xB..=0xF => return self.fail(1002, "reserved opcode"),
            _ => {}
        }
        if !control {
            if opcode == 0 && self.skipping_message {
                // The rest of an oversized message, still counted against the hard limit.
                self.skipped = self.skipped.saturating_add(len);
                if self.skipped > self.config.hard_limit() as u64 {
                    return self.fail(1009, "a fragmented message past the hard limit");
                }
                self.buf.advance(head);
                self.skipping = len as usize;
                self.skipping_message = !fin;
                return Parsed::Again;
            }
            let so_far = self.message.as_ref().map_or(0, |m| m.1.len() as u64);
            let total = so_far.saturating_add(len);
            if total > self.config.hard_limit() as u64 {
                self.broken = Some(1009);
                return Parsed::Event(Inbound::TooLarge(total as usize));
            }
            if total > self.config.max_frame_bytes as u64 {
                self.skipped = total;
                self.message = None;
                self.buf.advance(head);
                self.skipping = len as usize;
                self.skipping_message = !fin;
                return Parsed::Event(Inbound::TooLarge(total as usize));
            }
        }
        let len = len as usize;
        if self.buf.len() < head + len {
            self.buf.reserve(head + len - self.buf.len());
            return Parsed::More;
        }
        let mask = [
            self.buf[head - 4],
            self.buf[head - 3],
            self.buf[head - 2],
            self.buf[head - 1],
        ];
        self.buf.advance(head);
        let mut payload = self.buf.split_to(len);
        for (i, b) in payload.iter_mut().enumerate() {
            *b ^= mask[i & 3];
        }
        match opcode {
            0x8 => {
                self.ended = true;
                match payload.len() {
                    0 => {}
                    1 => return self.fail(1002, "a close frame with a one-byte payload"),
                    _ => {
                        let code = u16::from_be_bytes([payload[0], payload[1]]);
                        if !matches!(code, 1000..=1003 | 1007..=1014 | 3000..=4999) {
                            return self.fail(1002, "a close frame with an invalid code");
                        }
                        if std::str::from_utf8(&payload[2..]).is_err() {
                            return self.fail(1007, "a close reason that is not UTF-8");
                        }
                        self.peer_close = Some(code);
                    }
                }
                Parsed::More
            }
            // Copied: the payload would otherwise keep the whole read chunk alive.
            0x9 => Parsed::Event(Inbound::Ping(Bytes::copy_from_slice(&payload))),
            0xA => Parsed::Event(Inbound::Alive),
            _ => {
                let (opcode, data) = match self.message.take() {
                    Some(m) => {
                        let (op, mut data) = *m;
                        data.extend_from_slice(&payload);
                        (op, data)
                    }
                    None => (opcode, payload),
                };
                if !fin {
                    self.message = Some(Box::new((opcode, data)));
                    return Parsed::Again;
                }
                if opcode == 0x1 && std::str::from_utf8(&data).is_err() {
                    return self.fail(1007, "a text message that is not UTF-8");
                }
                // Binary messages carry the same JSON (some client libraries only send binary).
                Parsed::Event(Inbound::Frame(data.freeze()))
            }
        }
    }
}

impl WsReader {
    fn poll_recv(&mut self, cx: &mut Context<'_>) -> Poll<Option<Inbound>> {
        loop {
            if self.broken.is_some() || self.ended {
                return Poll::Ready(None);
            }
            match self.parse() {
                Parsed::Event(e) => return Poll::Ready(Some(e)),
                Parsed::Again => continue,
                Parsed::More if self.broken.is_some() || self.ended => return Poll::Ready(None),
                Parsed::More => {}
            }
            if !std::task::ready!(poll_read_into(self.socket.stream(), &mut self.buf, cx)) {
                self.ended = true;
                return Poll::Ready(None);
            }
        }
    }
}

impl Transport for WsReader {
    async fn recv(&mut self) -> Option<Inbound> {
        std::future::poll_fn(|cx| self.poll_recv(cx)).await
    }

    fn close_code(&self) -> u16 {
        self.broken.or(self.peer_close).unwrap_or(1000)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A client frame: FIN and opcode, masked unless `mask` is false.
    fn frame(fin: bool, opcode: u8, payload: &[u8], mask: bool) -> Vec<u8> {
        let mut f = vec![if fin { 0x80 } else { 0 } | opcode];
        let m = if mask { 0x80 } else { 0 };
        match payload.len() {
            n if n < 126 => f.push(m | n as u8),
            n if n <= 65535 => {
                f.push(m | 126);
                f.extend_from_slice(&(n as u16).to_be_bytes());
            }
            n => {
                f.push(m | 127);
                f.extend_from_slice(&(n as u64).to_be_bytes());
            }
        }
        let key = [0x12, 0x34, 0x56, 0x78];
        if mask {
            f.extend_from_slice(&key);
            f.extend(payload.iter().enumerate().map(|(i, b)| b ^ key[i & 3]));
        } else {
            f.extend_from_slice(payload);
        }
        f
    }

    /// A reader whose bytes all arrived with the upgrade request (no socket reads needed).
    async fn reader(bytes: Vec<u8>, max_frame_bytes: usize) -> (WsReader, TcpStream) {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let client = TcpStream::connect(listener.local_addr().unwrap())
            .await
            .unwrap();
        let (server, _) = listener.accept().await.unwrap();
        let cfg = WsConfig { max_frame_bytes };
        (
            WsReader::new(
                Arc::new(SocketWire::new(server, WsFraming)),
                Bytes::from(bytes),
                cfg,
            ),
            client,
        )
    }

    fn text(e: Option<Inbound>) -> String {
        match e {
            Some(Inbound::Frame(b)) => String::from_utf8(b.to_vec()).unwrap(),
            other => panic!("expected a frame, got {other:?}"),
        }
    }

    #[tokio::test]
    async fn frames_fragments_and_control_frames() {
        let mut bytes = frame(true, 0x1, b"{\"a\":1}", true);
        bytes.extend(frame(false, 0x1, b"{\"b\"", true));
        bytes.extend(frame(true, 0x9, b"hi", true)); // a ping between fragments is fine
        bytes.extend(frame(true, 0x0, b":2}", true));
        bytes.extend(frame(true, 0x2, b"[]", true)); // binary carries JSON too
        bytes.extend(frame(true, 0xA, b"", true));
        bytes.extend(frame(true, 0x8, &1001u16.to_be_bytes(), true));
        let (mut r, _c) = reader(bytes, 1024).await;
        assert_eq!(text(r.recv().await), r#"{"a":1}"#);
        assert!(matches!(r.recv().await, Some(Inbound::Ping(p)) if &p[..] == b"hi"));
        assert_eq!(text(r.recv().await), r#"{"b":2}"#);
        assert_eq!(text(r.recv().await), "[]");
        assert!(matches!(r.recv().await, Some(Inbound::Alive)));
        assert!(r.recv().await.is_none());
        assert_eq!(r.close_code(), 1001, "the client's close code is echoed");
    }

    #[tokio::test]
    async fn oversized_messages_are_skipped_then_the_hard_limit_closes() {
        // max 1024, hard limit 16 KiB.
        let mut bytes = frame(true, 0x1, &[b'x'; 2000], true);
        bytes.extend(frame(true, 0x1, b"{}", true));
        // A fragmented message over the limit, whose continuations then pass the hard limit.
        bytes.extend(frame(false, 0x1, &[b'y'; 1500], true));
        for _ in 0..20 {
            bytes.extend(frame(false, 0x0, &[b'y'; 1000], true));
        }
        let (mut r, _c) = reader(bytes, 1024).await;
        assert!(matches!(r.recv().await, Some(Inbound::TooLarge(2000))));
        assert_eq!(text(r.recv().await), "{}", "the connection goes on");
        assert!(matches!(r.recv().await, Some(Inbound::TooLarge(1500))));
        assert!(r.recv().await.is_none());
        assert_eq!(r.close_code(), 1009);
    }

    #[tokio::test]
    async fn protocol_violations_close_with_their_codes() {
        let cases: Vec<(Vec<u8>, u16)> = vec![
            (frame(true, 0x1, b"{}", false), 1002),    // unmasked
            (frame(true, 0x3, b"", true), 1002),       // reserved opcode
            (frame(true, 0x0, b"x", true), 1002),      // continuation of nothing
            (frame(false, 0x9, b"", true), 1002),      // fragmented control frame
            (frame(true, 0x9, &[0; 126], true), 1002), // control frame over 125 bytes
            (frame(true, 0x8, &[3], true), 1002),      // one-byte close payload
            (frame(true, 0x8, &1005u16.to_be_bytes(), true), 1002), // reserved close code
            (frame(true, 0x1, &[0xff, 0xfe], true), 1007), // not UTF-8
            (
                {
                    let mut f = frame(true, 0x1, b"{}", true);
                    f[0] |= 0x40; // RSV1 without an extension
                    f
                },
                1002,
            ),
            (
                {
                    let mut f = frame(false, 0x1, b"{", true);
                    f.extend(frame(true, 0x1, b"{}", true)); // a new message inside one
                    f
                },
                1002,
            ),
        ];
        for (bytes, code) in cases {
            let (mut r, _c) = reader(bytes.clone(), 1024).await;
            assert!(r.recv().await.is_none(), "{bytes:?}");
            assert_eq!(r.close_code(), code, "{bytes:?}");
        }
    }

    #[test]
    fn the_accept_key_of_rfc_6455() {
        assert_eq!(
            accept_key(b"dGhlIHNhbXBsZSBub25jZQ=="),
            "s3pPLMBiTxaQ9kYGzzhZRbK+xOo="
        );
    }
}

#[cfg(test)]
mod size_tests {
    use super::*;

    /// What every idle WebSocket connection holds: its session's future (plus tokio's task
    /// header). It was 1,304 bytes before the reader polled without a future of its own and
    /// the session stopped keeping its arguments twice.
    #[test]
    #[allow(unreachable_code)]
    fn the_connection_future_stays_small() {
        fn returned_size<F: FnOnce() -> Fut, Fut>(_: F) -> usize {
            std::mem::size_of::<Fut>()
        }
        let session = returned_size(|| {
            run_session(
                unreachable!(),
                unreachable!() as WsReader,
                unreachable!(),
                None,
            )
        });
        println!("run_session::<WsReader>: {session} bytes");
        assert!(
            session <= 900,
            "the WebSocket session future grew to {session} bytes"
        );
    }
}
