//! [`SocketIo`]: the Socket.IO server (namespaces, settings, hooks) on an Engine.IO server,
//! and its [`Builder`].

use std::collections::HashMap;
use std::future::Future;
use std::sync::Arc;

use axum::Router;
use axum::extract::Request;
use axum::response::Response;
use bytes::Bytes;
use hyper::upgrade::Upgraded;
use tokio::net::TcpStream;

use super::handler::Namespace;
use super::session::SioEngineHandler;
use crate::engine::{EngineIo, Hooks};
use crate::{Config, DisconnectReason};

/// What every session of the server shares.
pub(crate) struct SioInner {
    pub config: Config,
    /// Each namespace with its name, shared by its sockets (none allocates its own).
    pub namespaces: HashMap<String, (Arc<str>, Arc<dyn Namespace>)>,
}

/// Builds a [`SocketIo`].
pub struct Builder {
    config: Config,
    path: String,
    namespaces: HashMap<String, Arc<dyn Namespace>>,
    hooks: Hooks,
}

impl Builder {
    /// Serves the namespace `name` (`/`, `/custom`) with `namespace`. A CONNECT to a namespace
    /// not served gets CONNECT_ERROR `{"message":"Invalid namespace"}`.
    pub fn namespace(mut self, name: &str, namespace: impl Namespace) -> Self {
        self.namespaces.insert(name.to_owned(), Arc::new(namespace));
        self
    }

    /// The path the router serves (default `/socket.io/`).
    pub fn path(mut self, path: &str) -> Self {
        self.path = path.to_owned();
        self
    }

    /// Makes the Engine.IO sids with `generator` (e.g. `<random>~<node>`, so that any node can
    /// tell which one holds a session). A socket's id is 20 random URL-safe characters, as
    /// socket.io makes them: it names the socket to its client and is never routed on.
    pub fn sid_generator(mut self, generator: impl Fn() -> String + Send + Sync + 'static) -> Self {
        self.hooks = self.hooks.sid_generator(generator);
        self
    }

    /// Answers polling requests and upgrades that name a sid this process does not know (e.g.
    /// forwards them to the owning node, or refuses the upgrade with 400). Gets the request
    /// (body unread) and the sid.
    pub fn on_unknown_sid<F, Fut>(mut self, hook: F) -> Self
    where
        F: Fn(Request, String) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Response> + Send + 'static,
    {
        self.hooks = self.hooks.on_unknown_sid(hook);
        self
    }

    /// Takes a WebSocket's plain TCP socket out of hyper's upgraded connection, for servers
    /// that wrap their streams (see [`Hooks::take_socket`](crate::engine::Hooks::take_socket)): on the plain socket, an emit to a
    /// socket with nothing queued is written by the emitter, without waking the session's task.
    pub fn take_socket(
        mut self,
        take: impl Fn(Upgraded) -> Result<(TcpStream, Bytes), Upgraded> + Send + Sync + 'static,
    ) -> Self {
        self.hooks = self.hooks.take_socket(take);
        self
    }

    /// The server.
    pub fn build(self) -> SocketIo {
        let inner = Arc::new(SioInner {
            config: self.config.clone(),
            namespaces: (self.namespaces.into_iter())
                .map(|(name, ns)| {
                    let shared = Arc::from(name.as_str());
                    (name, (shared, ns))
                })
                .collect(),
        });
        let engine =
            EngineIo::from_boxed(self.config, Box::new(SioEngineHandler(inner)), self.hooks);
        SocketIo {
            engine,
            path: self.path.into(),
        }
    }
}

/// A Socket.IO server: serve [`SocketIo::router`]; clone it freely (every clone is the same).
#[derive(Clone)]
pub struct SocketIo {
    engine: EngineIo,
    path: Arc<str>,
}

impl SocketIo {
    /// Starts building a server with these settings.
    pub fn builder(config: Config) -> Builder {
        Builder {
            config,
            path: "/socket.io/".into(),
            namespaces: HashMap::new(),
            hooks: Hooks::default(),
        }
    }

    /// The routes at the configured path (with and without its trailing slash).
    pub fn router(&self) -> Router {
        self.engine.router(&self.path)
    }

    /// The Engine.IO server underneath (sessions by sid, session count, settings).
    pub fn engine(&self) -> &EngineIo {
        &self.engine
    }

    /// Closes every session for a shutdown or drain: queued packets are delivered, then each
    /// client gets an Engine.IO `close` and (being a stock client) reconnects by itself; every
    /// socket ends with `ServerShutdown`.
    pub fn close_all(&self) {
        self.engine.close_all(DisconnectReason::ServerShutdown);
    }
}
