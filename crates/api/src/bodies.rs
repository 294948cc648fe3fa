//! The HTTP API's JSON request bodies, parsed by one pure function that the [`JsonBody`]
//! extractor, the `api_body` fuzz target and its corpus test share.
//!
//! [`JsonBody`]: crate::extract::JsonBody

use crate::handlers::{Credentials, NewMessage, NewRoom, PasswordChange};
use crate::server_api::{DisconnectRequest, ServerPublish, TokenRequest};
use serde::de::DeserializeOwned;
use switchboard_core::Error;
use switchboard_gateway::http_error::ApiError;

/// Parses a request body as `T`: a 400 `bad_request` saying whether the JSON or its fields
/// were wrong.
pub fn parse_json<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, ApiError> {
    serde_json::from_slice(bytes).map_err(|e| {
        let what = if e.is_syntax() || e.is_eof() {
            "malformed JSON"
        } else {
            "invalid fields"
        };
        ApiError(Error::bad_request(format!("{what}: {e}")))
    })
}

/// Parses `body` as every JSON body the API takes (register and login, password change, new
/// room, new message, server publish, server token, disconnect); returns how many accepted it.
pub fn parse_any_api_body(body: &[u8]) -> usize {
    [
        parse_json::<Credentials>(body).is_ok(),
        parse_json::<PasswordChange>(body).is_ok(),
        parse_json::<NewRoom>(body).is_ok(),
        parse_json::<NewMessage>(body).is_ok(),
        parse_json::<ServerPublish>(body).is_ok(),
        parse_json::<TokenRequest>(body).is_ok(),
        parse_json::<DisconnectRequest>(body).is_ok(),
    ]
    .into_iter()
    .filter(|ok| *ok)
    .count()
}
