//! HTTP long-polling: the handshake, the GET that waits for packets (one at a time: a second
//! is an overlap that closes the session), the POST that carries the client's packets (bounded
//! by `maxPayload`: 413 and close past it), and the task that runs a polling session's heartbeat.

use std::sync::Arc;
use std::task::Poll;

use axum::extract::Request;
use axum::http::{Method, StatusCode, header};
use axum::response::{IntoResponse, Response};
use tokio::time::{Instant, sleep_until};

use super::conn::{Frame, Shared, State, Transport};
use super::http::{ErrorCode, error, open_packet, open_session, request_info};
use super::packet::{append_to_payload, decode_payload};
use super::server::Engine;
use super::session::{heartbeat, on_packet};
use crate::DisconnectReason;

const TEXT: &str = "text/plain; charset=UTF-8";

/// Opens a polling session: answers the open packet and starts its heartbeat.
pub(crate) fn handshake(engine: Arc<Engine>, req: Request) -> Response {
    let shared = open_session(&engine, Transport::Polling, request_info(&req));
    let open = open_packet(&engine, &shared.sid, Transport::Polling);
    tokio::spawn(drive(shared));
    ([(header::CONTENT_TYPE, TEXT)], open).into_response()
}

/// A polling request on an open session.
pub(crate) async fn request(shared: Arc<Shared>, req: Request) -> Response {
    match *req.method() {
        Method::GET => poll(shared).await,
        Method::POST => post(shared, req).await,
        _ => error(ErrorCode::BadRequest),
    }
}

/// Clears a request's flag when the request ends, answered or abandoned.
struct Active<'a>(&'a Shared, bool);

impl<'a> Active<'a> {
    /// Marks a GET (`get`) or a POST as under way; a second one of the same kind at once is an
    /// overlap that closes the session. Refused on an upgraded session. `None` is answered 400.
    fn begin(shared: &'a Shared, get: bool) -> Option<Self> {
        let mut st = shared.state.lock();
        if st.transport == Transport::WebSocket {
            return None;
        }
        let flag = if get {
            &mut st.get_active
        } else {
            &mut st.post_active
        };
        if *flag {
            drop(st);
            shared.close(DisconnectReason::PollOverlap);
            return None;
        }
        *flag = true;
        Some(Active(shared, get))
    }
}

impl Drop for Active<'_> {
    fn drop(&mut self) {
        let mut st = self.0.state.lock();
        if self.1 {
            st.get_active = false
        } else {
            st.post_active = false
        }
    }
}

async fn poll(shared: Arc<Shared>) -> Response {
    let Some(_active) = Active::begin(&shared, true) else {
        return error(ErrorCode::BadRequest);
    };
    // The look and the wait are one step under the session's lock: nothing that changes what
    // the look finds can come between them, and a GET waits only while the session is on
    // polling. Once it is on a WebSocket the look answers at once, so a GET never takes the
    // WebSocket task's place as the writer to wake (a GET woken by the upgrade's probe may
    // run only after the task has started waiting).
    let body = std::future::poll_fn(|cx| {
        let mut st = shared.state.lock();
        match take_payload(&shared, &mut st) {
            Some(body) => Poll::Ready(body),
            None => {
                st.wait_writer(cx);
                Poll::Pending
            }
        }
    })
    .await;
    ([(header::CONTENT_TYPE, TEXT)], body).into_response()
}

/// The body for the pending poll, or `None` when it must wait on.
fn take_payload(shared: &Shared, st: &mut State) -> Option<Vec<u8>> {
    if st.transport == Transport::WebSocket {
        return Some(b"6".to_vec());
    }
    if st.queue.is_empty() && st.closed.is_none() && !st.probed {
        return None;
    }
    let mut body = Vec::new();
    if st.closed.is_none_or(DisconnectReason::flushes) {
        for frame in Shared::take_queue(st) {
            match frame {
                Frame::Text(t) => append_to_payload(&mut body, &t, false),
                Frame::Binary(b) => append_to_payload(&mut body, &b, true),
                // Queued on a WebSocket only.
                Frame::Pong(_) => {}
            }
        }
    }
    match st.closed {
        Some(reason) => {
            let last: &[u8] = if reason == DisconnectReason::ClientClose {
                b"6"
            } else {
                b"1"
            };
            append_to_payload(&mut body, last, false);
            if reason.flushes() {
                st.flushed = true;
                shared.wake_driver();
            }
        }
        None if body.is_empty() => body.push(b'6'),
        None => {}
    }
    Some(body)
}

async fn post(shared: Arc<Shared>, req: Request) -> Response {
    let max = shared.engine.config.max_payload;
    let declared = req
        .headers()
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|n| n > max as u64) {
        shared.close(DisconnectReason::PayloadTooLarge);
        return StatusCode::PAYLOAD_TOO_LARGE.into_response();
    }
    let Some(_active) = Active::begin(&shared, false) else {
        return error(ErrorCode::BadRequest);
    };
    let body = match axum::body::to_bytes(req.into_body(), max).await {
        Ok(body) => body,
        Err(_) => {
            shared.close(DisconnectReason::PayloadTooLarge);
            return StatusCode::PAYLOAD_TOO_LARGE.into_response();
        }
    };
    let packets = match decode_payload(&body, shared.engine.config.max_payload_packets) {
        Ok(packets) => packets,
        Err(_) => {
            shared.close(DisconnectReason::ParseError);
            return error(ErrorCode::BadRequest);
        }
    };
    for packet in packets {
        if let Err(reason) = on_packet(&shared, packet).await {
            shared.close(reason);
            if reason != DisconnectReason::ClientClose {
                return error(ErrorCode::BadRequest);
            }
            break;
        }
    }
    ([(header::CONTENT_TYPE, "text/html")], "ok").into_response()
}

/// The heartbeat of a polling session, until it closes or upgrades (the WebSocket task then
/// runs it). A session closed by the server waits for the poll that takes its last packets.
async fn drive(shared: Arc<Shared>) {
    // A session that began on polling has its driver's `Notify`; this one is for it alone.
    let Some(ctl) = shared.ctl.lock().clone() else {
        return;
    };
    loop {
        if shared.state.lock().transport == Transport::WebSocket {
            // The WebSocket task runs the heartbeat from here on: nothing wakes a driver.
            *shared.ctl.lock() = None;
            return;
        }
        let Some(next) = heartbeat(&shared, Instant::now()) else {
            break;
        };
        tokio::select! {
            _ = sleep_until(next) => {}
            _ = ctl.notified() => {}
        }
    }
    if shared.closed().is_some_and(DisconnectReason::flushes) {
        let until = Instant::now() + shared.engine.config.close_flush_timeout;
        while !shared.state.lock().flushed && Instant::now() < until {
            tokio::select! {
                _ = sleep_until(until) => {}
                _ = ctl.notified() => {}
            }
        }
    }
    shared.finish().await;
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The polling driver's `Notify` lives while the session is on polling and goes with the
    /// driver once the session moved to a WebSocket: an upgraded session keeps none.
    #[tokio::test]
    async fn the_drivers_notify_goes_with_the_upgrade() {
        let (_io, shared) = crate::engine::test_session::session(Transport::Polling);
        let driver = tokio::spawn(drive(shared.clone()));
        tokio::task::yield_now().await;
        assert!(shared.ctl.lock().is_some(), "on polling: the driver's");
        shared.state.lock().transport = Transport::WebSocket;
        shared.heartbeat_changed();
        tokio::time::timeout(std::time::Duration::from_secs(5), driver)
            .await
            .expect("the driver ends at the upgrade")
            .unwrap();
        assert!(shared.ctl.lock().is_none(), "upgraded: nothing kept");
        shared.wake_driver();
    }
}
