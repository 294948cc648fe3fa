//! Mapping SQLite failures to [`BackendError`], with a word on what was being done.

use switchboard_core::backend::BackendError;

/// Adds context to rusqlite results.
pub(crate) trait DbResultExt<T> {
    /// Maps an error to [`BackendError::Internal`] naming what failed.
    fn ctx(self, what: &str) -> Result<T, BackendError>;
}

impl<T> DbResultExt<T> for Result<T, rusqlite::Error> {
    fn ctx(self, what: &str) -> Result<T, BackendError> {
        self.map_err(|e| internal(what, e))
    }
}

/// A [`BackendError::Internal`] for a failed database operation.
pub(crate) fn internal(what: &str, e: impl std::fmt::Display) -> BackendError {
    BackendError::Internal(format!("sqlite: {what}: {e}"))
}

/// Whether the error is a violation of a UNIQUE constraint (not of a primary key).
pub(crate) fn is_unique_violation(e: &rusqlite::Error) -> bool {
    matches!(
        e,
        rusqlite::Error::SqliteFailure(f, _)
            if f.extended_code == rusqlite::ffi::SQLITE_CONSTRAINT_UNIQUE
    )
}

/// The error every call returns once the backend is closed.
pub(crate) fn closed() -> BackendError {
    BackendError::Unavailable("the embedded backend is closed".into())
}

/// Current time in milliseconds since the Unix epoch (0 if the clock is before 1970).
pub(crate) fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}
