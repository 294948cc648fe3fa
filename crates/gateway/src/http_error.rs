//! The JSON error response shared by every HTTP surface:
//! `{"error":{"code":"snake_case_code","message":"human readable"}}` with the code's status.

use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use switchboard_core::Error;

/// An HTTP error response. Wraps the core's [`Error`] so handlers can use `?`.
#[derive(Debug)]
pub struct ApiError(pub Error);

impl From<Error> for ApiError {
    fn from(e: Error) -> ApiError {
        ApiError(e)
    }
}

impl From<switchboard_core::backend::BackendError> for ApiError {
    fn from(e: switchboard_core::backend::BackendError) -> ApiError {
        ApiError(e.into())
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let status = StatusCode::from_u16(self.0.code.http_status())
            .unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        let body = serde_json::json!({"error": {"code": self.0.code, "message": self.0.message}});
        let mut resp = (status, axum::Json(body)).into_response();
        // Read by the metrics layer, so every HTTP error is counted once, by code.
        resp.extensions_mut().insert(self.0.code);
        if let Some(after) = self.0.retry_after {
            // Whole seconds, rounded up: never `0`, which would invite an immediate retry.
            let secs = after.as_secs() + u64::from(after.subsec_nanos() > 0);
            resp.headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from(secs.max(1)));
        } else if status == StatusCode::SERVICE_UNAVAILABLE
            || status == StatusCode::TOO_MANY_REQUESTS
        {
            // Spread retries: 1 to 5 seconds.
            let secs = 1 + switchboard_proto::ids::random_u64() % 5;
            resp.headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from(secs));
        }
        resp
    }
}

/// Extracts a bearer token from an `Authorization` header value.
pub fn bearer(headers: &axum::http::HeaderMap) -> Option<&str> {
    let v = headers.get(header::AUTHORIZATION)?.to_str().ok()?;
    let (scheme, token) = v.split_once(' ')?;
    scheme
        .eq_ignore_ascii_case("bearer")
        .then(|| token.trim())
        .filter(|t| !t.is_empty())
}

/// The answer to a method a route does not take: 405, with `bad_request` in the body (the
/// contract has no code of its own for it).
pub async fn method_not_allowed() -> Response {
    let mut resp =
        ApiError(Error::bad_request("method not allowed on this endpoint")).into_response();
    *resp.status_mut() = StatusCode::METHOD_NOT_ALLOWED;
    resp
}
