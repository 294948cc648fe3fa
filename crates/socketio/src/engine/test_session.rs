//! For the engine's unit tests: a session opened in a server whose handler does nothing.

use std::sync::Arc;

use super::conn::{Shared, Transport};
use super::http::open_session;
use super::{EngineConn, EngineHandler, EngineIo, Hooks, Message, RequestInfo, SessionHandler};
use crate::{Config, DisconnectReason};

struct Nothing;

#[async_trait::async_trait]
impl SessionHandler for Nothing {
    async fn message(&mut self, _: Message) -> Result<(), DisconnectReason> {
        Ok(())
    }
    async fn close(&mut self, _: DisconnectReason) {}
}

struct Handler;

impl EngineHandler for Handler {
    fn open(&self, _: EngineConn, _: RequestInfo) -> Box<dyn SessionHandler> {
        Box::new(Nothing)
    }
}

/// A session on `transport` in a server of the default configuration (returned beside it:
/// the session holds the server's engine, not the server).
pub(crate) fn session(transport: Transport) -> (EngineIo, Arc<Shared>) {
    let io = EngineIo::new(Config::default(), Handler, Hooks::default());
    let shared = open_session(&io.engine, transport, RequestInfo::default());
    (io, shared)
}
