//! Engine.IO protocol 4: the packet codec, sessions with their heartbeat and bounded queue, the
//! polling and WebSocket transports with the upgrade, and the HTTP routes. Usable alone (a bare
//! Engine.IO server) through [`EngineIo`] and an [`EngineHandler`].

mod conn;
mod direct;
mod handler;
mod http;
pub mod packet;
mod polling;
mod server;
mod session;
#[cfg(test)]
mod test_session;
mod ws;
mod wsconn;
pub mod wsframe;

pub use conn::{EngineConn, SendError, Transport};
pub use direct::{TakeSocket, plain_tcp};
pub use handler::{EngineHandler, Message, RequestInfo, SessionHandler};
pub use server::{EngineIo, Hooks, SidGenerator, UnknownSidHook, random_sid};
