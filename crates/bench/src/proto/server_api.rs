//! What the bench asks of a server's HTTP API: tokens for its users, rooms, and server-side
//! publishes.

use super::Protocol;
use crate::error::{BenchError, Result};
use crate::http::{HttpConn, encode_component};

impl Protocol {
    /// Gets a token for user `user` (creating the user if needed).
    pub async fn issue_token(
        self,
        http: &mut HttpConn,
        api_key: &str,
        user: &str,
    ) -> Result<String> {
        let resp = match self {
            Protocol::Switchboard | Protocol::SwitchboardSocketio => {
                http.request(
                    "POST",
                    &format!("/v1/server/users/{}/tokens", encode_component(user)),
                    &[("X-Api-Key", api_key)],
                    br#"{"ttl_s":86400}"#,
                )
                .await?
            }
            Protocol::Socketio => {
                http.request(
                    "POST",
                    &format!("/tokens/{}", encode_component(user)),
                    &[],
                    b"{}",
                )
                .await?
            }
        };
        let v = resp.ok()?.json()?;
        v["token"]
            .as_str()
            .map(str::to_owned)
            .ok_or_else(|| BenchError::Protocol(format!("token answer without a token: {v}")))
    }

    /// Creates the public room for the bench's `k`-th room and returns its conversation name
    /// (`room:<id>`). Switchboard needs a user's token to create rooms; Socket.IO rooms need no
    /// creation.
    pub async fn create_room(
        self,
        http: &mut HttpConn,
        owner_token: &str,
        tag: &str,
        k: usize,
    ) -> Result<String> {
        match self {
            Protocol::Switchboard | Protocol::SwitchboardSocketio => {
                let body = format!(r#"{{"name":"bench-{tag}-{k}","visibility":"public"}}"#);
                let auth = format!("Bearer {owner_token}");
                let v = http
                    .request(
                        "POST",
                        "/v1/rooms",
                        &[("Authorization", &auth)],
                        body.as_bytes(),
                    )
                    .await?
                    .ok()?
                    .json()?;
                let id = v["room_id"].as_str().ok_or_else(|| {
                    BenchError::Protocol(format!("room answer without room_id: {v}"))
                })?;
                Ok(format!("room:{id}"))
            }
            Protocol::Socketio => Ok(self.local_room(tag, k)),
        }
    }

    /// Publishes `body` to `conv` through the server's HTTP publish endpoint.
    pub async fn publish_http(
        self,
        http: &mut HttpConn,
        api_key: &str,
        conv: &str,
        body: &str,
    ) -> Result<()> {
        let (path, req) = match self {
            Protocol::Switchboard | Protocol::SwitchboardSocketio => (
                "/v1/server/publish",
                format!(r#"{{"conv":"{conv}","body":{body}}}"#),
            ),
            Protocol::Socketio => ("/publish", format!(r#"{{"room":"{conv}","body":{body}}}"#)),
        };
        http.request("POST", path, &[("X-Api-Key", api_key)], req.as_bytes())
            .await?
            .ok()?;
        Ok(())
    }
}
