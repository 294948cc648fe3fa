//! The Switchboard wire protocol, with no IO: conversation names, the message object,
//! client and server frames, error and disconnect codes, and id generation.
//!
//! Everything a transport or a backend needs to agree on lives here, so that the core,
//! the transports and the backends depend on one definition of the contract
//! (`docs/PROTOCOL.md` describes the same thing for people).

pub mod backoff;
pub mod conv;
pub mod depth;
pub mod endpoints;
pub mod error;
pub mod frame;
pub mod ids;
pub mod message;

pub use conv::Conv;
pub use endpoints::Endpoints;
pub use error::{DisconnectReason, ErrorCode};
pub use frame::{ClientFrame, FrameError, RequestId, ResumePosition, ServerFrame};
pub use message::{EncodedFrame, Message, MessageBody};
