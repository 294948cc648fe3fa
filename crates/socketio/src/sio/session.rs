//! The Socket.IO layer on one Engine.IO session: decodes packets (reassembling binary ones),
//! connects sockets to namespaces, routes events and acknowledgements, and ends the sockets
//! when the session ends. Every malformed packet closes the session (`ParseError`).

use std::sync::Arc;

use async_trait::async_trait;
use serde_json::value::RawValue;
use tokio::time::Instant;

use super::binary::Partial;
use super::handler::ConnectRequest;
use super::packet::{self, Packet, PacketType, decode, encode, split_ack, split_event};
use super::server::SioInner;
use super::socket::{AckResponse, Event, Socket};
use super::stored::StoredRequest;
use crate::DisconnectReason;
use crate::engine::{EngineConn, EngineHandler, Message, RequestInfo, SessionHandler, random_sid};

/// Makes the Socket.IO handler of each new Engine.IO session.
pub(crate) struct SioEngineHandler(pub Arc<SioInner>);

impl EngineHandler for SioEngineHandler {
    fn open(&self, conn: EngineConn, request: RequestInfo) -> Box<dyn SessionHandler> {
        conn.set_deadline(Some(Instant::now() + self.0.config.connect_timeout));
        Box::new(SioSession {
            conn,
            server: self.0.clone(),
            request: self
                .0
                .config
                .keep_handshake
                .then(|| Box::new(StoredRequest::new(&request))),
            sockets: Vec::new(),
            partial: None,
        })
    }
}

struct SioSession {
    conn: EngineConn,
    server: Arc<SioInner>,
    /// The handshake request, for each CONNECT (kept as bytes: see [`StoredRequest`]); `None`
    /// when the server does not keep it ([`Config::keep_handshake`](crate::Config)). Boxed:
    /// with the peer's address it is 48 bytes, which a session that keeps none would hold.
    request: Option<Box<StoredRequest>>,
    /// The connected sockets, one per namespace.
    sockets: Vec<Socket>,
    /// A binary packet waiting for its attachments (boxed: a rare state, and every idle
    /// session would keep room for its ~100 bytes).
    partial: Option<Box<Partial>>,
}

const PARSE: DisconnectReason = DisconnectReason::ParseError;

#[async_trait]
impl SessionHandler for SioSession {
    async fn message(&mut self, message: Message) -> Result<(), DisconnectReason> {
        match message {
            Message::Text(text) => {
                if self.partial.is_some() {
                    return Err(PARSE);
                }
                let packet = decode(&text, &self.server.config.limits).map_err(|_| PARSE)?;
                if packet.kind.is_binary() && packet.attachments > 0 {
                    self.partial = Some(Box::new(Partial::new(packet)));
                    return Ok(());
                }
                if packet.kind.is_binary() {
                    super::binary::check_placeholders(
                        packet.data.as_deref().map_or("null", RawValue::get),
                        0,
                    )
                    .map_err(|_| PARSE)?;
                }
                self.packet(packet, Vec::new()).await
            }
            Message::Binary(data) => {
                let partial = self.partial.as_mut().ok_or(PARSE)?;
                if partial.held_bytes() + data.len() > self.server.config.max_payload {
                    return Err(DisconnectReason::PayloadTooLarge);
                }
                if partial.push(data) {
                    let (packet, attachments) = self
                        .partial
                        .take()
                        .ok_or(PARSE)?
                        .finish()
                        .map_err(|_| PARSE)?;
                    self.packet(packet, attachments).await?;
                }
                Ok(())
            }
        }
    }

    async fn close(&mut self, reason: DisconnectReason) {
        for socket in self.sockets.drain(..) {
            socket.end(reason);
        }
    }
}

impl SioSession {
    fn find(&mut self, nsp: &str) -> Option<Socket> {
        self.sockets.retain(Socket::is_connected);
        self.sockets.iter().find(|s| s.namespace() == nsp).cloned()
    }

    async fn packet(
        &mut self,
        packet: Packet,
        attachments: Vec<bytes::Bytes>,
    ) -> Result<(), DisconnectReason> {
        match packet.kind {
            PacketType::Connect => self.connect(packet).await,
            PacketType::Disconnect => {
                if let Some(socket) = self.find(&packet.nsp) {
                    socket.end(DisconnectReason::ClientNamespaceDisconnect);
                }
                Ok(())
            }
            PacketType::Event | PacketType::BinaryEvent => {
                let (name, args) =
                    split_event(packet.data.as_deref().ok_or(PARSE)?).map_err(|_| PARSE)?;
                // Events for a namespace the client is not connected to are dropped, as socket.io does.
                let Some(socket) = self.find(&packet.nsp) else {
                    return Ok(());
                };
                let Some(handler) = socket.handler() else {
                    return Ok(());
                };
                let ack = packet.id.map(|id| socket.ack_sender(id));
                handler
                    .event(
                        &socket,
                        Event {
                            name,
                            args,
                            attachments,
                            ack,
                        },
                    )
                    .await;
                Ok(())
            }
            PacketType::Ack | PacketType::BinaryAck => {
                let args = split_ack(packet.data.as_deref().ok_or(PARSE)?).map_err(|_| PARSE)?;
                if let (Some(socket), Some(id)) = (self.find(&packet.nsp), packet.id) {
                    socket.resolve_ack(id, AckResponse { args, attachments });
                }
                Ok(())
            }
            PacketType::ConnectError => Err(PARSE),
        }
    }

    async fn connect(&mut self, packet: Packet) -> Result<(), DisconnectReason> {
        let nsp = packet.nsp;
        if self.find(&nsp).is_some() {
            return Ok(()); // already connected: socket.io ignores the repeat
        }
        let Some((name, namespace)) = self.server.namespaces.get(nsp.as_str()).cloned() else {
            let text = encode(
                PacketType::ConnectError,
                &nsp,
                None,
                Some(r#"{"message":"Invalid namespace"}"#),
                0,
            );
            let _ = self.conn.send_text(&text);
            return Ok(());
        };
        if self.sockets.len() >= self.server.config.max_namespaces {
            return Err(PARSE);
        }
        let socket = Socket::new(random_sid().into(), name, self.conn.clone());
        let request = ConnectRequest {
            auth: packet.data,
            request: self
                .request
                .as_ref()
                .map_or_else(|| Arc::new(RequestInfo::default()), |r| r.info()),
        };
        match namespace.connect(&socket, request).await {
            Ok(accept) => {
                let reply = accept
                    .reply
                    .unwrap_or_else(|| serde_json::json!({ "sid": socket.id() }));
                let reply = serde_json::to_string(&reply).map_err(|_| PARSE)?;
                let _ =
                    self.conn
                        .send_text(&encode(PacketType::Connect, &nsp, None, Some(&reply), 0));
                socket.set_handler(accept.handler.clone());
                // Most sessions join one namespace: room for one (a first push makes room for
                // four, 32 bytes in every idle session).
                self.sockets.reserve_exact(1);
                self.sockets.push(socket.clone());
                self.conn.set_deadline(None);
                accept.handler.connected(&socket).await;
            }
            Err(refuse) => {
                let data = serde_json::to_string(&refuse.0).map_err(|_| PARSE)?;
                let _ = self.conn.send_text(&packet::encode(
                    PacketType::ConnectError,
                    &nsp,
                    None,
                    Some(&data),
                    0,
                ));
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod size_tests {
    /// Every idle Socket.IO session keeps this (boxed, as its Engine.IO session's handler): 184
    /// bytes before the binary packet waiting for its attachments was boxed, 96 before the
    /// handshake request was (a session that keeps none holds 56 bytes, a malloc chunk of 64
    /// instead of 112).
    #[test]
    fn an_idle_session_stays_small() {
        let size = std::mem::size_of::<super::SioSession>();
        println!("SioSession: {size} bytes");
        assert!(size <= 56, "the session grew to {size} bytes");
    }
}
