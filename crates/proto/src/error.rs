//! Error codes (replies, HTTP errors) and disconnect reasons (the end of a connection).
//!
//! The two are kept apart on purpose, as centrifuge does: an error answers one request and the
//! connection goes on; a disconnect ends the connection and tells the client why.

use serde::{Deserialize, Serialize};

/// The error codes of the contract. Each has one HTTP status.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ErrorCode {
    /// Malformed JSON, missing or mistyped fields, unknown frame type.
    BadRequest,
    /// No token, or a bad or expired one.
    Unauthorized,
    /// Signed in, but not allowed (e.g. adding members to someone else's private room).
    Forbidden,
    /// Unknown room, user, route or conversation.
    NotFound,
    /// Registration with a username that exists.
    UsernameTaken,
    /// Private room and not a member.
    NotMember,
    /// Frame or body over the configured limit.
    TooLarge,
    /// Over the per-connection publish rate.
    RateLimited,
    /// Node (or every node) full, or draining.
    Overloaded,
    /// Long-poll session that lives on another node.
    WrongNode,
    /// Backend unreachable; retry later.
    Unavailable,
    /// A bug or an unexpected failure; details are in the server log.
    Internal,
}

impl ErrorCode {
    /// The snake_case name used on the wire.
    pub fn as_str(self) -> &'static str {
        match self {
            ErrorCode::BadRequest => "bad_request",
            ErrorCode::Unauthorized => "unauthorized",
            ErrorCode::Forbidden => "forbidden",
            ErrorCode::NotFound => "not_found",
            ErrorCode::UsernameTaken => "username_taken",
            ErrorCode::NotMember => "not_member",
            ErrorCode::TooLarge => "too_large",
            ErrorCode::RateLimited => "rate_limited",
            ErrorCode::Overloaded => "overloaded",
            ErrorCode::WrongNode => "wrong_node",
            ErrorCode::Unavailable => "unavailable",
            ErrorCode::Internal => "internal",
        }
    }

    /// The HTTP status that carries this code.
    pub fn http_status(self) -> u16 {
        match self {
            ErrorCode::BadRequest => 400,
            ErrorCode::Unauthorized => 401,
            ErrorCode::Forbidden | ErrorCode::NotMember => 403,
            ErrorCode::NotFound => 404,
            ErrorCode::UsernameTaken => 409,
            ErrorCode::TooLarge => 413,
            ErrorCode::WrongNode => 421,
            ErrorCode::RateLimited => 429,
            ErrorCode::Internal => 500,
            ErrorCode::Overloaded | ErrorCode::Unavailable => 503,
        }
    }

    /// Every code, for metrics and docs.
    pub const ALL: [ErrorCode; 12] = [
        ErrorCode::BadRequest,
        ErrorCode::Unauthorized,
        ErrorCode::Forbidden,
        ErrorCode::NotFound,
        ErrorCode::UsernameTaken,
        ErrorCode::NotMember,
        ErrorCode::TooLarge,
        ErrorCode::RateLimited,
        ErrorCode::Overloaded,
        ErrorCode::WrongNode,
        ErrorCode::Unavailable,
        ErrorCode::Internal,
    ];
}

/// Why the server ends a connection (`{"type":"disconnect","reason":...}`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum DisconnectReason {
    /// The token this connection was opened with was revoked (`DELETE /v1/sessions/current`).
    LoggedOut,
    /// The server API disconnected the user.
    Kicked,
    /// The outbound queue overflowed; resume from the last seq to lose nothing.
    SlowConsumer,
    /// The token expired while the connection was open.
    AuthExpired,
    /// The client kept sending invalid frames, or missed heartbeats.
    ProtocolError,
    /// The node is shutting down; go back to the dispatcher.
    Shutdown,
}

impl DisconnectReason {
    /// The snake_case name used on the wire.
    pub fn as_str(self) -> &'static str {
        match self {
            DisconnectReason::LoggedOut => "logged_out",
            DisconnectReason::Kicked => "kicked",
            DisconnectReason::SlowConsumer => "slow_consumer",
            DisconnectReason::AuthExpired => "auth_expired",
            DisconnectReason::ProtocolError => "protocol_error",
            DisconnectReason::Shutdown => "shutdown",
        }
    }
}
