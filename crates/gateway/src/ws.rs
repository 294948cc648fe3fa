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

use crate::decode::{WsDecoder, WsItem};
use crate::http_error::{ApiError, bearer};
use crate::timed::TimedStream;
use crate::tls_wire::TlsWire;
use crate::wire::{ReadSource, SocketWire, WsFraming};
use axum::Router;
use axum::extract::{Query, Request, State};
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use bytes::{Bytes, BytesMut};
use futures_util::FutureExt;
use futures_util::future::{Either, OptionFuture};
use hyper::upgrade::OnUpgrade;
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
use tokio_rustls::server::TlsStream;

/// WebSocket settings derived from the node's limits.
#[derive(Debug, Clone, Copy)]
pub struct WsConfig {
    /// Messages above this get `too_large`.
    pub max_frame_bytes: usize,
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
    let task = connection(on_upgrade, node.clone(), principal, cfg);
    node.admission.spawn(permit, task);
    switching_protocols(&key)
}

/// The 101 answer to a WebSocket handshake whose `Sec-WebSocket-Key` is `key`.
pub(crate) fn switching_protocols(key: &[u8]) -> Response {
    let mut resp = StatusCode::SWITCHING_PROTOCOLS.into_response();
    let h = resp.headers_mut();
    h.insert(header::CONNECTION, HeaderValue::from_static("upgrade"));
    h.insert(header::UPGRADE, HeaderValue::from_static("websocket"));
    h.insert(header::SEC_WEBSOCKET_ACCEPT, accept_key(key));
    resp
}

/// The upgraded connection's task: the session over the plain or TLS stream (what every idle
/// WebSocket connection holds for its life, with its permit).
fn connection(
    on_upgrade: OnUpgrade,
    node: Arc<Node>,
    principal: Option<Principal>,
    cfg: WsConfig,
) -> impl Future<Output = ()> + Send + 'static {
    // Two stages rather than one async block: what the first needs (the token's principal
    // among it) is gone once the session runs, and the task holds no more than the session.
    on_upgrade
        .then(move |upgraded| {
            let session = match upgraded {
                Err(e) => {
                    tracing::debug!(error = %e, "WebSocket upgrade failed");
                    None
                }
                // The server (crate::serve) serves TCP streams with a write timer; the session has
                // its own (slow consumers), so it takes the plain stream (and, over TLS, the TLS
                // state beside it: crate::tls_wire).
                Ok(upgraded) => match upgraded.downcast::<TokioIo<TimedStream>>() {
                    Ok(parts) => {
                        let wire = Arc::new(SocketWire::new(
                            parts.io.into_inner().into_inner(),
                            WsFraming,
                        ));
                        let reader = WsReader::new(wire.clone(), parts.read_buf, cfg);
                        let principal = principal.map(Into::into);
                        Some(Either::Left(run_session(node, reader, wire, principal)))
                    }
                    Err(upgraded) => match upgraded.downcast::<TokioIo<TlsStream<TimedStream>>>() {
                        Ok(parts) => {
                            let (timed, tls) = parts.io.into_inner().into_inner();
                            let wire = Arc::new(TlsWire::new(timed.into_inner(), tls, WsFraming));
                            let reader = WsReader::new(wire.clone(), parts.read_buf, cfg);
                            let principal = principal.map(Into::into);
                            Some(Either::Right(run_session(node, reader, wire, principal)))
                        }
                        Err(_) => {
                            tracing::error!("WebSocket upgrade on a connection of an unknown type");
                            None
                        }
                    },
                },
            };
            OptionFuture::from(session)
        })
        .map(drop)
}

/// The client's `Sec-WebSocket-Key` if the request is a WebSocket handshake (RFC 6455 §4.2.1).
pub(crate) fn handshake_key(method: &Method, headers: &HeaderMap) -> Result<Vec<u8>, &'static str> {
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

/// The reading half of a WebSocket connection: reads into a buffer and hands it to the pure
/// [`WsDecoder`].
pub struct WsReader<S = SocketWire<WsFraming>> {
    socket: Arc<S>,
    /// Bytes read but not yet decoded; empty (no allocation) between frames.
    buf: BytesMut,
    decoder: WsDecoder,
    /// The status code of the client's close frame, echoed in ours.
    peer_close: Option<u16>,
    /// Set once the connection cannot go on, with the close code to send.
    broken: Option<u16>,
    /// The client closed (or the socket failed).
    ended: bool,
}

impl<S: ReadSource> WsReader<S> {
    /// Reads from `socket`, starting with `pending` (bytes read past the upgrade request).
    pub fn new(socket: Arc<S>, pending: Bytes, config: WsConfig) -> WsReader<S> {
        WsReader {
            socket,
            buf: BytesMut::from(&pending[..]),
            decoder: WsDecoder::new(config.max_frame_bytes),
            peer_close: None,
            broken: None,
            ended: false,
        }
    }

    /// The next event in the buffer, if there is one; marks the end on a close or violation.
    fn next_event(&mut self) -> Option<Inbound> {
        match self.decoder.decode(&mut self.buf) {
            Ok(None) => None,
            Ok(Some(WsItem::Message(m) | WsItem::Binary(m))) => Some(Inbound::Frame(m)),
            Ok(Some(WsItem::TooLarge(n))) => Some(Inbound::TooLarge(n)),
            Ok(Some(WsItem::Ping(p))) => Some(Inbound::Ping(p)),
            Ok(Some(WsItem::Pong)) => Some(Inbound::Alive),
            Ok(Some(WsItem::Close(code))) => {
                self.peer_close = code;
                self.ended = true;
                None
            }
            Err(e) => {
                tracing::debug!(code = e.code, why = e.why, "WebSocket protocol error");
                self.broken = Some(e.code);
                None
            }
        }
    }

    fn poll_recv(&mut self, cx: &mut Context<'_>) -> Poll<Option<Inbound>> {
        loop {
            if self.broken.is_some() || self.ended {
                return Poll::Ready(None);
            }
            if let Some(event) = self.next_event() {
                return Poll::Ready(Some(event));
            }
            if self.broken.is_some() || self.ended {
                return Poll::Ready(None);
            }
            if !std::task::ready!(self.socket.poll_read_into(&mut self.buf, cx)) {
                self.ended = true;
                return Poll::Ready(None);
            }
        }
    }
}

impl<S: ReadSource> Transport for WsReader<S> {
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
        crate::decode::tests::ws_frame(fin, opcode, payload, mask, false)
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

    /// The decoder's verdicts become the reader's close codes (every case is in
    /// `crate::decode::tests`, split at every byte).
    #[tokio::test]
    async fn violations_become_close_codes() {
        let mut too_large = frame(true, 0x1, &[b'x'; 2000], true);
        too_large.extend(frame(false, 0x1, &[b'y'; 20_000], true));
        let cases: Vec<(Vec<u8>, Vec<usize>, u16)> = vec![
            (frame(true, 0x1, b"{}", false), vec![], 1002),
            (frame(true, 0x1, &[0xff, 0xfe], true), vec![], 1007),
            (too_large, vec![2000, 20_000], 1009),
        ];
        for (bytes, sizes, code) in cases {
            let (mut r, _c) = reader(bytes.clone(), 1024).await;
            for size in sizes {
                assert!(matches!(r.recv().await, Some(Inbound::TooLarge(n)) if n == size));
            }
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
    use crate::returned_size;

    /// What every idle WebSocket connection holds: its task, the connection's future (the
    /// session's, after the upgrade) plus the admission permit (8) plus tokio's 104 bytes, in
    /// steps of 128. The session was 1,304 bytes before the reader polled without a future of
    /// its own and the session stopped keeping its arguments twice; 792 made the task 1,024
    /// bytes, 752 made it 896, 656 made it 768; a connection future of 528 makes it 640 (the
    /// core session's `serve` and its instants made smaller; massif, release).
    #[test]
    #[allow(unreachable_code)]
    fn the_connection_future_stays_small() {
        let session = returned_size(|| {
            run_session(
                unreachable!(),
                unreachable!() as WsReader,
                unreachable!(),
                None,
            )
        });
        let task = returned_size(|| {
            connection(
                unreachable!(),
                unreachable!(),
                unreachable!(),
                unreachable!(),
            )
        });
        println!("run_session::<WsReader>: {session} bytes; the connection's task: {task}");
        assert!(
            session <= 520 && task <= 528,
            "the WebSocket session future grew to {session} bytes, its task's to {task}"
        );
    }
}
