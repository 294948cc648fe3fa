//! One client frame: size and parse checks, the frame rate, dispatch, and the requests that
//! need no subscription of their own (publish, history, presence).

use super::{BAD_FRAME_WINDOW, BadFrames, End, Fail, MAX_BAD_FRAMES, Session, pipeline};
use crate::backend::HistoryQuery;
use crate::error::Error;
use crate::node::{Publisher, clamp_limit};
use crate::transport::{Refused, Transport};
use bytes::Bytes;
use switchboard_proto::conv::ConvKind;
use switchboard_proto::frame::{ClientFrame, RequestId, parse_client_frame};
use switchboard_proto::{Conv, DisconnectReason, ErrorCode, MessageBody, ServerFrame};
use tokio::time::Instant;

impl<T: Transport> Session<T> {
    /// A frame over the size limit: an error reply, and it counts as a bad frame.
    pub(super) async fn on_too_large(&mut self, size: usize) -> Result<(), End> {
        // Replies stay in request order: publishes before this one are answered first.
        self.settle_publishes().await?;
        let max = self.subs.node.limits.max_frame_bytes;
        self.reply_error(
            None,
            Error::new(
                ErrorCode::TooLarge,
                format!("frame of {size} bytes is over the {max}-byte limit"),
            ),
        )
        .await?;
        self.count_bad_frame()
    }

    /// A request the transport refused: its error answer. It counts against the frame rate
    /// as any frame does (not as a bad frame: it was well formed, only not one this node
    /// serves, such as an app's own Socket.IO event).
    pub(super) async fn on_refused(&mut self, refused: Refused) -> Result<(), End> {
        // Replies stay in request order: publishes before this one are answered first.
        self.settle_publishes().await?;
        let Refused { id, code, message } = refused;
        let e = if self.frame_bucket.try_take() {
            Error::new(code, message)
        } else {
            Error::new(ErrorCode::RateLimited, "too many frames")
        };
        Box::pin(self.reply_error(id, e)).await
    }

    /// Too many bad frames in a window end the connection.
    fn count_bad_frame(&mut self) -> Result<(), End> {
        let now = Instant::now();
        let bad = self.bad_frames.get_or_insert_with(|| {
            Box::new(BadFrames {
                count: 0,
                window: now,
            })
        });
        if now.duration_since(bad.window) > BAD_FRAME_WINDOW {
            bad.window = now;
            bad.count = 0;
        }
        bad.count += 1;
        if bad.count > MAX_BAD_FRAMES {
            return Err(End::Disconnect(DisconnectReason::ProtocolError));
        }
        Ok(())
    }

    /// One complete frame from the client.
    pub(super) async fn on_frame(&mut self, bytes: Bytes) -> Result<(), End> {
        if bytes.len() > self.subs.node.limits.max_frame_bytes {
            return Box::pin(self.on_too_large(bytes.len())).await;
        }
        let (id, frame) = match parse_client_frame(&bytes) {
            Ok(parsed) => parsed,
            Err(fe) => {
                self.settle_publishes().await?;
                Box::pin(self.reply_error(fe.id, Error::bad_request(fe.message))).await?;
                return self.count_bad_frame();
            }
        };
        // Replies stay in request order: publishes before this one are answered first (a
        // publish is answered in line with them, unless it is refused here).
        let limited = !self.frame_bucket.try_take();
        if limited || !matches!(frame, ClientFrame::Publish { .. }) {
            self.settle_publishes().await?;
        }
        if limited {
            let e = Error::new(ErrorCode::RateLimited, "too many frames");
            return Box::pin(self.reply_error(id, e)).await;
        }
        // The session boxes this future for every frame it reads. With every request's handling
        // awaited in it, it was 2,360 bytes, above glibc's per-thread cache (1,032), and each of
        // its allocations took a slow path (about 1,000 instructions in `malloc` alone,
        // callgrind); with only a publish's, rustc still laid that beside the rest (1,168). So
        // a request's handling is boxed on its own: a publish's in 704 bytes, the rest (2 KB)
        // only when one comes; this future is 704 (`size_tests`), the error replies boxed too.
        let handled = match frame {
            ClientFrame::Publish {
                conv,
                body,
                client_msg_id,
            } => match self.user_id() {
                Ok(user_id) => {
                    Box::pin(self.publish(id, &user_id, conv, body, client_msg_id)).await;
                    return Ok(());
                }
                Err(e) => Err(e),
            },
            frame => Box::pin(self.handle(id.clone(), frame)).await,
        };
        match handled {
            Ok(()) => Ok(()),
            Err(Fail::Reply(e)) => Box::pin(self.reply_error(id, e)).await,
            Err(Fail::End(e)) => Err(e),
        }
    }

    /// The authenticated user a request runs as (every request but ping, pong and auth).
    fn user_id(&self) -> Result<std::sync::Arc<str>, Fail> {
        match self.subs.entry() {
            Some(entry) => Ok(entry.user_id.clone()),
            None => Err(Error::unauthorized("send an auth frame first").into()),
        }
    }

    /// A publish by `user_id`: in line for its answer, then queued for the store. Its answer,
    /// a refusal too, comes in line (see `pipeline`).
    pub(super) async fn publish(
        &mut self,
        id: Option<RequestId>,
        user_id: &str,
        conv: Conv,
        body: MessageBody,
        client_msg_id: Option<String>,
    ) {
        // A direct message is also stored in the sender's own stream.
        let copy =
            (conv.kind() == ConvKind::User && conv.id() != user_id).then(|| Conv::user(user_id));
        let targets = [Some(conv.clone()), copy];
        // In line (and deliveries held) before the append is queued, so the sender's
        // own copy cannot overtake the answer (see `pipeline`).
        let (line, n) = self.line_up(id, targets);
        // Answered in the order sent, refused or once stored: where the commit
        // completes, or by the loop when it could not be written there.
        let done = pipeline::completion(line, n);
        if self.publish_bucket.try_take() {
            self.subs
                .node
                .queue_publish_then(Publisher::User(user_id), conv, body, client_msg_id, done)
                .await;
        } else {
            done(Err(Error::new(
                ErrorCode::RateLimited,
                "publish rate limit exceeded",
            )));
        }
    }

    /// Dispatches a parsed frame; only `auth`, `ping` and `pong` are taken before auth.
    async fn handle(&mut self, id: Option<RequestId>, frame: ClientFrame) -> Result<(), Fail> {
        let user_id = match (self.subs.entry(), &frame) {
            (_, ClientFrame::Ping) => return Ok(self.reply(ServerFrame::Pong { id }).await?),
            (_, ClientFrame::Pong) => return Ok(()),
            (None, ClientFrame::Auth { .. }) => "".into(),
            (Some(_), ClientFrame::Auth { .. }) => {
                return Err(Error::bad_request("already authenticated").into());
            }
            (_, _) => self.user_id()?,
        };
        match frame {
            ClientFrame::Auth { token, resume } => {
                let principal = match self.subs.node.authenticate(&token).await {
                    Ok(p) => p,
                    Err(e) => {
                        self.reply_error(id, e).await?;
                        return Err(End::Close.into());
                    }
                };
                self.authenticate(id, principal, resume).await
            }
            ClientFrame::Subscribe { conv, since, epoch } => {
                self.subscribe(id, &user_id, conv, since, epoch).await
            }
            ClientFrame::Unsubscribe { conv } => {
                if self.subs.conn.is_subscribed(&conv) {
                    self.subs.detach(&conv).await;
                }
                let reply = ServerFrame::Unsubscribed {
                    id,
                    conv,
                    reason: None,
                };
                Ok(self.reply(reply).await?)
            }
            ClientFrame::Publish {
                conv,
                body,
                client_msg_id,
            } => {
                self.publish(id, &user_id, conv, body, client_msg_id).await;
                Ok(())
            }
            ClientFrame::History {
                conv,
                after,
                before,
                limit,
            } => {
                let limit = clamp_limit(limit)?;
                let query = HistoryQuery {
                    after,
                    before,
                    limit,
                };
                let page = self.subs.node.history(&user_id, &conv, query).await?;
                let reply = ServerFrame::History {
                    id,
                    conv,
                    messages: page.messages,
                    more: page.more,
                };
                Ok(self.reply(reply).await?)
            }
            ClientFrame::Presence { conv } => {
                let users = self.subs.node.presence(&user_id, &conv).await?;
                Ok(self
                    .reply(ServerFrame::Presence { id, conv, users })
                    .await?)
            }
            ClientFrame::Ping | ClientFrame::Pong => Ok(()),
        }
    }
}
