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
use super::wire::SioWire;
use super::ws_outlet::{Closing, WsOutlet};
use super::ws_read::{Action, Reading, Step, action};
use crate::http_error::ApiError;
use crate::serve::Encrypted;
use crate::timed::TimedStream;
use crate::ws::{handshake_key, switching_protocols};
use axum::extract::Request;
use axum::http::{Method, StatusCode};
use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use futures_util::FutureExt;
use futures_util::future::OptionFuture;
use hyper::upgrade::OnUpgrade;
use hyper_util::rt::TokioIo;
use serde_json::Value;
use std::sync::Arc;
use std::task::{Context, Poll, ready};
use std::time::Duration;
use switchboard_core::session::{PreAuth, run_session};
use switchboard_core::transport::{Inbound, Transport};
use switchboard_core::{Error, Node};
use switchboard_proto::ErrorCode;
use switchboard_socketio::engine::random_sid;
use switchboard_socketio::sio::packet::{self, PacketType};
use tokio::net::TcpStream;

/// Refused CONNECTs one connection may send before it is closed.
const MAX_REFUSED_CONNECTS: u32 = 8;

/// The next step read from the client; `None` once the connection is over.
fn poll_step(reading: &mut Reading, outlet: &WsOutlet, cx: &mut Context<'_>) -> Poll<Option<Step>> {
    loop {
        if let Some(step) = reading.next_step() {
            return Poll::Ready(Some(step));
        }
        if reading.is_over() {
            return Poll::Ready(None);
        }
        let buf = reading.buf_mut();
        if !ready!(crate::wire::poll_read_stream(outlet.stream(), buf, cx)) {
            reading.end();
        }
    }
}

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
    let outlet = WsOutlet::new(stream, sessions.closing.clone());
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
        let next = std::future::poll_fn(|cx| poll_step(&mut reading, &outlet, cx));
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
            let step = ready!(poll_step(&mut self.reading, self.wire.outlet(), cx));
            let max = self.sessions.node.limits.max_frame_bytes;
            match step.map(|step| action(step, max)) {
                None => return Poll::Ready(None),
                Some(Action::Inbound(inbound)) => return Poll::Ready(Some(inbound)),
                Some(Action::InvalidNamespace(nsp)) => invalid_namespace(self.wire.outlet(), &nsp),
                Some(Action::Left) => {
                    // On purpose: nothing to recover.
                    self.wire.client_left();
                    self.reading.end();
                }
                Some(Action::Fail(why)) => self.reading.fail(why),
                Some(Action::Nothing) => {}
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
    use crate::returned_size;

    /// What every idle direct Socket.IO connection's task holds: the connection's future (the
    /// session's, after the CONNECT) plus the admission permit (8) plus tokio's 104 bytes, in
    /// steps of 128. At most 528 keeps it at 640 bytes, as a native WebSocket's (768 before the
    /// core session's `serve` and its instants were made smaller).
    #[test]
    #[allow(unreachable_code)]
    fn the_connection_future_stays_small() {
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
            task <= 528,
            "the direct Socket.IO connection's future grew to {task} bytes (session {session})"
        );
    }
}
