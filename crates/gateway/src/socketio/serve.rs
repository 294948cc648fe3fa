//! The `/socket.io/` endpoint: the protocol library's server with Switchboard's namespace `/`.
//! Each accepted CONNECT runs one core session (the same one as every transport's) over the
//! socket, through [`SioTransport`] and [`SioWire`].

use super::connect::{self, Accepted};
use super::forward::{ForwardLimits, Forwarder, owner_of, unknown_sid};
use super::inbox::SioTransport;
use super::record::Records;
use super::translate::{self, error_arg};
use super::wire::{Outlet, SioWire};
use super::ws_outlet::Closing;
use super::ws_session::{self, WsSessions};
use crate::poll::NodeLocator;
use crate::timed::TimedStream;
use async_trait::async_trait;
use axum::Router;
use axum::extract::Request;
use axum::response::{IntoResponse, Response};
use axum::routing::any;
use hyper_util::rt::TokioIo;
use parking_lot::Mutex;
use serde_json::Value;
use std::collections::BTreeMap;
use std::io;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;
use switchboard_core::admission::Permit;
use switchboard_core::session::{PreAuth, run_session};
use switchboard_core::transport::Inbound;
use switchboard_core::{Error, Node};
use switchboard_proto::ErrorCode;
use switchboard_socketio::{
    Accept, AckSender, Config, ConnectRequest, DisconnectReason, Event, EventHead, Namespace,
    Refuse, Socket, SocketHandler, SocketIo,
};
use tower::ServiceExt;

/// Settings of the endpoint.
#[derive(Clone)]
pub struct SioConfig {
    /// Engine.IO `pingInterval`.
    pub ping_interval: Duration,
    /// Engine.IO `pingTimeout`.
    pub ping_timeout: Duration,
    /// `maxPayload` (the node's largest frame).
    pub max_payload: usize,
    /// Connection state recovery window (zero: off).
    pub recovery: Duration,
    /// The node lease (how long a crashed node's records outlive its last renewal).
    pub lease: Duration,
    /// Finds other nodes (cluster mode), for polling requests to forward.
    pub locate: Option<NodeLocator>,
    /// Client events queued per socket before more are answered `rate_limited`.
    pub inbound_queue: usize,
}

/// The endpoint: its router and what shutdown needs.
pub struct SioEndpoint {
    io: SocketIo,
    /// Connections that open their WebSocket directly.
    direct: Arc<WsSessions>,
    /// The node's recovery records.
    pub records: Arc<Records>,
}

impl SioEndpoint {
    /// The routes (`/socket.io/`): a new session on a plain WebSocket runs as a core session on
    /// its socket ([`super::ws_session`]); everything else is the library's.
    pub fn router(&self) -> Router {
        let library = self.io.router();
        let direct = self.direct.clone();
        let route = any(move |req: Request| {
            let (library, direct) = (library.clone(), direct.clone());
            async move {
                if ws_session::takes(&req) {
                    return ws_session::open(direct, req);
                }
                match library.oneshot(req).await {
                    Ok(resp) => resp,
                    Err(never) => match never {},
                }
            }
        });
        Router::new()
            .route("/socket.io/", route.clone())
            .route("/socket.io", route)
    }

    /// Engine.IO sessions open on this node, and direct WebSockets whose drain's delayed close
    /// has not come yet.
    pub fn session_count(&self) -> usize {
        self.io.engine().session_count() + self.direct.closing.count()
    }

    /// Closes every Engine.IO session and every direct WebSocket still waiting for its delayed
    /// close (the end of a drain); clients reconnect by themselves.
    pub fn close_all(&self) {
        self.io.close_all();
        self.direct.closing.close_all();
    }
}

/// Builds the endpoint for `node`.
pub fn socketio_endpoint(node: Arc<Node>, config: SioConfig) -> SioEndpoint {
    let records = Records::start(node.backend.registry.clone(), config.recovery, config.lease);
    let lib = Config {
        ping_interval: config.ping_interval,
        ping_timeout: config.ping_timeout,
        max_payload: config.max_payload,
        max_queued_packets: node.limits.outbound_queue.max(64),
        // Namespace `/` decides a CONNECT by its `auth` alone (origins and addresses are
        // checked before the request reaches the library): no session keeps its headers.
        keep_handshake: false,
        ..Config::default()
    };
    let node_id = node.id.clone();
    let sids = node_id.clone();
    let mut builder = SocketIo::builder(lib)
        .namespace(
            "/",
            Switchboard {
                node: node.clone(),
                records: records.clone(),
                inbound_queue: config.inbound_queue.max(1),
            },
        )
        // The server (crate::serve) serves plain connections as `TimedStream`s: their sockets
        // are taken back, so the fan-out writes `message` events itself (TLS ones are not).
        .take_socket(|upgraded| {
            upgraded
                .downcast::<TokioIo<TimedStream>>()
                .map(|parts| (parts.io.into_inner().into_inner(), parts.read_buf))
        })
        .sid_generator(move || {
            format!(
                "{:016x}{:016x}~{sids}",
                switchboard_proto::ids::random_u64(),
                switchboard_proto::ids::random_u64()
            )
        });
    let forwarder = config.locate.map(|locate| {
        Arc::new(Forwarder::new(
            node_id.to_string(),
            locate,
            ForwardLimits {
                max_body: config.max_payload + 4096,
                timeout: config.ping_interval + config.ping_timeout + Duration::from_secs(5),
                concurrent: 1024,
            },
        ))
    });
    builder = builder.on_unknown_sid(move |req: Request, sid: String| {
        let forwarder = forwarder.clone();
        let node_id = node_id.clone();
        async move { misrouted(req, sid, &node_id, forwarder).await }
    });
    let direct = Arc::new(WsSessions {
        node: node.clone(),
        records: records.clone(),
        ping_interval: config.ping_interval,
        ping_timeout: config.ping_timeout,
        max_payload: config.max_payload,
        closing: Closing::new(),
        // The node's rule for a connection that has not said who it is yet (it holds a slot).
        connect_timeout: node.limits.auth_timeout,
    });
    SioEndpoint {
        io: builder.build(),
        direct,
        records,
    }
}

/// A request naming a sid this node does not hold: a polling request for another node's
/// session is forwarded there; an upgrade is refused (400), so the client stays on polling.
async fn misrouted(
    req: Request,
    sid: String,
    node_id: &str,
    forwarder: Option<Arc<Forwarder>>,
) -> Response {
    let upgrade = req.headers().contains_key(axum::http::header::UPGRADE)
        || req
            .uri()
            .query()
            .is_some_and(|q| q.split('&').any(|kv| kv == "transport=websocket"));
    match (owner_of(&sid), forwarder) {
        (Some(owner), Some(f)) if owner != node_id && !upgrade => f.forward(owner, req).await,
        _ => unknown_sid().into_response(),
    }
}

/// Namespace `/`: token auth and recovery at CONNECT, then one core session per socket.
struct Switchboard {
    node: Arc<Node>,
    records: Arc<Records>,
    inbound_queue: usize,
}

#[async_trait]
impl Namespace for Switchboard {
    async fn connect(&self, socket: &Socket, request: ConnectRequest) -> Result<Accept, Refuse> {
        let node = &self.node;
        let permit = (!node.is_draining()).then(|| node.admission.try_admit());
        let Some(Some(permit)) = permit else {
            // Not a CONNECT_ERROR (stock clients do not retry after one): the connection just
            // ends, and the client reconnects with its backoff, elsewhere if it can.
            socket.conn().close(DisconnectReason::TransportClose);
            return Err(Refuse(connect::connect_error(&Error::new(
                ErrorCode::Overloaded,
                "this node is full or draining",
            ))));
        };
        let auth = request.auth_value().unwrap_or(Value::Null);
        let accepted = connect::accept(node, &self.records, &auth)
            .await
            .map_err(|e| Refuse(connect::connect_error(&e)))?;
        let Accepted {
            pid,
            recovered,
            owner,
            pre,
            slots,
        } = accepted;
        tracing::debug!(pid, recovered, "Socket.IO connect");
        // The socket's input, its writing half and its acks waiting: one allocation.
        let outlet = SocketOutlet {
            socket: socket.clone(),
            acks: Mutex::new(BTreeMap::new()),
        };
        let wire = Arc::new(SioWire::new(
            outlet,
            slots,
            self.records.clone(),
            pid.clone(),
            owner,
            pre.principal.user_id.clone(),
            self.inbound_queue,
        ));
        let reply = serde_json::json!({"sid": socket.id(), "pid": pid});
        let handler = SioHandler {
            node: node.clone(),
            wire,
            start: Mutex::new(Some(Box::new((permit, pre)))),
        };
        Ok(Accept::new(handler).with_reply(reply))
    }
}

/// One socket's handler: its events go to its session's input (in the wire).
struct SioHandler {
    node: Arc<Node>,
    wire: Arc<SioWire<SocketOutlet>>,
    /// What the session starts with, taken once the CONNECT reply is queued (boxed: the
    /// handler lives as long as the socket, this only until its session starts).
    start: Mutex<Option<Box<(Permit, PreAuth)>>>,
}

#[async_trait]
impl SocketHandler for SioHandler {
    async fn connected(&self, _socket: &Socket) {
        let Some(start) = self.start.lock().take() else {
            return;
        };
        let (permit, pre) = *start;
        let session = run_session(
            self.node.clone(),
            SioTransport(self.wire.clone()),
            self.wire.clone(),
            Some(pre),
        );
        self.node.admission.spawn(permit, session);
    }

    async fn event(&self, _socket: &Socket, event: Event) {
        let binary = !event.attachments.is_empty();
        let ack_id = event.ack.as_ref().map(AckSender::id);
        let request = translate::event_frame(
            &event.name,
            &event.args,
            ack_id,
            binary,
            self.node.limits.max_frame_bytes,
        );
        match request {
            Ok(frame) => {
                if let Some(ack) = event.ack {
                    self.acks().lock().insert(ack.id(), ack);
                }
                if !self.wire.inbox().push(Inbound::Frame(frame.into()))
                    && let Some(ack) = ack_id.and_then(|id| self.acks().lock().remove(&id))
                {
                    let arg = error_arg(
                        ErrorCode::RateLimited.as_str(),
                        "too many requests waiting on this socket",
                    );
                    let _ = ack.send([arg]);
                }
            }
            Err(refusal) => {
                if let Some(ack) = event.ack {
                    let _ = ack.send([refusal.ack_arg()]);
                }
            }
        }
    }

    fn disconnect(&self, _socket: &Socket, reason: DisconnectReason) {
        if reason == DisconnectReason::ClientNamespaceDisconnect {
            self.wire.client_left();
        }
        // The session's input ends: it closes like any disconnected client.
        self.wire.inbox().close();
        if self.start.lock().take().is_some() {
            // It never started, so it will not end the record itself.
            self.wire.ended_unstarted();
        }
        self.acks().lock().clear();
    }
}

impl SioHandler {
    /// The client's acknowledgements waiting for their answer.
    fn acks(&self) -> &Mutex<BTreeMap<u64, AckSender>> {
        &self.wire.outlet().acks
    }
}

/// The wire's view of a library socket.
struct SocketOutlet {
    socket: Socket,
    /// The client's acknowledgements waiting for their answer (by the session's request id;
    /// a `BTreeMap`, half a `HashMap`'s 48 bytes while empty).
    acks: Mutex<BTreeMap<u64, AckSender>>,
}

/// The start of every `message` event (`42["message"`), encoded once for the process: no
/// socket keeps a pointer to it.
fn message_head() -> &'static EventHead {
    static HEAD: std::sync::OnceLock<EventHead> = std::sync::OnceLock::new();
    HEAD.get_or_init(|| EventHead::new("/", "message").expect("a constant event head"))
}

fn io_err(e: impl std::fmt::Display) -> io::Error {
    io::Error::new(io::ErrorKind::BrokenPipe, e.to_string())
}

impl Outlet for SocketOutlet {
    fn flush(&self) -> Option<usize> {
        // The library queues whole packets and bounds each session's queue itself, closing a
        // session that fills it (the client then reconnects and recovers).
        None
    }

    fn poll_room(&self, _cx: &mut Context<'_>) -> Poll<()> {
        Poll::Ready(())
    }

    fn emit_message(&self, object: &str, offset_json: &str) -> io::Result<()> {
        // The offset is base-36 digits and dots: quoting it is all its JSON needs. Written from
        // the shared object's bytes, straight to the socket when nothing is queued for it.
        self.socket
            .emit_values(message_head(), &[object, offset_json])
            .map_err(io_err)
    }

    fn emit(&self, event: &str, args: String) -> io::Result<()> {
        self.socket.emit_json(event, &args).map_err(io_err)
    }

    fn ack(&self, id: u64, args_json: &str) -> io::Result<()> {
        match self.acks.lock().remove(&id) {
            Some(ack) => ack.send_json(args_json).map_err(io_err),
            None => Ok(()),
        }
    }

    fn ping(&self) -> io::Result<bool> {
        Ok(false)
    }

    fn disconnect(&self) {
        self.socket.disconnect();
    }

    fn close_transport(&self) {
        self.socket.conn().close(DisconnectReason::ServerShutdown);
    }

    fn close_transport_after(&self, delay: Duration) {
        // Frames may be written from a fan-out thread, outside the runtime.
        match tokio::runtime::Handle::try_current() {
            Ok(rt) => {
                let socket = self.socket.clone();
                rt.spawn(async move {
                    tokio::time::sleep(delay).await;
                    socket.conn().close(DisconnectReason::ServerShutdown);
                });
            }
            Err(_) => self.close_transport(),
        }
    }
}
