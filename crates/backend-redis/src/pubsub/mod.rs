//! The bus: one task owns the pub/sub connection and everything about it.
//!
//! It subscribes to the control channel and to the channel of each conversation this node has an
//! interest in (requests come over a channel; `subscribe` returns only after Redis confirmed the
//! SUBSCRIBE; a burst of requests shares one head read and one SUBSCRIBE). It forwards messages
//! to [`BusSink::deliver`](switchboard_core::backend::BusSink) and control events to `control`.
//!
//! Redis pub/sub does not keep what is published while a subscriber is disconnected. So for each
//! conversation the task remembers the last seq it delivered (starting from the head read just
//! before subscribing), and:
//! - when the connection drops, it reconnects with backoff, subscribes again, then reads each
//!   conversation's stream after that seq and delivers what was missed, in order;
//! - when a message arrives with a seq beyond the next one, it reads the missing ones first;
//! - a message at or below that seq (already delivered from the stream) is dropped.
//!
//! Duplicates across a reconnect are possible in principle and harmless (sessions drop repeats by
//! seq); gaps are not possible while the stream still holds the messages.
//!
//! This file holds the task's loop (connect, serve, reconnect) and what it shares with its parts;
//! [`connection`] opens and serves one connection, [`requests`] answers subscribe and
//! unsubscribe requests, [`delivery`] delivers in seq order and fills gaps.

mod connection;
mod delivery;
mod requests;

pub(crate) use delivery::{catch_up, flush, gather_message};
pub(crate) use requests::{Ack, wanted};

use crate::Shared;
use crate::error;
use connection::{open, serve};
use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};
use switchboard_core::backend::BackendError;
use switchboard_proto::Conv;
use switchboard_proto::backoff::Backoff;
use tokio::sync::{mpsc, oneshot};

/// Ceiling of the first reconnect delay; doubles up to [`MAX_BACKOFF`] (full jitter, never
/// under half of this, so that nodes do not reconnect in step nor spin).
const MIN_BACKOFF: Duration = Duration::from_millis(100);
/// Longest reconnect delay.
const MAX_BACKOFF: Duration = Duration::from_secs(2);
/// Channels per SUBSCRIBE when subscribing again after a reconnect.
const SUBSCRIBE_CHUNK: usize = 500;
/// Messages per XRANGE when filling a gap.
const FILL_BATCH: usize = 500;
/// Requests handled together (one pipelined head read and one SUBSCRIBE for a burst).
pub(crate) const COMMAND_BATCH: usize = 500;
/// Conversations whose gaps are read in one pipeline after a reconnect.
const RESUME_CHUNK: usize = 100;
/// Pub/sub messages already read that are handed to the hub together, at most.
pub(crate) const DELIVERY_BATCH: usize = 256;

/// A request to the task.
pub(crate) enum Command {
    /// Start receiving a conversation; answered once Redis confirmed.
    Subscribe {
        conv: Conv,
        /// After this the caller has given up: do nothing.
        deadline: Instant,
        ack: oneshot::Sender<Result<(), BackendError>>,
    },
    /// Stop receiving it; answered at once (later messages of it are dropped).
    Unsubscribe {
        conv: Conv,
        ack: oneshot::Sender<Result<(), BackendError>>,
    },
}

/// Asks the task to subscribe to or unsubscribe from `conv` and waits for its answer.
pub(crate) async fn request(s: &Shared, conv: &Conv, subscribe: bool) -> Result<(), BackendError> {
    let (ack, answer) = oneshot::channel();
    // Room for the head read and the SUBSCRIBE, each bounded by the response timeout.
    let wait = s.redis.timeout() * 2 + Duration::from_millis(200);
    let cmd = if subscribe {
        Command::Subscribe {
            conv: conv.clone(),
            deadline: Instant::now() + wait,
            ack,
        }
    } else {
        Command::Unsubscribe {
            conv: conv.clone(),
            ack,
        }
    };
    s.pubsub.send(cmd).map_err(|_| error::closed())?;
    match tokio::time::timeout(wait, answer).await {
        Ok(Ok(r)) => r,
        Ok(Err(_)) => Err(error::closed()),
        Err(_) => Err(error::timed_out(s.redis.url(), "subscribe", wait)),
    }
}

/// The conversations this node receives.
#[derive(Default)]
pub(crate) struct Interest {
    /// Conversation -> the last seq delivered to the sink.
    pub(crate) last: HashMap<Conv, u64>,
    /// Channel name -> conversation.
    pub(crate) channels: HashMap<String, Conv>,
}

impl Interest {
    pub(crate) fn add(&mut self, conv: Conv, channel: String, last: u64) {
        self.last.insert(conv.clone(), last);
        self.channels.insert(channel, conv);
    }

    /// Forgets `conv`; returns its channel if it was there.
    pub(crate) fn remove(&mut self, s: &Shared, conv: &Conv) -> Option<String> {
        self.last.remove(conv)?;
        let channel = s.keys.channel(conv);
        self.channels.remove(&channel);
        Some(channel)
    }
}

/// Why [`serve`] returned.
enum Ended {
    Shutdown,
    Lost(String),
}

/// The task: connect, serve, and on loss reconnect with backoff, until cancelled. `up` is
/// answered after the first connection attempt (the backend's `connect` waits for it).
pub(crate) async fn run(
    s: Arc<Shared>,
    mut rx: mpsc::UnboundedReceiver<Command>,
    up: oneshot::Sender<Result<(), BackendError>>,
) {
    let mut interest = Interest::default();
    let mut up = Some(up);
    let mut backoff = Backoff::new(MIN_BACKOFF, MAX_BACKOFF).with_floor(MIN_BACKOFF / 2);
    loop {
        let opened = tokio::select! {
            _ = s.cancel.cancelled() => return,
            r = open(&s, &mut interest) => r,
        };
        match opened {
            Ok((sink, stream)) => {
                s.health.pubsub_up.store(true, Ordering::SeqCst);
                if let Some(up) = up.take() {
                    let _ = up.send(Ok(()));
                } else {
                    tracing::info!(url = %s.redis.url(), "Redis pub/sub connection restored");
                }
                backoff.reset();
                let ended = serve(&s, &mut interest, &mut rx, sink, stream).await;
                s.health.pubsub_up.store(false, Ordering::SeqCst);
                match ended {
                    Ended::Shutdown => return,
                    Ended::Lost(why) => {
                        tracing::warn!(url = %s.redis.url(), reason = %why, "Redis pub/sub connection lost; reconnecting");
                    }
                }
            }
            Err(e) => {
                if let Some(up) = up.take() {
                    let _ = up.send(Err(e));
                    return;
                }
                tracing::debug!(error = %e, "Redis pub/sub reconnect failed");
            }
        }
        if !wait(&s, &mut interest, &mut rx, backoff.next_delay()).await {
            return;
        }
    }
}

/// Waits `delay` before the next connection attempt, answering requests meanwhile: subscribes
/// fail (`Unavailable`), unsubscribes succeed. `false` when the backend stops.
async fn wait(
    s: &Shared,
    interest: &mut Interest,
    rx: &mut mpsc::UnboundedReceiver<Command>,
    delay: Duration,
) -> bool {
    let sleep = tokio::time::sleep(delay);
    tokio::pin!(sleep);
    loop {
        tokio::select! {
            _ = s.cancel.cancelled() => return false,
            _ = &mut sleep => return true,
            cmd = rx.recv() => match cmd {
                None => return false,
                Some(Command::Subscribe { ack, .. }) => {
                    let _ = ack.send(Err(BackendError::Unavailable(format!(
                        "Redis at {}: the pub/sub connection is down",
                        s.redis.url()
                    ))));
                }
                Some(Command::Unsubscribe { conv, ack }) => {
                    interest.remove(s, &conv);
                    let _ = ack.send(Ok(()));
                }
            },
        }
    }
}
