//! Socket.IO clients that open their WebSocket directly (`?EIO=4&transport=websocket` with no
//! `sid`: socket.io-client with `transports: ["websocket"]`) run as one core session on the
//! plain socket, as a native WebSocket does: Engine.IO's and Socket.IO's packets are read by
//! [`SioWsReader`] (the session's transport) and written by [`WsOutlet`] under the same
//! [`SioWire`] as every Socket.IO socket. One task and one socket per connection; the protocol
//! library's session, its task and its queue are not involved.
//!
//! The connection goes: the WebSocket handshake (admission first: a full or draining node
//! answers 503 and the client retries with its backoff), the Engine.IO open packet, then the
//! client's CONNECT (within the node's auth timeout) decided as on every transport
//! ([`super::connect`]), then the session. Engine.IO's heartbeat is the session's: its ping is
//! sent every `pingInterval`, and a client that answered none of two is dropped (the native
//! protocol's rule, so within two intervals rather than one interval plus `pingTimeout`).
//!
//! Sessions that start on polling, upgrade, or come over TLS stay with the library
//! ([`super::serve`]); both kinds speak the same protocol to the client.

use super::connect::{self, Accepted};
use super::record::Records;
use super::translate::{self, NO_ACK};
use super::wire::SioWire;
use super::ws_outlet::{Closing, WsOutlet};
use crate::decode::{WsDecoder, WsItem};
use crate::http_error::ApiError;
use crate::serve::Encrypted;
use crate::timed::TimedStream;
use crate::ws::{handshake_key, switching_protocols};
use axum::extract::Request;
use axum::http::{Method, StatusCode};
use axum::response::{IntoResponse, Response};
use bytes::{Bytes, BytesMut};
use futures_util::FutureExt;
use futures_util::future::OptionFuture;
use hyper::upgrade::OnUpgrade;
use hyper_util::rt::TokioIo;
use serde_json::Value;
use std::sync::Arc;
use std::task::{Context, Poll, ready};
use std::time::Duration;
use switchboard_core::session::{PreAuth, run_session};
use switchboard_core::transport::{Inbound, Refused, Transport};
use switchboard_core::{Error, Node};
use switchboard_proto::ErrorCode;
use switchboard_socketio::engine::random_sid;
use switchboard_socketio::sio::binary::{Partial, check_placeholders};
use switchboard_socketio::sio::packet::{
    self, Limits, Packet, PacketType, decode, split_ack, split_event,
};
use tokio::net::TcpStream;

/// Refused CONNECTs one connection may send before it is closed.
const MAX_REFUSED_CONNECTS: u32 = 8;

/// A socket's wire on its own WebSocket.
pub type WsWire = SioWire<WsOutlet>;

/// What every direct connection shares: the node, the records and Engine.IO's settings.
pub struct WsSessions {
    /// The node.
    pub node: Arc<Node>,
    /// The node's recovery records.
    pub records: Arc<Records>,
    /// Engine.IO `pingInterval`: the session's heartbeat on these sockets.
    pub ping_interval: Duration,
    /// Engine.IO `pingTimeout`, as announced to the client.
    pub ping_timeout: Duration,
    /// `maxPayload`: a longer message closes the connection, as Engine.IO does.
    pub max_payload: usize,
    /// Sockets waiting for a drain's delayed close.
    pub closing: Arc<Closing>,
    /// How long the client has to send an accepted CONNECT after the open packet (the node's
    /// `--auth-timeout-ms`, as for a native connection's `auth`: the connection holds a slot).
    pub connect_timeout: Duration,
}

/// Whether `req` opens a new Engine.IO session on a plain WebSocket (this module's to serve).
pub fn takes(req: &Request) -> bool {
    if req.method() != Method::GET || req.extensions().get::<Encrypted>().is_some() {
        return false;
    }
    let (mut eio, mut websocket, mut sid) = (false, false, false);
    for pair in req.uri().query().unwrap_or("").split('&') {
        let (key, value) = pair.split_once('=').unwrap_or((pair, ""));
        match key {
            "EIO" => eio = value == "4",
            "transport" => websocket = value == "websocket",
            "sid" => sid = true,
            _ => {}
        }
    }
    eio && websocket && !sid && handshake_key(req.method(), req.headers()).is_ok()
}

/// Answers the WebSocket handshake of a request [`takes`] accepted and runs its connection.
pub fn open(sessions: Arc<WsSessions>, mut req: Request) -> Response {
    let Ok(key) = handshake_key(req.method(), req.headers()) else {
        return StatusCode::BAD_REQUEST.into_response();
    };
    let node = sessions.node.clone();
    // The connection's slot, held from here (through the CONNECT) until the session ends.
    let permit = (!node.is_draining())
        .then(|| node.admission.try_admit())
        .flatten();
    let Some(permit) = permit else {
        return ApiError(Error::new(
            ErrorCode::Overloaded,
            "this node is full or draining",
        ))
        .into_response();
    };
    let on_upgrade = hyper::upgrade::on(&mut req);
    node.admission
        .spawn(permit, connection(on_upgrade, sessions));
    switching_protocols(&key)
}

/// The connection's task: the CONNECT (boxed: its state is gone once the session runs), then
/// the session, which is all an idle connection's task holds.
fn connection(
    on_upgrade: OnUpgrade,
    sessions: Arc<WsSessions>,
) -> impl Future<Output = ()> + Send + 'static {
    let node = sessions.node.clone();
    on_upgrade
        .then(move |upgraded| {
            let parts = upgraded
                .ok()
                .and_then(|u| u.downcast::<TokioIo<TimedStream>>().ok());
            OptionFuture::from(parts.map(|parts| {
                let stream = parts.io.into_inner().into_inner();
                Box::pin(handshake(sessions, stream, parts.read_buf))
            }))
        })
        .then(move |started| {
            OptionFuture::from(
                started
                    .flatten()
                    .map(|(reader, wire, pre)| run_session(node, reader, wire, Some(pre))),
            )
        })
        .map(drop)
}

/// The Engine.IO open packet, then CONNECTs until one is accepted (or the deadline passes, or
/// the client leaves): the session's reader, its wire and who it is.
async fn handshake(
    sessions: Arc<WsSessions>,
    stream: TcpStream,
    read: Bytes,
) -> Option<(SioWsReader, Arc<WsWire>, PreAuth)> {
    let outlet = WsOutlet::new(stream, sessions.max_payload, sessions.closing.clone());
    let mut reading = Reading::new(read, sessions.max_payload);
    let open = format!(
        r#"0{{"sid":"{}","upgrades":[],"pingInterval":{},"pingTimeout":{},"maxPayload":{}}}"#,
        random_sid(),
        sessions.ping_interval.as_millis(),
        sessions.ping_timeout.as_millis(),
        sessions.max_payload
    );
    outlet.text(open.as_bytes()).ok()?;
    let deadline = tokio::time::Instant::now() + sessions.connect_timeout;
    let mut refused = 0;
    loop {
        let next = std::future::poll_fn(|cx| reading.poll_step(&outlet, cx));
        let packet = match tokio::time::timeout_at(deadline, next).await {
            Ok(Some(Step::Packet(packet, _))) => packet,
            Ok(Some(Step::Alive | Step::Ping(_))) => continue,
            Ok(None) | Err(_) => {
                outlet.close();
                return None;
            }
        };
        match packet.kind {
            PacketType::Connect if packet.nsp == "/" => {}
            PacketType::Connect => {
                invalid_namespace(&outlet, &packet.nsp);
                continue;
            }
            PacketType::ConnectError => {
                outlet.close();
                return None;
            }
            // Anything else before a CONNECT is for no socket: dropped, as socket.io does.
            _ => continue,
        }
        let node = &sessions.node;
        if node.is_draining() {
            // As the library's sessions do: no CONNECT_ERROR (stock clients would not retry),
            // the connection ends and the client reconnects elsewhere.
            outlet.close();
            return None;
        }
        let auth = packet
            .data
            .as_deref()
            .and_then(|d| serde_json::from_str::<Value>(d.get()).ok())
            .unwrap_or(Value::Null);
        let Accepted {
            pid,
            recovered,
            owner,
            pre,
            slots,
        } = match connect::accept(node, &sessions.records, &auth).await {
            Ok(accepted) => accepted,
            Err(e) => {
                let data = connect::connect_error(&e).to_string();
                let _ = outlet.text(format!("44{data}").as_bytes());
                refused += 1;
                if refused >= MAX_REFUSED_CONNECTS {
                    // Guessing tokens: the connection ends (each try costs a check).
                    outlet.close();
                    return None;
                }
                continue;
            }
        };
        tracing::debug!(pid, recovered, "Socket.IO connect on its own WebSocket");
        let reply = serde_json::json!({"sid": random_sid(), "pid": pid});
        // Before the session starts: the reply is the first thing the client gets.
        let _ = outlet.text(format!("40{reply}").as_bytes());
        let wire = Arc::new(SioWire::new(
            outlet,
            slots,
            sessions.records.clone(),
            pid,
            owner,
            pre.principal.user_id.clone(),
            1,
        ));
        let reader = SioWsReader {
            wire: wire.clone(),
            reading,
            sessions,
        };
        return Some((reader, wire, pre));
    }
}

/// Answers a CONNECT to a namespace other than `/` (there is none).
fn invalid_namespace(outlet: &WsOutlet, nsp: &str) {
    let text = packet::encode(
        PacketType::ConnectError,
        nsp,
        None,
        Some(r#"{"message":"Invalid namespace"}"#),
        0,
    );
    let _ = outlet.text(format!("4{text}").as_bytes());
}

/// What the connection read: a Socket.IO packet (with whether it carried binary attachments),
/// a WebSocket ping (for the session to answer), or proof of life.
enum Step {
    Packet(Packet, bool),
    Ping(Bytes),
    Alive,
}

/// The reading state of a direct connection: bytes, WebSocket frames, Engine.IO packets,
/// Socket.IO packets (binary ones with their attachments).
struct Reading {
    /// Bytes read but not yet decoded; empty (no allocation) between frames.
    buf: BytesMut,
    decoder: WsDecoder,
    /// A binary packet waiting for its attachments (boxed: rare, and every idle connection
    /// would keep its room).
    partial: Option<Box<Partial>>,
    /// `maxPayload`, for a binary packet's attachments together.
    max_payload: u32,
    /// The client left, or broke the protocol: nothing more is read.
    ended: bool,
}

impl Reading {
    fn new(read: Bytes, max_payload: usize) -> Reading {
        Reading {
            buf: BytesMut::from(&read[..]),
            decoder: WsDecoder::new(max_payload),
            partial: None,
            max_payload: u32::try_from(max_payload).unwrap_or(u32::MAX),
            ended: false,
        }
    }

    /// The next packet or proof of life; `None` once the connection is over.
    fn poll_step(&mut self, outlet: &WsOutlet, cx: &mut Context<'_>) -> Poll<Option<Step>> {
        loop {
            if self.ended {
                return Poll::Ready(None);
            }
            match self.decoder.decode(&mut self.buf) {
                Err(e) => {
                    tracing::debug!(code = e.code, why = e.why, "Socket.IO WebSocket error");
                    self.ended = true;
                }
                Ok(Some(item)) => {
                    if let Some(step) = self.on_item(item) {
                        return Poll::Ready(Some(step));
                    }
                }
                Ok(None) => {
                    if !ready!(crate::wire::poll_read_stream(
                        outlet.stream(),
                        &mut self.buf,
                        cx
                    )) {
                        self.ended = true;
                    }
                }
            }
        }
    }

    /// Ends the reading: the client broke the protocol (Engine.IO closes such a session).
    fn fail(&mut self, why: &'static str) -> Option<Step> {
        tracing::debug!(why, "Socket.IO protocol error");
        self.ended = true;
        None
    }

    fn on_item(&mut self, item: WsItem) -> Option<Step> {
        match item {
            WsItem::Message(text) => self.on_text(&text),
            WsItem::Binary(data) => {
                let max = self.max_payload as usize;
                let Some(partial) = self.partial.as_mut() else {
                    return self.fail("a binary message with no packet waiting for it");
                };
                if partial.held_bytes() + data.len() > max {
                    return self.fail("attachments over maxPayload");
                }
                if !partial.push(data) {
                    return None;
                }
                match self.partial.take().map(|p| p.finish()) {
                    Some(Ok((packet, _))) => Some(Step::Packet(packet, true)),
                    _ => self.fail("bad binary placeholders"),
                }
            }
            WsItem::TooLarge(_) => self.fail("a message over maxPayload"),
            WsItem::Ping(payload) => Some(Step::Ping(payload)),
            WsItem::Pong => Some(Step::Alive),
            WsItem::Close(_) => {
                self.ended = true;
                None
            }
        }
    }

    /// One Engine.IO packet (a text message).
    fn on_text(&mut self, text: &[u8]) -> Option<Step> {
        if self.partial.is_some() {
            return self.fail("a text message while attachments were expected");
        }
        let Ok(text) = std::str::from_utf8(text) else {
            return self.fail("not UTF-8");
        };
        match text.as_bytes().first() {
            Some(b'4') => {
                let Ok(packet) = decode(&text[1..], &Limits::default()) else {
                    return self.fail("a malformed Socket.IO packet");
                };
                if packet.kind.is_binary() && packet.attachments > 0 {
                    self.partial = Some(Box::new(Partial::new(packet)));
                    return None;
                }
                if packet.kind.is_binary() {
                    let data = packet.data.as_deref().map_or("null", |d| d.get());
                    if check_placeholders(data, 0).is_err() {
                        return self.fail("bad binary placeholders");
                    }
                }
                Some(Step::Packet(packet, false))
            }
            // A pong, or a client's ping (Engine.IO 3 had them; protocol 4 clients send none):
            // proof of life. The library answers a ping; here the session's heartbeat does.
            Some(b'3' | b'2') => Some(Step::Alive),
            Some(b'6') => None,
            Some(b'1') => {
                self.ended = true;
                None
            }
            _ => self.fail("not an Engine.IO packet a client sends on a WebSocket"),
        }
    }
}

/// The session's transport on a direct connection: the client's events as native request
/// frames, its pongs as proof of life.
pub struct SioWsReader {
    wire: Arc<WsWire>,
    reading: Reading,
    sessions: Arc<WsSessions>,
}

impl SioWsReader {
    fn poll_recv(&mut self, cx: &mut Context<'_>) -> Poll<Option<Inbound>> {
        loop {
            let step = ready!(self.reading.poll_step(self.wire.outlet(), cx));
            match step {
                None => return Poll::Ready(None),
                Some(Step::Alive) => return Poll::Ready(Some(Inbound::Alive)),
                Some(Step::Ping(payload)) => return Poll::Ready(Some(Inbound::Ping(payload))),
                Some(Step::Packet(packet, binary)) => {
                    if let Some(inbound) = self.on_packet(packet, binary) {
                        return Poll::Ready(Some(inbound));
                    }
                }
            }
        }
    }

    /// A Socket.IO packet once connected: an event becomes a request frame (or is refused in
    /// its acknowledgement), as on the library's sockets.
    fn on_packet(&mut self, packet: Packet, binary: bool) -> Option<Inbound> {
        let outlet = self.wire.outlet();
        match packet.kind {
            PacketType::Event | PacketType::BinaryEvent => {
                let Some(Ok((name, args))) = packet.data.as_deref().map(split_event) else {
                    self.reading.fail("an event that is not [name, ...args]");
                    return None;
                };
                // Events for a namespace the client is not connected to are dropped.
                if packet.nsp != "/" {
                    return None;
                }
                let max = self.sessions.node.limits.max_frame_bytes;
                match translate::event_frame(&name, &args, packet.id, binary, max) {
                    Ok(frame) => Some(Inbound::Frame(frame.into())),
                    // Answered by the session, in order with its replies (an event that asked
                    // for no acknowledgement gets none: its id is `NO_ACK`).
                    Err(refusal) => Some(Inbound::Refused(Box::new(Refused {
                        id: Some(packet.id.map_or(Value::from(NO_ACK), Value::from)),
                        code: refusal.code,
                        message: refusal.message,
                    }))),
                }
            }
            // The server asks for no acknowledgement: the client's are read and dropped.
            PacketType::Ack | PacketType::BinaryAck => {
                if packet
                    .data
                    .as_deref()
                    .map(split_ack)
                    .is_none_or(|r| r.is_err())
                {
                    self.reading.fail("an acknowledgement that is not an array");
                }
                None
            }
            PacketType::Connect => {
                // A repeat CONNECT to `/` is ignored, as socket.io does.
                if packet.nsp != "/" {
                    invalid_namespace(outlet, &packet.nsp);
                }
                None
            }
            PacketType::Disconnect => {
                if packet.nsp == "/" {
                    // On purpose: nothing to recover.
                    self.wire.client_left();
                    self.reading.ended = true;
                }
                None
            }
            PacketType::ConnectError => {
                self.reading.fail("a CONNECT_ERROR from the client");
                None
            }
        }
    }
}

impl Transport for SioWsReader {
    fn recv(&mut self) -> impl Future<Output = Option<Inbound>> + Send {
        std::future::poll_fn(|cx| self.poll_recv(cx))
    }

    fn heartbeat(&self) -> Option<Duration> {
        Some(self.sessions.ping_interval)
    }
}

#[cfg(test)]
mod size_tests {
    use super::*;

    /// What every idle direct Socket.IO connection's task holds: the connection's future (the
    /// session's, after the CONNECT) plus the admission permit (8) plus tokio's 104 bytes, in
    /// steps of 128. At most 656 keeps it at 768 bytes, as a native WebSocket's.
    #[test]
    #[allow(unreachable_code)]
    fn the_connection_future_stays_small() {
        fn returned_size<F: FnOnce() -> Fut, Fut>(_: F) -> usize {
            std::mem::size_of::<Fut>()
        }
        let session = returned_size(|| {
            run_session(
                unreachable!(),
                unreachable!() as SioWsReader,
                unreachable!(),
                None,
            )
        });
        let task = returned_size(|| connection(unreachable!(), unreachable!()));
        println!("run_session::<SioWsReader>: {session} bytes; the connection's task: {task}");
        assert!(
            task <= 656,
            "the direct Socket.IO connection's future grew to {task} bytes (session {session})"
        );
    }
}
