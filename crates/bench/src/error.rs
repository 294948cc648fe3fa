//! The bench's error type: what went wrong, with enough context to say where.

use thiserror::Error;

/// Anything that stops a benchmark step.
#[derive(Debug, Error)]
pub enum BenchError {
    /// A command-line value that cannot be used (for example a non-loopback target).
    #[error("{0}")]
    Config(String),
    /// A socket operation failed.
    #[error("{context}: {source}")]
    Io {
        /// What the bench was doing.
        context: String,
        /// The operating system's error.
        source: std::io::Error,
    },
    /// An HTTP exchange failed or answered something unexpected.
    #[error("HTTP: {0}")]
    Http(String),
    /// A WebSocket handshake or frame failed.
    #[error("WebSocket: {0}")]
    Ws(String),
    /// The server said something the bench did not expect.
    #[error("protocol: {0}")]
    Protocol(String),
    /// A worker process misbehaved or a step timed out.
    #[error("{0}")]
    Run(String),
}

impl BenchError {
    /// Wraps an I/O error with what was being done.
    pub fn io(context: impl Into<String>, source: std::io::Error) -> BenchError {
        BenchError::Io {
            context: context.into(),
            source,
        }
    }
}

/// The bench's result type.
pub type Result<T> = std::result::Result<T, BenchError>;
