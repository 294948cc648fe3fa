//! Socket.IO protocol 5 on Engine.IO: the packet codec, binary attachments, namespaces,
//! sockets, acknowledgements, and the server.

pub mod binary;
mod fanout;
mod handler;
pub mod packet;
mod server;
mod session;
mod socket;
mod stored;

pub use fanout::EventHead;
pub use handler::{Accept, ConnectRequest, Namespace, Refuse, SocketHandler};
pub use server::{Builder, SocketIo};
pub use socket::{AckError, AckResponse, AckSender, EmitError, EncodedPacket, Event, Socket};
