//! The Engine.IO server: the registry of sessions, the settings and hooks, and [`EngineIo`],
//! the public handle that builds the axum `Router` and closes every session.

use std::collections::HashMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

use axum::Router;
use axum::extract::Request;
use axum::response::Response;
use parking_lot::Mutex;

use bytes::Bytes;
use hyper::upgrade::Upgraded;
use tokio::net::TcpStream;

use super::conn::{EngineConn, Shared};
use super::direct::{TakeSocket, plain_tcp};
use super::handler::EngineHandler;
use crate::{Config, DisconnectReason};

/// Makes the sid of each new session (and of each Socket.IO socket).
pub type SidGenerator = Arc<dyn Fn() -> String + Send + Sync>;

/// The answer to a request naming a sid this process does not know: e.g. forward it to the
/// node that owns the session, or refuse it. Gets the whole request (its body unread).
pub type UnknownSidHook =
    Arc<dyn Fn(Request, String) -> Pin<Box<dyn Future<Output = Response> + Send>> + Send + Sync>;

/// What the routes share.
pub(crate) struct Engine {
    pub config: Config,
    pub handler: Box<dyn EngineHandler>,
    pub sessions: Mutex<HashMap<Arc<str>, Arc<Shared>>>,
    pub sid_generator: SidGenerator,
    pub unknown_sid: Option<UnknownSidHook>,
    pub take_socket: TakeSocket,
}

impl Engine {
    pub fn remove(&self, sid: &str) {
        self.sessions.lock().remove(sid);
    }

    pub fn get(&self, sid: &str) -> Option<Arc<Shared>> {
        self.sessions.lock().get(sid).cloned()
    }

    /// A new sid, unique among the sessions of this process.
    pub fn new_sid(&self) -> Arc<str> {
        loop {
            let sid: Arc<str> = (self.sid_generator)().into();
            if !self.sessions.lock().contains_key(&sid) {
                return sid;
            }
        }
    }
}

/// The default sid: 15 random bytes as 20 characters of URL-safe base64, as Engine.IO's own.
pub fn random_sid() -> String {
    use base64::Engine as _;
    let mut bytes = [0u8; 15];
    getrandom::fill(&mut bytes).expect("the OS random source failed");
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
}

/// A bare Engine.IO server (no Socket.IO): build it with a handler, serve [`EngineIo::router`].
/// Cloning it is cheap; every clone is the same server.
#[derive(Clone)]
pub struct EngineIo {
    pub(crate) engine: Arc<Engine>,
}

/// The hooks an embedding application may set: how sids are made, and what answers a request
/// that names a sid this process does not know.
#[derive(Clone, Default)]
pub struct Hooks {
    pub(crate) sid_generator: Option<SidGenerator>,
    pub(crate) unknown_sid: Option<UnknownSidHook>,
    pub(crate) take_socket: Option<TakeSocket>,
}

impl Hooks {
    /// Sets the sid generator (e.g. sids that name their node: `<random>~<node>`). A sid must be
    /// URL-safe; a generator that repeats a sid in use is asked again.
    pub fn sid_generator(mut self, generator: impl Fn() -> String + Send + Sync + 'static) -> Self {
        self.sid_generator = Some(Arc::new(generator));
        self
    }

    /// Sets the hook that answers polling requests and upgrades naming an unknown sid (e.g. to
    /// forward them to the node that owns the session). Without it they get HTTP 400
    /// `{"code":1,"message":"Session ID unknown"}`.
    pub fn on_unknown_sid<F, Fut>(mut self, hook: F) -> Self
    where
        F: Fn(Request, String) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Response> + Send + 'static,
    {
        self.unknown_sid = Some(Arc::new(move |req, sid| Box::pin(hook(req, sid))));
        self
    }

    /// Sets how a WebSocket's plain TCP socket is taken out of hyper's upgraded connection
    /// (the socket and the bytes read past the request), for servers that wrap their streams
    /// in a type of their own. On the plain socket, a packet sent while nothing is queued is
    /// written at once by the sender, without waking the session's task. The default takes a
    /// `hyper_util::rt::TokioIo<tokio::net::TcpStream>` (hyper serving the accepted stream as
    /// it is); a connection it cannot take (TLS, `axum::serve`'s wrapper) runs on hyper's
    /// upgraded connection, every frame written by the session's task.
    pub fn take_socket(
        mut self,
        take: impl Fn(Upgraded) -> Result<(TcpStream, Bytes), Upgraded> + Send + Sync + 'static,
    ) -> Self {
        self.take_socket = Some(Arc::new(take));
        self
    }
}

impl EngineIo {
    /// A server with these settings and hooks whose sessions are handled by `handler`.
    pub fn new(config: Config, handler: impl EngineHandler, hooks: Hooks) -> Self {
        Self::from_boxed(config, Box::new(handler), hooks)
    }

    pub(crate) fn from_boxed(
        config: Config,
        handler: Box<dyn EngineHandler>,
        hooks: Hooks,
    ) -> Self {
        let sid_generator = hooks.sid_generator.unwrap_or_else(|| Arc::new(random_sid));
        let engine = Engine {
            config,
            handler,
            sessions: Mutex::new(HashMap::new()),
            sid_generator,
            unknown_sid: hooks.unknown_sid,
            take_socket: hooks.take_socket.unwrap_or_else(|| Arc::new(plain_tcp)),
        };
        EngineIo {
            engine: Arc::new(engine),
        }
    }

    /// The routes, at `path` (e.g. `/engine.io/` or `/socket.io/`; with and without the
    /// trailing slash).
    pub fn router(&self, path: &str) -> Router {
        super::http::router(self.engine.clone(), path)
    }

    /// The settings.
    pub fn config(&self) -> &Config {
        &self.engine.config
    }

    /// The open session with this sid, if any.
    pub fn session(&self, sid: &str) -> Option<EngineConn> {
        self.engine.get(sid).map(EngineConn)
    }

    /// How many sessions are open.
    pub fn session_count(&self) -> usize {
        self.engine.sessions.lock().len()
    }

    /// Closes every session with `reason` (`ServerShutdown` for a drain: queued packets are
    /// delivered first, then clients get a `close` packet and reconnect by themselves).
    pub fn close_all(&self, reason: DisconnectReason) {
        let sessions: Vec<_> = self.engine.sessions.lock().values().cloned().collect();
        for session in sessions {
            session.close(reason);
        }
    }
}
