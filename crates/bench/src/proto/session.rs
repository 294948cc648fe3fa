//! Opening a client's WebSocket session: the path with its token, the handshake, and
//! subscriptions.

use super::{Protocol, REPLY_WAIT};
use crate::error::{BenchError, Result};
use crate::http::encode_component;
use crate::ws::{Ws, next_text, send_text};

impl Protocol {
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
}
