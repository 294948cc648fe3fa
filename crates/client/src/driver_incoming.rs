//! The driver's handling of what the server sends on a live connection: messages through the
//! tracker (and the fills and resumes it asks for), replies routed to the requests waiting for
//! them, subscription ends, and frames that could not be read.

use super::{After, Driver, MAX_UNREADABLE, Pending, Waiter};
use crate::connect::{numeric_id, server_error};
use crate::link::Link;
use crate::tracker::{Action, FILL_PAGE};
use crate::{ClientError, Event, Message, Request, lock};
use serde_json::{Value, json};
use std::time::Duration;
use switchboard_proto::{DisconnectReason, ErrorCode, FrameError, ServerFrame};

/// Disconnect reasons after which reconnecting cannot help.
const FINAL_REASONS: [DisconnectReason; 3] = [
    DisconnectReason::LoggedOut,
    DisconnectReason::Kicked,
    DisconnectReason::AuthExpired,
];

/// Error codes that say the server could not serve a request right now (storage away,
/// overloaded), rather than that it never will.
const TRANSIENT: [ErrorCode; 4] = [
    ErrorCode::Unavailable,
    ErrorCode::Internal,
    ErrorCode::Overloaded,
    ErrorCode::RateLimited,
];

/// Whether `code` (an error frame's code) is one of [`TRANSIENT`].
fn transient(code: &str) -> bool {
    TRANSIENT.iter().any(|c| c.as_str() == code)
}

impl Driver {
    /// One server frame. `Some` when the connection must end.
    pub(super) async fn on_frame(
        &mut self,
        link: &Link,
        f: ServerFrame,
        auth_id: u64,
    ) -> Option<After> {
        match f {
            ServerFrame::Message(m) => {
                let m = self.readable(&m);
                let actions = lock(&self.shared).tracker.on_message(m);
                self.apply(link, actions).await;
                None
            }
            ServerFrame::Ping {} => {
                link.send(&json!({"type": "pong"})).await;
                None
            }
            ServerFrame::Reconnect { reason, delay_ms } => Some(After::Reconnect {
                delay: Duration::from_millis(delay_ms),
                reason,
            }),
            ServerFrame::Disconnect { reason } => {
                let final_ = FINAL_REASONS.contains(&reason);
                let reason = reason.as_str().to_owned();
                if final_ {
                    Some(After::Final(reason))
                } else {
                    Some(self.reconnect(reason))
                }
            }
            ServerFrame::Unsubscribed {
                id: None,
                conv,
                reason,
            } => {
                // The server ended a subscription (e.g. removed from a private room).
                let reason = reason.unwrap_or_else(|| "unsubscribed".into());
                self.forget(conv.as_str(), reason).await;
                None
            }
            f => {
                let id = numeric_id(f.id());
                if let Some(p) = id.and_then(|id| self.inflight.remove(&id)) {
                    self.on_reply(link, p, Ok(f)).await;
                    if let Some(reason) = self.resync.take() {
                        return Some(self.reconnect(reason));
                    }
                } else if let ServerFrame::Error {
                    code,
                    message,
                    conv,
                    ..
                } = &f
                {
                    // A resumed conversation that could not be subscribed again: answering
                    // the `auth` frame, or, on long-polling (whose session is opened with the
                    // resume, no `auth` frame), without an id but with its `conv`. Servers
                    // before the `conv` field only named it at the start of the message.
                    let refused_resume = match (f.id(), conv) {
                        (None, Some(c)) => Some(Some(c.as_str())),
                        _ if id == Some(auth_id) => Some(match conv {
                            Some(c) => Some(c.as_str()),
                            None => message.split_once(": ").map(|(c, _)| c),
                        }),
                        _ => None,
                    };
                    if let Some(conv) = refused_resume {
                        if let Some(conv) = conv {
                            if transient(code.as_str()) {
                                // The server could not reach its storage (say, Redis
                                // restarting): the conversation is still ours. Forgetting it
                                // would lose every later message; resume it again on a new
                                // connection after the backoff.
                                return Some(self.reconnect(format!(
                                    "resume of {conv} failed: {}",
                                    code.as_str()
                                )));
                            }
                            self.forget(conv, code.as_str().to_owned()).await;
                        }
                    } else {
                        tracing::warn!(code = code.as_str(), %message, "error from the server");
                    }
                }
                None
            }
        }
    }

    /// A message for the tracker. One whose body cannot be read gets a null body and is
    /// remembered, to come out as [`Event::Unreadable`] in its place: never dropped silently.
    fn readable(&mut self, m: &switchboard_proto::Message) -> Message {
        match Message::from_wire(m) {
            Ok(m) => m,
            Err(e) => {
                tracing::warn!(error = %e, conv = %m.conv, seq = m.seq, "unreadable message body");
                if self.unreadable.len() >= MAX_UNREADABLE {
                    self.unreadable.pop_first();
                }
                self.unreadable
                    .insert((m.conv.to_string(), m.seq), e.to_string());
                Message::with_body(m, Value::Null)
            }
        }
    }

    /// A frame that could not be decoded: logged, and the request it answers (when its id
    /// could be read) fails instead of waiting for its timeout.
    pub(super) async fn on_unreadable(&mut self, link: &Link, e: FrameError) {
        tracing::warn!(error = %e, id = ?e.id, "unreadable server frame");
        if let Some(p) = numeric_id(e.id.as_ref()).and_then(|id| self.inflight.remove(&id)) {
            let error = ClientError::Protocol(format!("unreadable answer: {e}"));
            self.on_reply(link, p, Err(error)).await;
        }
    }

    async fn forget(&mut self, conv: &str, reason: String) {
        let tracked = {
            let mut s = lock(&self.shared);
            let t = s.tracker.is_tracked(conv);
            s.tracker.remove(conv);
            t
        };
        if tracked {
            self.emit(Event::Unsubscribed {
                conv: conv.to_owned(),
                reason,
            })
            .await;
        }
    }

    /// The answer to a request: an `error` frame is a failure like an unreadable answer.
    pub(super) async fn on_reply(
        &mut self,
        link: &Link,
        p: Pending,
        answer: Result<ServerFrame, ClientError>,
    ) {
        let answer = match answer {
            Ok(ServerFrame::Error { code, message, .. }) => Err(server_error(code, &message)),
            other => other,
        };
        match (&p.req, &p.waiter, &answer) {
            (
                Request::Subscribe { conv },
                _,
                Ok(ServerFrame::Subscribed {
                    head_seq, epoch, ..
                }),
            ) => {
                lock(&self.shared)
                    .tracker
                    .on_subscribed(conv, *head_seq, epoch);
                if self.own_conv.as_deref() == Some(conv.as_str()) {
                    self.own_wanted = true;
                }
            }
            (Request::Unsubscribe { conv }, Waiter::App(_), Ok(_)) => {
                lock(&self.shared).tracker.remove(conv);
                if self.own_conv.as_deref() == Some(conv.as_str()) {
                    self.own_wanted = false;
                }
            }
            (_, Waiter::Fill(conv), _) => {
                let actions = match &answer {
                    Ok(ServerFrame::History { messages, more, .. }) => {
                        let page = messages.iter().map(|m| self.readable(m)).collect();
                        lock(&self.shared).tracker.on_fill(conv, page, *more)
                    }
                    Err(ClientError::Server { code, .. }) if transient(code) => {
                        // History is there but could not be read just now (say, Redis
                        // restarting): accepting the jump would lose the gap for good. A new
                        // connection resumes from the last message delivered, and the server
                        // replays the gap.
                        self.resync = Some(format!("gap fill of {conv} failed: {code}"));
                        Vec::new()
                    }
                    other => {
                        tracing::warn!(%conv, answer = ?other, "gap fill failed");
                        lock(&self.shared).tracker.on_fill_failed(conv)
                    }
                };
                self.apply(link, actions).await;
            }
            _ => {}
        }
        match p.waiter {
            Waiter::App(tx) => {
                let _ = tx.send(answer);
            }
            Waiter::Setup => {
                if let Err(e) = &answer {
                    tracing::warn!(error = %e, "could not subscribe to the own stream");
                }
                if let Some(ready) = self.ready.take() {
                    let _ = ready.send(Ok(()));
                }
            }
            Waiter::Fill(_) | Waiter::Nobody => {}
        }
    }

    async fn apply(&mut self, link: &Link, actions: Vec<Action>) {
        for a in actions {
            match a {
                Action::Deliver(m) => {
                    let event = match self.unreadable.remove(&(m.conv.clone(), m.seq)) {
                        Some(error) => Event::Unreadable {
                            conv: m.conv,
                            seq: m.seq,
                            error,
                        },
                        None => Event::Message(m),
                    };
                    self.emit(event).await
                }
                Action::Fetch {
                    conv,
                    after,
                    before,
                } => {
                    tracing::debug!(%conv, after, before, "seq jump; filling the gap from history");
                    let req = Request::History {
                        conv: conv.clone(),
                        after: Some(after),
                        before: Some(before),
                        limit: Some(FILL_PAGE),
                    };
                    self.send_request(
                        link,
                        Pending {
                            req,
                            waiter: Waiter::Fill(conv),
                        },
                    )
                    .await;
                }
            }
        }
    }
}
