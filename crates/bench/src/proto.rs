//! How the bench speaks to each server, so every scenario runs unchanged against both:
//!
//! - **switchboard**: tokens from the server API (`POST /v1/server/users/{id}/tokens` with
//!   `X-Api-Key`), public rooms from `POST /v1/rooms`, WebSocket `/v1/ws?token=` (`welcome`
//!   unasked), `subscribe` frames, `publish` frames for direct messages, and server publishes
//!   through `POST /v1/server/publish`.
//! - **socketio**: the peer in `bench/socketio/server.js`, spoken as Engine.IO v4 over a raw
//!   WebSocket (`/socket.io/?EIO=4&transport=websocket`): `0{...}` open, `40{"token"}` connect,
//!   `42[...]` events, `42<id>[...]`/`43<id>[...]` acknowledgements, `2` pings answered `3`.
//!   Tokens come from its `POST /tokens/{id}`, publishes go through its `POST /publish`.
//! - **switchboard-socketio**: Switchboard's own `/socket.io/` endpoint (docs/SOCKETIO.md),
//!   spoken the same way as the Socket.IO peer (Engine.IO v4 over a raw WebSocket), with
//!   Switchboard's tokens, rooms and server publishes and its events: `subscribe` and `publish`
//!   (a direct message is a `publish` to `user:<id>`), acknowledged.
//!
//! Message bodies carry `bench_ts` (the publisher's send time, µs since the epoch) and `src`
//! (the sending user's index, -1 for server publishes); receivers find them by scanning the
//! frame text, which costs the client far less than parsing it.

use crate::error::{BenchError, Result};
use crate::http::{HttpConn, encode_component};
use crate::ws::{Ws, next_text, send_text};
use serde::{Deserialize, Serialize};
use std::time::Duration;

/// Longest wait for a handshake or subscription answer.
const REPLY_WAIT: Duration = Duration::from_secs(20);

/// The server a run talks to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum Protocol {
    /// Switchboard's HTTP API and WebSocket protocol.
    Switchboard,
    /// Socket.IO v4 (Engine.IO v4 over WebSocket) against bench/socketio/server.js.
    Socketio,
    /// Socket.IO v4 against Switchboard's `/socket.io/` endpoint.
    SwitchboardSocketio,
}

/// What a frame from the server is, as far as the bench cares.
#[derive(Debug, PartialEq, Eq)]
pub enum Incoming {
    /// A message carrying a bench timestamp; `src` is the sending user's index, if a user sent it.
    Delivery {
        /// Publisher's send time, µs since the epoch.
        ts_us: u64,
        /// The sender's user index (`None` for server publishes).
        src: Option<u64>,
    },
    /// An Engine.IO ping, to be answered with `3`.
    Ping,
    /// The answer to a publish (`published`, or a Socket.IO acknowledgement).
    Ack,
    /// An error frame.
    Error(String),
    /// The server ended the session (`disconnect` frame, Socket.IO disconnect or close packet).
    Closed(String),
    /// Anything else.
    Other,
}

/// A message body with the send time, the sender's index and `payload` bytes of padding.
pub fn body(ts_us: u64, src: i64, payload: &str) -> String {
    format!(r#"{{"bench_ts":{ts_us},"src":{src},"pad":"{payload}"}}"#)
}

/// The first number after `key` in `text` (`key` includes the quotes and colon).
fn number_after(text: &str, key: &str) -> Option<i64> {
    let at = text.find(key)? + key.len();
    let rest = text[at..].trim_start();
    let (neg, digits) = match rest.strip_prefix('-') {
        Some(r) => (true, r),
        None => (false, rest),
    };
    let end = digits
        .find(|c: char| !c.is_ascii_digit())
        .unwrap_or(digits.len());
    let v: i64 = digits[..end].parse().ok()?;
    Some(if neg { -v } else { v })
}

/// The JSON string right after `key` in `text` (no escapes: conversation names have none).
fn string_after<'a>(text: &'a str, key: &str) -> Option<&'a str> {
    let at = text.find(key)? + key.len();
    let rest = text[at..].trim_start().strip_prefix('"')?;
    Some(&rest[..rest.find('"')?])
}

/// The conversation and seq of a Switchboard message frame (`None` for Socket.IO's, which
/// carry neither).
pub fn conv_seq(text: &str) -> Option<(&str, u64)> {
    let conv = string_after(text, "\"conv\":")?;
    let seq = number_after(text, "\"seq\":")?;
    Some((conv, u64::try_from(seq).ok()?))
}

/// A publish's answer, as [`Protocol::answer`] reads it.
#[derive(Debug, PartialEq, Eq)]
pub struct Answer {
    /// The publish's request id.
    pub id: u64,
    /// Stored (`published`, or a Socket.IO acknowledgement); false for an error frame.
    pub ok: bool,
    /// Where it was stored (Switchboard; for a DM `user:<to>`).
    pub conv: Option<String>,
    /// Its seq there (Switchboard).
    pub seq: Option<u64>,
}

fn delivery(text: &str) -> Option<Incoming> {
    let ts = number_after(text, "\"bench_ts\":")?;
    let src = number_after(text, "\"src\":").unwrap_or(-1);
    Some(Incoming::Delivery {
        ts_us: ts.max(0) as u64,
        src: (src >= 0).then_some(src as u64),
    })
}

impl Protocol {
    /// The protocol's name in reports.
    pub fn name(self) -> &'static str {
        match self {
            Protocol::Switchboard => "switchboard",
            Protocol::Socketio => "socketio",
            Protocol::SwitchboardSocketio => "switchboard-socketio",
        }
    }

    /// The conversation or room name of the bench's `k`-th room of run `tag` (Socket.IO rooms
    /// are just names; Switchboard rooms are created with [`Protocol::create_room`]).
    pub fn local_room(self, tag: &str, k: usize) -> String {
        format!("room:bench-{tag}-{k}")
    }

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

    /// A publish of `body` to room `conv` as the frame this protocol sends (request id `id`):
    /// a `publish` frame, or a Socket.IO `pub` event with an acknowledgement.
    pub fn pub_frame(self, conv: &str, body: &str, id: u64) -> String {
        match self {
            Protocol::Switchboard => {
                format!(r#"{{"type":"publish","id":{id},"conv":"{conv}","body":{body}}}"#)
            }
            Protocol::Socketio => format!(r#"42{id}["pub",{{"room":"{conv}","body":{body}}}]"#),
            Protocol::SwitchboardSocketio => {
                format!(r#"42{id}["publish",{{"conv":"{conv}","body":{body}}}]"#)
            }
        }
    }

    /// The answer to a publish in `text`, if it is one: Switchboard's `published` (with the
    /// conversation and seq) or `error` with an id, a Socket.IO acknowledgement (`43<id>[...]`).
    pub fn answer(self, text: &str) -> Option<Answer> {
        match self {
            Protocol::Switchboard => {
                let ok = text.starts_with(r#"{"type":"published""#);
                if !ok && !text.starts_with(r#"{"type":"error""#) {
                    return None;
                }
                let id = u64::try_from(number_after(text, "\"id\":")?).ok()?;
                Some(Answer {
                    id,
                    ok,
                    conv: if ok {
                        string_after(text, "\"conv\":").map(str::to_owned)
                    } else {
                        None
                    },
                    seq: if ok {
                        number_after(text, "\"seq\":").map(|s| s.max(0) as u64)
                    } else {
                        None
                    },
                })
            }
            Protocol::Socketio => {
                let rest = text.strip_prefix("43")?;
                let end = rest.find(|c: char| !c.is_ascii_digit())?;
                Some(Answer {
                    id: rest[..end].parse().ok()?,
                    ok: true,
                    conv: None,
                    seq: None,
                })
            }
            Protocol::SwitchboardSocketio => {
                let rest = text.strip_prefix("43")?;
                let end = rest.find(|c: char| !c.is_ascii_digit())?;
                let ok = !rest[end..].starts_with(r#"[{"error""#);
                Some(Answer {
                    id: rest[..end].parse().ok()?,
                    ok,
                    conv: if ok {
                        string_after(rest, "\"conv\":").map(str::to_owned)
                    } else {
                        None
                    },
                    seq: if ok {
                        number_after(rest, "\"seq\":").map(|s| s.max(0) as u64)
                    } else {
                        None
                    },
                })
            }
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

    /// The WebSocket path, with the token where the protocol wants it.
    pub fn ws_path(self, token: &str) -> String {
        match self {
            Protocol::Switchboard => format!("/v1/ws?token={}", encode_component(token)),
            Protocol::Socketio | Protocol::SwitchboardSocketio => {
                "/socket.io/?EIO=4&transport=websocket".to_owned()
            }
        }
    }

    /// Completes authentication on a fresh WebSocket: waits for Switchboard's unasked `welcome`,
    /// or does Engine.IO open + Socket.IO connect with the token as auth payload.
    pub async fn handshake(self, ws: &mut Ws, token: &str) -> Result<()> {
        match self {
            Protocol::Switchboard => {
                let t = next_text(ws, REPLY_WAIT).await?;
                if t.contains(r#""type":"welcome""#) {
                    Ok(())
                } else {
                    Err(BenchError::Protocol(format!("expected welcome, got {t}")))
                }
            }
            Protocol::Socketio | Protocol::SwitchboardSocketio => {
                let open = next_text(ws, REPLY_WAIT).await?;
                if !open.starts_with('0') {
                    return Err(BenchError::Protocol(format!(
                        "expected an Engine.IO open packet, got {open}"
                    )));
                }
                send_text(ws, format!(r#"40{{"token":"{token}"}}"#)).await?;
                loop {
                    let t = next_text(ws, REPLY_WAIT).await?;
                    if t.starts_with("40") {
                        return Ok(());
                    } else if t == "2" {
                        send_text(ws, "3".into()).await?;
                    } else if t.starts_with("44") {
                        return Err(BenchError::Protocol(format!("connect refused: {t}")));
                    }
                }
            }
        }
    }

    /// Subscribes to (joins) `conv` and waits for the server's answer to request `id`.
    pub async fn subscribe(self, ws: &mut Ws, conv: &str, id: u64) -> Result<()> {
        match self {
            Protocol::Switchboard => {
                send_text(
                    ws,
                    format!(r#"{{"type":"subscribe","id":{id},"conv":"{conv}"}}"#),
                )
                .await?;
                let ok = format!(r#""type":"subscribed","id":{id},"#);
                let err = format!(r#""id":{id},"#);
                loop {
                    let t = next_text(ws, REPLY_WAIT).await?;
                    if t.contains(&ok) {
                        return Ok(());
                    }
                    if t.contains(r#""type":"error""#) && t.contains(&err) {
                        return Err(BenchError::Protocol(format!("subscribe {conv}: {t}")));
                    }
                }
            }
            Protocol::Socketio | Protocol::SwitchboardSocketio => {
                let event = if self == Protocol::Socketio {
                    "sub"
                } else {
                    "subscribe"
                };
                send_text(ws, format!(r#"42{id}["{event}","{conv}"]"#)).await?;
                let ack = format!("43{id}[");
                loop {
                    let t = next_text(ws, REPLY_WAIT).await?;
                    if t.starts_with(&ack) {
                        return Ok(());
                    } else if t == "2" {
                        send_text(ws, "3".into()).await?;
                    }
                }
            }
        }
    }

    /// A direct message to user `to` as the frame this protocol sends (request id `id`).
    pub fn dm_frame(self, to: &str, body: &str, id: u64) -> String {
        match self {
            Protocol::Switchboard => {
                format!(r#"{{"type":"publish","id":{id},"conv":"user:{to}","body":{body}}}"#)
            }
            Protocol::Socketio => format!(r#"42{id}["dm",{{"to":"{to}","body":{body}}}]"#),
            Protocol::SwitchboardSocketio => {
                format!(r#"42{id}["publish",{{"conv":"user:{to}","body":{body}}}]"#)
            }
        }
    }

    /// Says what a frame from the server is.
    pub fn classify(self, text: &str) -> Incoming {
        match self {
            Protocol::Switchboard => {
                if text.starts_with(r#"{"type":"message""#) {
                    delivery(text).unwrap_or(Incoming::Other)
                } else if text.starts_with(r#"{"type":"published""#) {
                    Incoming::Ack
                } else if text.starts_with(r#"{"type":"error""#) {
                    Incoming::Error(text.to_owned())
                } else if text.starts_with(r#"{"type":"disconnect""#) {
                    Incoming::Closed(text.to_owned())
                } else {
                    // Frames whose keys come in another order than the server writes today.
                    match serde_json::from_str::<serde_json::Value>(text) {
                        Ok(v) => match v["type"].as_str() {
                            Some("message") => delivery(text).unwrap_or(Incoming::Other),
                            Some("published") => Incoming::Ack,
                            Some("error") => Incoming::Error(text.to_owned()),
                            Some("disconnect") => Incoming::Closed(text.to_owned()),
                            _ => Incoming::Other,
                        },
                        Err(_) => Incoming::Other,
                    }
                }
            }
            Protocol::Socketio | Protocol::SwitchboardSocketio => {
                if text == "2" {
                    Incoming::Ping
                } else if text.starts_with(r#"42["switchboard:disconnect""#) {
                    Incoming::Closed(text.to_owned())
                } else if text.starts_with("42") {
                    delivery(text).unwrap_or(Incoming::Other)
                } else if text.starts_with("43") {
                    Incoming::Ack
                } else if text.starts_with("44") {
                    Incoming::Error(text.to_owned())
                } else if text.starts_with("41") || text == "1" {
                    Incoming::Closed(text.to_owned())
                } else {
                    Incoming::Other
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn switchboard_frames() {
        let b = body(1_700_000_000_000_123, 7, "xx");
        let msg = format!(
            r#"{{"type":"message","conv":"user:u1","seq":3,"message_id":"m_1","from":"u7","to":"u1","ts":1,"client_msg_id":null,"body":{b}}}"#
        );
        assert_eq!(
            Protocol::Switchboard.classify(&msg),
            Incoming::Delivery {
                ts_us: 1_700_000_000_000_123,
                src: Some(7)
            }
        );
        let server = format!(
            r#"{{"type":"message","conv":"room:r","seq":1,"body":{}}}"#,
            body(5, -1, "")
        );
        assert_eq!(
            Protocol::Switchboard.classify(&server),
            Incoming::Delivery {
                ts_us: 5,
                src: None
            }
        );
        assert_eq!(
            Protocol::Switchboard.classify(r#"{"type":"published","id":4,"conv":"user:x"}"#),
            Incoming::Ack
        );
        assert!(matches!(
            Protocol::Switchboard.classify(r#"{"type":"disconnect","reason":"slow_consumer"}"#),
            Incoming::Closed(_)
        ));
        assert!(matches!(
            Protocol::Switchboard.classify(r#"{"id":null,"type":"error","code":"x"}"#),
            Incoming::Error(_)
        ));
    }

    #[test]
    fn socketio_packets() {
        let p = Protocol::Socketio;
        assert_eq!(p.classify("2"), Incoming::Ping);
        assert_eq!(p.classify(r#"431[{"ok":true}]"#), Incoming::Ack);
        assert_eq!(
            p.classify(&format!(
                r#"42["message",{{"room":"room:a","body":{}}}]"#,
                body(99, 3, "")
            )),
            Incoming::Delivery {
                ts_us: 99,
                src: Some(3)
            }
        );
        assert!(matches!(p.classify("41"), Incoming::Closed(_)));
        assert!(matches!(
            p.classify(r#"44{"message":"unauthorized"}"#),
            Incoming::Error(_)
        ));
        assert_eq!(
            p.dm_frame("u2", "{}", 9),
            r#"429["dm",{"to":"u2","body":{}}]"#
        );
        assert_eq!(
            p.pub_frame("room:a", "{}", 12),
            r#"4212["pub",{"room":"room:a","body":{}}]"#
        );
        assert_eq!(
            p.answer(r#"4312[{"ok":true}]"#),
            Some(Answer {
                id: 12,
                ok: true,
                conv: None,
                seq: None
            })
        );
        assert_eq!(p.answer(r#"42["message",{}]"#), None);
    }

    #[test]
    fn switchboard_answers() {
        let p = Protocol::Switchboard;
        assert_eq!(
            p.answer(
                r#"{"type":"published","id":7,"conv":"user:b1","seq":42,"message_id":"m","ts":1}"#
            ),
            Some(Answer {
                id: 7,
                ok: true,
                conv: Some("user:b1".into()),
                seq: Some(42)
            })
        );
        assert_eq!(
            p.answer(r#"{"type":"error","id":8,"code":"rate_limited","message":"x"}"#),
            Some(Answer {
                id: 8,
                ok: false,
                conv: None,
                seq: None
            })
        );
        assert_eq!(
            p.answer(r#"{"type":"message","conv":"room:a","seq":1}"#),
            None
        );
        assert_eq!(
            conv_seq(r#"{"type":"message","conv":"room:r_1","seq":3,"body":{}}"#),
            Some(("room:r_1", 3))
        );
    }

    #[test]
    fn switchboard_socketio_speaks_the_endpoints_events() {
        let p = Protocol::SwitchboardSocketio;
        assert_eq!(
            p.pub_frame("room:r_1", "{}", 3),
            r#"423["publish",{"conv":"room:r_1","body":{}}]"#
        );
        assert_eq!(
            p.dm_frame("b1", "{}", 4),
            r#"424["publish",{"conv":"user:b1","body":{}}]"#
        );
        assert_eq!(
            p.answer(r#"433[{"conv":"room:r_1","message_id":"m","seq":9,"ts":1}]"#),
            Some(Answer {
                id: 3,
                ok: true,
                conv: Some("room:r_1".into()),
                seq: Some(9)
            })
        );
        assert_eq!(
            p.answer(r#"434[{"error":{"code":"rate_limited","message":"x"}}]"#),
            Some(Answer {
                id: 4,
                ok: false,
                conv: None,
                seq: None
            })
        );
        let msg = format!(
            r#"42["message",{{"conv":"room:r_1","seq":2,"body":{}}},"2"]"#,
            body(77, 5, "")
        );
        assert_eq!(
            p.classify(&msg),
            Incoming::Delivery {
                ts_us: 77,
                src: Some(5)
            }
        );
        assert!(matches!(
            p.classify(r#"42["switchboard:disconnect",{"reason":"kicked"}]"#),
            Incoming::Closed(_)
        ));
    }
}
