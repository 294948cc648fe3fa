//! Extractors that answer in the contract's error shape: JSON bodies (400 `bad_request`,
//! 413 `too_large`), query strings, bearer-token users, and the server API key.

use crate::AppState;
use axum::extract::{FromRequest, FromRequestParts, Request};
use axum::http::StatusCode;
use axum::http::request::Parts;
use bytes::Bytes;
use serde::de::DeserializeOwned;
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;
use switchboard_core::Error;
use switchboard_core::auth::Principal;
use switchboard_gateway::http_error::{ApiError, bearer};
use switchboard_proto::ErrorCode;

/// A JSON request body. Content-Type is not required (curl-friendly); the body must parse.
pub struct JsonBody<T>(pub T);

impl<T: DeserializeOwned, S: Send + Sync> FromRequest<S> for JsonBody<T> {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, Self::Rejection> {
        let bytes = Bytes::from_request(req, state).await.map_err(|rejection| {
            if rejection.status() == StatusCode::PAYLOAD_TOO_LARGE {
                ApiError(Error::new(
                    ErrorCode::TooLarge,
                    "request body is over the size limit",
                ))
            } else {
                ApiError(Error::bad_request(format!("unreadable body: {rejection}")))
            }
        })?;
        crate::bodies::parse_json(&bytes).map(JsonBody)
    }
}

/// A query string; bad values answer 400 `bad_request`.
pub struct QueryParams<T>(pub T);

impl<T: DeserializeOwned, S: Send + Sync> FromRequestParts<S> for QueryParams<T> {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self, Self::Rejection> {
        let q = parts.uri.query().unwrap_or("");
        serde_urlencoded_like(q).map(QueryParams)
    }
}

fn serde_urlencoded_like<T: DeserializeOwned>(q: &str) -> Result<T, ApiError> {
    axum::extract::Query::<T>::try_from_uri(
        &format!("/?{q}")
            .parse()
            .map_err(|_| ApiError(Error::bad_request("bad query string")))?,
    )
    .map(|axum::extract::Query(t)| t)
    .map_err(|e| ApiError(Error::bad_request(format!("bad query: {}", e.body_text()))))
}

/// The signed-in user of a request, and the token it used.
pub struct Authed {
    /// Who.
    pub principal: Principal,
    /// The bearer token (for logout).
    pub token: String,
}

impl FromRequestParts<AppState> for Authed {
    type Rejection = ApiError;

    async fn from_request_parts(
        parts: &mut Parts,
        state: &AppState,
    ) -> Result<Self, Self::Rejection> {
        let token = bearer(&parts.headers)
            .ok_or_else(|| ApiError(Error::unauthorized("missing bearer token")))?;
        let principal = state.node.authenticate(token).await.map_err(ApiError)?;
        Ok(Authed {
            principal,
            token: token.to_owned(),
        })
    }
}

/// A request carrying the configured server API key in `X-Api-Key`.
pub struct ServerKey;

impl FromRequestParts<AppState> for ServerKey {
    type Rejection = ApiError;

    async fn from_request_parts(
        parts: &mut Parts,
        state: &AppState,
    ) -> Result<Self, Self::Rejection> {
        let Some(expected) = state.config.api_key.as_deref() else {
            return Err(ApiError(Error::forbidden(
                "the server API is disabled: no --api-key is configured",
            )));
        };
        let given = parts
            .headers
            .get("x-api-key")
            .map(|v| v.as_bytes())
            .unwrap_or_default();
        // Digests of both sides, compared in constant time: neither the time to a mismatch
        // nor the length of the comparison says anything about the key.
        let (given, expected) = (Sha256::digest(given), Sha256::digest(expected.as_bytes()));
        if bool::from(given.as_slice().ct_eq(expected.as_slice())) {
            Ok(ServerKey)
        } else {
            Err(ApiError(Error::unauthorized("missing or wrong X-Api-Key")))
        }
    }
}

/// A JSON body that may be absent: an empty body gives `T::default()`.
pub struct OptionalJsonBody<T>(pub T);

impl<T: DeserializeOwned + Default, S: Send + Sync> FromRequest<S> for OptionalJsonBody<T> {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, Self::Rejection> {
        let empty = req
            .headers()
            .get(axum::http::header::CONTENT_LENGTH)
            .is_some_and(|v| v == "0")
            || (req
                .headers()
                .get(axum::http::header::CONTENT_LENGTH)
                .is_none()
                && req
                    .headers()
                    .get(axum::http::header::TRANSFER_ENCODING)
                    .is_none());
        if empty {
            return Ok(OptionalJsonBody(T::default()));
        }
        let JsonBody(t) = JsonBody::<T>::from_request(req, state).await?;
        Ok(OptionalJsonBody(t))
    }
}
