//! One long-poll session's state, shared by its task, the fan-out and the HTTP handlers: the
//! numbered buffer of frames waiting for a GET, bounded in frames and in bytes, and the two
//! halves the session runs on ([`PollTransport`] reads, [`PollWire`] writes).
//!
//! A session ends when no GET came for the idle time, or, if it was never polled at all, after
//! the (shorter) first-GET time: a session nobody collects costs a connection slot and shows
//! its user online, so an unpolled one must not live long. An ended session keeps only its
//! last `reconnect`/`disconnect` frames, for a late GET to learn of the end; everything else
//! it buffered is released at once (its client resumes from history, as after any cut).

use axum::body::Bytes;
use parking_lot::Mutex;
use std::collections::VecDeque;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::task::{Context, Poll, Waker};
use std::time::{Duration, Instant};
use switchboard_core::transport::{Inbound, Out, Progress, Transport, Wire};
use switchboard_proto::ServerFrame;
use tokio::sync::{Notify, mpsc};

#[derive(Default)]
pub(super) struct Buffer {
    pub(super) frames: VecDeque<(u64, Bytes)>,
    /// The bytes of `frames`.
    pub(super) bytes: usize,
    pub(super) next_pseq: u64,
    /// The session task ended (no more frames will come).
    pub(super) ended: bool,
    /// Bumped by every GET; an older waiting GET sees the change and returns.
    pub(super) get_generation: u64,
    /// The bytes of the frame the buffer last had no room for (0 once a frame goes in): the
    /// wire is writable again only when that frame fits, or the session would retry it at
    /// once, again and again, until a GET made room.
    pub(super) refused: usize,
}

impl Buffer {
    /// Drops the frames a GET with `after` acknowledges.
    pub(super) fn acknowledge(&mut self, after: u64) {
        while self.frames.front().is_some_and(|(p, _)| *p <= after) {
            if let Some((_, f)) = self.frames.pop_front() {
                self.bytes -= f.len();
            }
        }
    }

    /// At the session's end: keeps only its trailing `reconnect` and `disconnect` frames.
    fn release(&mut self) {
        let last = self
            .frames
            .iter()
            .rposition(|(_, f)| !is_farewell(f))
            .map_or(0, |i| i + 1);
        self.frames.drain(..last);
        self.frames.shrink_to_fit();
        self.bytes = self.frames.iter().map(|(_, f)| f.len()).sum();
    }
}

/// Whether a server frame is one a session's end leaves for its client.
fn is_farewell(frame: &[u8]) -> bool {
    frame.starts_with(br#"{"type":"disconnect""#) || frame.starts_with(br#"{"type":"reconnect""#)
}

/// One session's shared state, between its task, the fan-out and the HTTP handlers.
pub(super) struct Shared {
    /// The session's user (sessions per user are capped).
    pub(super) user_id: String,
    pub(super) buffer: Mutex<Buffer>,
    /// New frames, the end, or a newer GET.
    pub(super) changed: Notify,
    /// The session waiting for room in the buffer (woken when a GET acknowledges frames).
    pub(super) space: Mutex<Option<Waker>>,
    /// Client frames to the session; taken (closed) by `DELETE`.
    pub(super) inbound: Mutex<Option<mpsc::Sender<Inbound>>>,
    pub(super) last_get: Mutex<Instant>,
    /// Whether any GET came yet.
    pub(super) polled: AtomicBool,
    pub(super) ended_at: Mutex<Option<Instant>>,
}

impl Shared {
    /// A new session's state, its first frame numbered 1.
    pub(super) fn new(user_id: String, inbound: mpsc::Sender<Inbound>) -> Shared {
        Shared {
            user_id,
            buffer: Mutex::new(Buffer {
                next_pseq: 1,
                ..Default::default()
            }),
            changed: Notify::new(),
            space: Mutex::new(None),
            inbound: Mutex::new(Some(inbound)),
            last_get: Mutex::new(Instant::now()),
            polled: AtomicBool::new(false),
            ended_at: Mutex::new(None),
        }
    }

    /// A GET came: the client is alive.
    pub(super) fn got(&self) {
        *self.last_get.lock() = Instant::now();
        self.polled.store(true, Ordering::Release);
    }

    /// Whether the session's task still runs.
    pub(super) fn is_running(&self) -> bool {
        self.ended_at.lock().is_none()
    }
}

/// The reading half of a long-poll session: frames from `POST`, proof of life from `GET`.
pub struct PollTransport {
    pub(super) shared: Arc<Shared>,
    pub(super) rx: mpsc::Receiver<Inbound>,
    /// A session with no GET for this long ends.
    pub(super) idle: Duration,
    /// A session never polled ends this long after it opened.
    pub(super) first_get: Duration,
}

impl PollTransport {
    /// How long the session may go without a GET now.
    fn allowed(&self) -> Duration {
        if self.shared.polled.load(Ordering::Acquire) {
            self.idle
        } else {
            self.first_get.min(self.idle)
        }
    }
}

impl Transport for PollTransport {
    async fn recv(&mut self) -> Option<Inbound> {
        loop {
            let idle_until = *self.shared.last_get.lock() + self.allowed();
            tokio::select! {
                inbound = self.rx.recv() => return inbound,
                _ = tokio::time::sleep_until(idle_until.into()) => {
                    if self.shared.last_get.lock().elapsed() >= self.allowed() {
                        tracing::debug!("poll session idle or never polled; ending it");
                        return None;
                    }
                }
            }
        }
    }
}

/// The writing half of a long-poll session: frames go into the session's buffer, numbered, for
/// the next `GET`. A full buffer (in frames or in bytes) takes nothing more until a `GET`
/// acknowledges frames; one frame larger than the byte bound still goes into an empty buffer.
pub(super) struct PollWire {
    pub(super) shared: Arc<Shared>,
    pub(super) max: usize,
    pub(super) max_bytes: usize,
}

impl PollWire {
    fn has_room(&self, b: &Buffer, next: usize) -> bool {
        b.frames.is_empty() || (b.frames.len() < self.max && b.bytes + next <= self.max_bytes)
    }
}

impl Wire for PollWire {
    fn try_write(
        &self,
        frames: &mut dyn Iterator<Item = &Out>,
        _offset: usize,
    ) -> std::io::Result<Progress> {
        let mut p = Progress {
            frames: 0,
            offset: 0,
            blocked: false,
        };
        let mut b = self.shared.buffer.lock();
        let before = b.frames.len();
        for frame in frames {
            let bytes = match frame {
                Out::Text(bytes) => bytes.clone(),
                Out::Ping => ServerFrame::Ping {}.encode(),
                // Long-polling has no protocol pings to answer and no close frame.
                Out::Pong(_) | Out::Close(_) => {
                    p.frames += 1;
                    continue;
                }
            };
            if !self.has_room(&b, bytes.len()) {
                b.refused = bytes.len();
                p.blocked = true;
                break;
            }
            b.refused = 0;
            let pseq = b.next_pseq;
            b.next_pseq += 1;
            b.bytes += bytes.len();
            b.frames.push_back((pseq, bytes));
            p.frames += 1;
        }
        let added = b.frames.len() > before;
        drop(b);
        if added {
            self.shared.changed.notify_waiters();
        }
        Ok(p)
    }

    fn poll_writable(&self, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        // Register first, then look: a GET that acknowledges in between wakes us.
        *self.shared.space.lock() = Some(cx.waker().clone());
        let b = self.shared.buffer.lock();
        // The next frame is the one refused (if any): ready once it would be taken.
        if self.has_room(&b, b.refused.max(1)) {
            Poll::Ready(Ok(()))
        } else {
            Poll::Pending
        }
    }

    fn shutdown(&self) {
        {
            let mut b = self.shared.buffer.lock();
            b.ended = true;
            b.release();
        }
        *self.shared.ended_at.lock() = Some(Instant::now());
        self.shared.inbound.lock().take();
        self.shared.changed.notify_waiters();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn frame(text: &str) -> Bytes {
        Bytes::from(text.to_owned())
    }

    /// A buffer with room for a few bytes more is not writable for a frame that does not fit
    /// (found in review: the session retried it in a loop until a GET came).
    #[test]
    fn a_frame_that_does_not_fit_leaves_the_wire_unwritable_until_it_would() {
        let (tx, _rx) = mpsc::channel(1);
        let wire = PollWire {
            shared: Arc::new(Shared::new("u".into(), tx)),
            max: 16,
            max_bytes: 10,
        };
        let ready = |w: &PollWire| {
            let mut cx = Context::from_waker(std::task::Waker::noop());
            w.poll_writable(&mut cx).is_ready()
        };
        let out = |text: &str| Out::Text(frame(text));
        let p = wire.try_write(&mut [out("123456")].iter(), 0).unwrap();
        assert_eq!((p.frames, p.blocked), (1, false));
        assert!(ready(&wire), "4 bytes of room");
        let p = wire.try_write(&mut [out("12345")].iter(), 0).unwrap();
        assert_eq!((p.frames, p.blocked), (0, true));
        assert!(!ready(&wire), "the refused 5 bytes do not fit in 4");
        wire.shared.buffer.lock().acknowledge(1);
        assert!(ready(&wire), "a GET made room");
        let p = wire.try_write(&mut [out("12345")].iter(), 0).unwrap();
        assert_eq!((p.frames, p.blocked), (1, false));
    }

    #[test]
    fn an_ended_buffer_keeps_only_its_farewell() {
        let mut b = Buffer::default();
        for (i, f) in [
            r#"{"type":"message","seq":1}"#,
            r#"{"type":"disconnect","reason":"x"}"#,
            r#"{"type":"history","messages":[]}"#,
            r#"{"type":"reconnect","reason":"shutdown","delay_ms":1}"#,
            r#"{"type":"disconnect","reason":"shutdown"}"#,
        ]
        .into_iter()
        .enumerate()
        {
            b.bytes += f.len();
            b.frames.push_back((i as u64 + 1, frame(f)));
        }
        b.release();
        let kept: Vec<u64> = b.frames.iter().map(|(p, _)| *p).collect();
        assert_eq!(kept, [4, 5]);
        assert_eq!(
            b.bytes,
            b.frames.iter().map(|(_, f)| f.len()).sum::<usize>()
        );
        b.acknowledge(5);
        assert_eq!((b.frames.len(), b.bytes), (0, 0));
    }
}
