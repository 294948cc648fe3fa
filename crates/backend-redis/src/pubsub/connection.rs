//! One pub/sub connection: opened (subscribing to the control channel and every channel of
//! interest, then delivering what was missed), then served until it is lost or the backend
//! stops.

use super::DELIVERY_BATCH;
use super::delivery::{flush, gather_message, resume_all};
use super::requests::commands;
use super::{COMMAND_BATCH, Command, Ended, Interest, SUBSCRIBE_CHUNK};
use crate::Shared;
use crate::error;
use futures_util::{FutureExt, StreamExt};
use redis::aio::{PubSubSink, PubSubStream};
use std::time::Duration;
use switchboard_core::backend::BackendError;
use tokio::sync::mpsc;

/// Opens the connection, subscribes to the control channel and every channel of interest, then
/// delivers what was published while disconnected.
pub(super) async fn open(
    s: &Shared,
    interest: &mut Interest,
) -> Result<(PubSubSink, PubSubStream), BackendError> {
    let t = s.redis.timeout();
    let url = s.redis.url();
    let client = s.redis.client().ok_or_else(|| {
        BackendError::Internal("the one-server pub/sub task runs on a cluster".into())
    })?;
    let pubsub = tokio::time::timeout(t, client.get_async_pubsub())
        .await
        .map_err(|_| error::timed_out(url, "opening the pub/sub connection", t))?
        .map_err(|e| error::map(url, "opening the pub/sub connection", e))?;
    let (mut sink, stream) = pubsub.split();
    let mut channels = vec![s.keys.control()];
    channels.extend(interest.channels.keys().cloned());
    for chunk in channels.chunks(SUBSCRIBE_CHUNK) {
        tokio::time::timeout(t, sink.subscribe(chunk))
            .await
            .map_err(|_| error::timed_out(url, "SUBSCRIBE", t))?
            .map_err(|e| error::map(url, "SUBSCRIBE", e))?;
    }
    resume_all(s, interest).await?;
    Ok((sink, stream))
}

/// Serves one connection until it is lost or the backend stops.
pub(super) async fn serve(
    s: &Shared,
    interest: &mut Interest,
    rx: &mut mpsc::UnboundedReceiver<Command>,
    mut sink: PubSubSink,
    mut stream: PubSubStream,
) -> Ended {
    let t = s.redis.timeout();
    let control = s.keys.control();
    // A connection to a server that vanished without closing it is found by a ping.
    let period = (s.config.lease / 3).clamp(Duration::from_millis(200), Duration::from_secs(5));
    let mut ping = tokio::time::interval_at(tokio::time::Instant::now() + period, period);
    ping.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = s.cancel.cancelled() => return Ended::Shutdown,
            cmd = rx.recv() => {
                let Some(cmd) = cmd else { return Ended::Shutdown };
                // A burst of requests (many connections arriving at once) is served together.
                let mut batch = vec![cmd];
                while batch.len() < COMMAND_BATCH {
                    match rx.try_recv() {
                        Ok(cmd) => batch.push(cmd),
                        Err(_) => break,
                    }
                }
                if let Err(why) = commands(s, interest, &mut sink, batch).await {
                    return Ended::Lost(why);
                }
            }
            msg = stream.next() => {
                let Some(msg) = msg else {
                    return Ended::Lost("the connection closed".into());
                };
                // The messages already read are delivered together (a subscriber gets a
                // conversation's in one write).
                let mut out = Vec::new();
                let mut r = gather_message(s, interest, &control, msg, &mut out).await;
                let mut closed = false;
                while r.is_ok() && out.len() < DELIVERY_BATCH {
                    match stream.next().now_or_never() {
                        Some(Some(msg)) => {
                            r = gather_message(s, interest, &control, msg, &mut out).await;
                        }
                        Some(None) => {
                            closed = true;
                            break;
                        }
                        None => break,
                    }
                }
                flush(s, &mut out);
                if let Err(e) = r {
                    return Ended::Lost(format!("filling a gap failed: {e}"));
                }
                if closed {
                    return Ended::Lost("the connection closed".into());
                }
            }
            _ = ping.tick() => {
                match tokio::time::timeout(t, sink.ping::<redis::Value>()).await {
                    Ok(Ok(_)) => {}
                    Ok(Err(e)) => return Ended::Lost(format!("PING failed: {e}")),
                    Err(_) => return Ended::Lost(format!("no answer to PING within {t:?}")),
                }
            }
        }
    }
}
