//! Mapping Redis failures to [`BackendError`]: what a retry may fix (the server is down, slow,
//! loading, busy, failing over) is `Unavailable`; anything else (a bug, corrupt data) is
//! `Internal`.

use redis::{ErrorKind, RedisError, ServerErrorKind};
use switchboard_core::backend::BackendError;

/// Server error codes that mean "not now": the request may succeed later.
const TRANSIENT_CODES: &[&str] = &[
    "LOADING",
    "BUSY",
    "TRYAGAIN",
    "CLUSTERDOWN",
    "MASTERDOWN",
    "READONLY",
    "MISCONF",
    "OOM",
    "NOREPLICAS",
];

/// Whether `e` is a transient failure (connection, timeout, a server that cannot answer now).
pub(crate) fn is_transient(e: &RedisError) -> bool {
    if e.is_io_error() || e.is_timeout() || e.is_connection_dropped() || e.is_connection_refusal() {
        return true;
    }
    if matches!(
        e.kind(),
        ErrorKind::Server(
            ServerErrorKind::BusyLoading
                // A redirect the cluster client could not follow within its retries: the
                // topology is changing (resharding, failover).
                | ServerErrorKind::Moved
                | ServerErrorKind::Ask
                | ServerErrorKind::TryAgain
                | ServerErrorKind::ClusterDown
                | ServerErrorKind::MasterDown
                | ServerErrorKind::ReadOnly
        )
    ) {
        return true;
    }
    if e.code().is_some_and(|c| TRANSIENT_CODES.contains(&c)) {
        return true;
    }
    // A cluster pipeline or transaction reports its commands' errors in one aggregate.
    let text = e.to_string();
    ["Moved:", "Ask:", "TryAgain", "ClusterDown", "MasterDown"]
        .iter()
        .any(|t| text.contains(t))
}

/// Maps a Redis error met while doing `what` against the server at `url`.
pub(crate) fn map(url: &str, what: &str, e: RedisError) -> BackendError {
    if is_transient(&e) {
        BackendError::Unavailable(format!("Redis at {url}: {what}: {e}"))
    } else {
        BackendError::Internal(format!("Redis at {url}: {what}: {e}"))
    }
}

/// The error for a command that did not complete within the response timeout.
pub(crate) fn timed_out(url: &str, what: &str, after: std::time::Duration) -> BackendError {
    BackendError::Unavailable(format!(
        "Redis at {url}: {what}: no answer within {} ms",
        after.as_millis()
    ))
}

/// The error every call returns once the backend is closed.
pub(crate) fn closed() -> BackendError {
    BackendError::Unavailable("the Redis backend is closed".into())
}

/// A reply that does not have the shape this backend wrote.
pub(crate) fn bad_reply(what: &str, detail: impl std::fmt::Display) -> BackendError {
    BackendError::Internal(format!("unexpected Redis reply to {what}: {detail}"))
}

/// `url` with any password replaced by `***`, for messages and logs.
pub(crate) fn redact_url(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else {
        return url.to_owned();
    };
    // The userinfo ends at the last '@' before the first '/'.
    let authority_end = rest.find('/').unwrap_or(rest.len());
    match rest[..authority_end].rfind('@') {
        Some(at) => {
            let userinfo = &rest[..at];
            let user = userinfo.split_once(':').map_or(userinfo, |(u, _)| u);
            let shown = if userinfo.contains(':') {
                format!("{user}:***")
            } else {
                "***".to_owned()
            };
            format!("{scheme}://{shown}{}", &rest[at..])
        }
        None => url.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn passwords_are_redacted() {
        assert_eq!(
            redact_url("redis://127.0.0.1:6379/"),
            "redis://127.0.0.1:6379/"
        );
        assert_eq!(
            redact_url("redis://user:secret@host:6379/0"),
            "redis://user:***@host:6379/0"
        );
        assert_eq!(redact_url("redis://secret@host/"), "redis://***@host/");
        assert_eq!(redact_url("not a url"), "not a url");
    }
}
