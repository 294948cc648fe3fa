//! The core's request error: an [`ErrorCode`] from the contract and a human-readable message.
//! HTTP handlers turn it into a status and JSON body, sessions into an `error` frame.

use crate::backend::BackendError;
use switchboard_proto::ErrorCode;

/// A failed request.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{code:?}: {message}")]
pub struct Error {
    /// The contract's code.
    pub code: ErrorCode,
    /// Detail for people.
    pub message: String,
    /// When to try again, for `rate_limited` and `overloaded` (HTTP sends it as `Retry-After`).
    pub retry_after: Option<std::time::Duration>,
}

impl Error {
    /// An error with this code and message.
    pub fn new(code: ErrorCode, message: impl Into<String>) -> Error {
        Error {
            code,
            message: message.into(),
            retry_after: None,
        }
    }
    /// `rate_limited`, to be retried after `retry_after`.
    pub fn rate_limited(message: impl Into<String>, retry_after: std::time::Duration) -> Error {
        Error {
            retry_after: Some(retry_after),
            ..Error::new(ErrorCode::RateLimited, message)
        }
    }
    /// `overloaded`, to be retried after `retry_after`.
    pub fn overloaded(message: impl Into<String>, retry_after: std::time::Duration) -> Error {
        Error {
            retry_after: Some(retry_after),
            ..Error::new(ErrorCode::Overloaded, message)
        }
    }
    /// `bad_request`.
    pub fn bad_request(message: impl Into<String>) -> Error {
        Error::new(ErrorCode::BadRequest, message)
    }
    /// `not_found`.
    pub fn not_found(message: impl Into<String>) -> Error {
        Error::new(ErrorCode::NotFound, message)
    }
    /// `unauthorized`.
    pub fn unauthorized(message: impl Into<String>) -> Error {
        Error::new(ErrorCode::Unauthorized, message)
    }
    /// `forbidden`.
    pub fn forbidden(message: impl Into<String>) -> Error {
        Error::new(ErrorCode::Forbidden, message)
    }
}

impl From<BackendError> for Error {
    fn from(e: BackendError) -> Error {
        match e {
            BackendError::UsernameTaken => {
                Error::new(ErrorCode::UsernameTaken, "username is taken")
            }
            BackendError::NotFound => Error::not_found("not found"),
            BackendError::Unavailable(m) => {
                tracing::warn!(error = %m, "backend unavailable");
                Error::new(
                    ErrorCode::Unavailable,
                    "storage is unavailable, retry later",
                )
            }
            BackendError::Internal(m) => {
                tracing::error!(error = %m, "backend failure");
                Error::new(ErrorCode::Internal, "internal error")
            }
        }
    }
}

/// Result with the core's [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;
