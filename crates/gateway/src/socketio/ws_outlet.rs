//! The writing end of a Socket.IO socket that runs on its own WebSocket ([`super::ws_session`]):
//! Engine.IO and Socket.IO packets written as WebSocket text frames straight to the plain
//! socket, by whoever writes (the session's task, or the fan-out's thread for a `message`).
//!
//! A frame goes out in one `sendmsg` of its head and its parts: a `message` event's object is
//! the node's one encoding, shared by every socket, and is not copied. When the wire writes
//! several frames at once (a DM's acknowledgement and the sender's own copy), all but the last
//! go with `MSG_MORE`, so that the kernel sends them in one segment with the last. What the socket does not
//! take is kept, and the wire reports that frame as partly written ([`Outlet::flush`]): the
//! session keeps it (and everything after it) in its own bounded queue, waits for the socket
//! to have room, and offers it again until the outlet has written the rest, exactly as a
//! native WebSocket's partly written frame. So at most one frame's rest is kept here, plus the
//! few packets written beside the session (a refused namespace), which are bounded: past the
//! bound the connection is closed, as the library closes a session whose queue is full.

use super::wire::Outlet;
use crate::wire::{MAX_HEAD, push, send_now, send_now_more, ws_head};
use parking_lot::Mutex;
use std::io::{self, IoSlice};
use std::os::fd::AsFd;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::task::{Context, Poll};
use std::time::Duration;
use switchboard_socketio::sio::packet::encode_event;
use tokio::net::TcpStream;
use tokio::sync::watch;

/// The opcode of a text frame.
pub const TEXT: u8 = 0x1;
const CLOSE: u8 = 0x8;
const PONG: u8 = 0xA;

/// The most parts one frame is written from (the `message` event has five; more are not
/// given).
const MAX_PARTS: usize = 6;

/// Bytes kept beyond one frame's rest before the connection is closed (packets written beside
/// the session by a client that does not read).
const KEPT_BEYOND_A_FRAME: usize = 64 * 1024;

/// Sockets whose close waits for a drain's `delay_ms`, counted so that the node stays up until
/// they are closed, and closed at once when it cannot wait longer.
#[derive(Debug)]
pub struct Closing {
    count: AtomicUsize,
    now: watch::Sender<bool>,
}

impl Closing {
    /// No socket closing yet.
    pub fn new() -> Arc<Closing> {
        Arc::new(Closing {
            count: AtomicUsize::new(0),
            now: watch::Sender::new(false),
        })
    }

    /// Sockets still waiting for their close.
    pub fn count(&self) -> usize {
        self.count.load(Ordering::Acquire)
    }

    /// Closes every waiting socket now (and those that start waiting from now on).
    pub fn close_all(&self) {
        self.now.send_replace(true);
    }
}

/// What the socket has not taken yet.
#[derive(Default)]
struct Kept {
    /// Framed bytes, written from `at`; empty (holding no memory) while the socket keeps up.
    buf: Vec<u8>,
    at: usize,
    /// Bytes written from `buf` so far, ever: the progress the wire reports.
    written: usize,
    /// Bytes written while others were kept (packets beside the session, or the second of
    /// a frame's packets): bounded, unlike the one frame's rest before them.
    behind: usize,
    /// The close was written (or the socket failed): nothing more is.
    closed: bool,
    /// A close is scheduled for later (a drain's `delay_ms`): the session's end leaves the
    /// socket open.
    close_later: bool,
}

impl Kept {
    fn len(&self) -> usize {
        self.buf.len() - self.at
    }
}

/// A Socket.IO socket's own WebSocket, written directly.
pub struct WsOutlet {
    stream: TcpStream,
    kept: Mutex<Kept>,
    /// Whether anything is kept (read without the lock: after every frame the wire asks, and
    /// almost always nothing is). Set and cleared under the lock.
    any_kept: AtomicBool,
    /// The packets written now are followed at once by more ([`Outlet::more_follows`]): they
    /// go with `MSG_MORE`, and wait in the socket for the last of the batch (or for the
    /// kernel's own release: an ACK of earlier data, or about 200 ms).
    more: AtomicBool,
    /// A write with `MSG_MORE` may have left bytes waiting in the socket: the end of the batch
    /// pushes them (read without the lock: a one-frame write never sets it; a batch, a
    /// conversation's run from the fan-out included, sets it and pushes at its end).
    held: AtomicBool,
    closing: Arc<Closing>,
}

fn gone() -> io::Error {
    io::Error::new(io::ErrorKind::BrokenPipe, "the WebSocket is closed")
}

impl WsOutlet {
    /// Writes to `stream`; a drain's delayed close is counted in `closing`.
    pub fn new(stream: TcpStream, closing: Arc<Closing>) -> WsOutlet {
        WsOutlet {
            stream,
            kept: Mutex::new(Kept::default()),
            any_kept: AtomicBool::new(false),
            more: AtomicBool::new(false),
            held: AtomicBool::new(false),
            closing,
        }
    }

    /// The socket, for its reader.
    pub fn stream(&self) -> &TcpStream {
        &self.stream
    }

    /// Writes one frame of opcode `op` whose payload is `parts` joined: straight to the socket
    /// when nothing is kept before it, else (or for what the socket did not take) kept, in
    /// order. Past the bound on what is kept, the connection is closed.
    pub fn send(&self, op: u8, parts: &[&[u8]]) -> io::Result<()> {
        let mut kept = self.kept.lock();
        self.send_locked(&mut kept, op, parts)
    }

    fn send_locked(&self, kept: &mut Kept, op: u8, parts: &[&[u8]]) -> io::Result<()> {
        if kept.closed {
            return Err(gone());
        }
        let len: usize = parts.iter().map(|p| p.len()).sum();
        let mut head = [0u8; MAX_HEAD];
        let used = ws_head(op, len, &mut head);
        let head = &head[..used];
        let mut written = 0;
        if kept.len() == 0 {
            let mut slices = [IoSlice::new(head); MAX_PARTS + 1];
            let mut n = 1;
            for part in parts.iter().take(MAX_PARTS) {
                slices[n] = IoSlice::new(part);
                n += 1;
            }
            // Straight to `sendmsg` (tokio only for a full socket, so that `poll_room` waits).
            // A write without `MSG_MORE` also sends what earlier ones left waiting.
            let more = self.more.load(Ordering::SeqCst);
            if more || self.held.load(Ordering::Relaxed) {
                self.held.store(more, Ordering::SeqCst);
            }
            let sent = if more {
                send_now_more(&self.stream, &slices[..n])
            } else {
                send_now(&self.stream, &slices[..n])
            };
            written = match sent {
                Ok(w) => w,
                Err(e) => {
                    self.fail(kept);
                    return Err(e);
                }
            };
            // A packet written beside the session (a refused namespace, by the reader) may
            // have seen a batch's `more` just as the batch ended without another packet: the
            // batch's end may have found nothing held, so this write pushes itself. (With
            // `SeqCst` on both sides, one of the two sees the other.)
            if more && !self.more.load(Ordering::SeqCst) {
                self.held.store(false, Ordering::SeqCst);
                let _ = push(&self.stream);
            }
            if written == used + len {
                return Ok(());
            }
        } else {
            kept.behind += used + len;
            if kept.behind > KEPT_BEYOND_A_FRAME {
                // A client that does not read what it keeps asking for.
                tracing::debug!("Socket.IO WebSocket: too much unread, closing");
                self.fail(kept);
                let _ = socket2::SockRef::from(&self.stream).shutdown(std::net::Shutdown::Both);
                return Err(gone());
            }
        }
        // Whatever the socket did not take, from where it stopped.
        let mut skip = written;
        for part in std::iter::once(head).chain(parts.iter().copied()) {
            if skip >= part.len() {
                skip -= part.len();
                continue;
            }
            kept.buf.extend_from_slice(&part[skip..]);
            skip = 0;
        }
        self.any_kept.store(true, Ordering::Release);
        Ok(())
    }

    /// Nothing more is written; what was kept is dropped.
    fn fail(&self, kept: &mut Kept) {
        kept.closed = true;
        kept.buf = Vec::new();
        kept.at = 0;
        kept.behind = 0;
        self.any_kept.store(false, Ordering::Release);
    }

    /// Writes what is kept: `None` once nothing is, else the bytes written from it so far.
    fn flush_locked(&self, kept: &mut Kept) -> Option<usize> {
        while kept.len() > 0 {
            match self.stream.try_write(&kept.buf[kept.at..]) {
                Ok(n) => {
                    kept.at += n;
                    kept.written = kept.written.wrapping_add(n);
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                    // Moved forward without copying; compacted once most of it is written.
                    if kept.at > kept.buf.len() / 2 {
                        let at = kept.at;
                        kept.buf.drain(..at);
                        kept.at = 0;
                    }
                    return Some(kept.written);
                }
                // The peer is gone: nothing kept will reach it (the reader sees the end).
                Err(_) => self.fail(kept),
            }
        }
        kept.buf = Vec::new();
        kept.at = 0;
        kept.behind = 0;
        self.any_kept.store(false, Ordering::Release);
        None
    }

    /// Sends a text frame.
    pub fn text(&self, text: &[u8]) -> io::Result<()> {
        self.send(TEXT, &[text])
    }

    /// Writes a close frame (1000) after what is kept, if the socket takes it now, and ends the
    /// write side. A client that stopped reading does not hold anything up.
    pub fn close(&self) {
        let mut kept = self.kept.lock();
        if kept.closed {
            return;
        }
        if self.flush_locked(&mut kept).is_none() {
            let _ = self.send_locked(&mut kept, CLOSE, &[&1000u16.to_be_bytes()]);
        }
        self.fail(&mut kept);
        let _ = socket2::SockRef::from(&self.stream).shutdown(std::net::Shutdown::Write);
    }
}

impl Outlet for WsOutlet {
    fn more_follows(&self, more: bool) {
        // Stored only when it changes: the fan-out's one frame per socket leaves it false.
        if self.more.load(Ordering::Relaxed) != more {
            self.more.store(more, Ordering::SeqCst);
        }
    }

    fn end_batch(&self) {
        self.more_follows(false);
        if self.held.load(Ordering::SeqCst) {
            let kept = self.kept.lock();
            self.held.store(false, Ordering::SeqCst);
            if !kept.closed {
                // Failing, the socket is gone, and the reader sees its end.
                let _ = push(&self.stream);
            }
        }
    }

    fn flush(&self) -> Option<usize> {
        if !self.any_kept.load(Ordering::Acquire) {
            return None;
        }
        let mut kept = self.kept.lock();
        if kept.len() == 0 {
            return None;
        }
        self.flush_locked(&mut kept)
    }

    fn poll_room(&self, cx: &mut Context<'_>) -> Poll<()> {
        if !self.any_kept.load(Ordering::Acquire) {
            return Poll::Ready(());
        }
        // Ready once the socket may take more; the session's next write writes it out (and
        // sees the progress: a slow reader that still reads is not a stalled one). A write
        // that found the socket full cleared its readiness, so this waits. An error means the
        // peer is gone; the next write says so.
        self.stream.poll_write_ready(cx).map(|_| ())
    }

    fn emit(&self, event: &str, args: String) -> io::Result<()> {
        // Rare events (`switchboard:*`): the library's encoding, in one allocation.
        let text = encode_event("4", "/", None, event, &args, 0).map_err(io::Error::other)?;
        self.send(TEXT, &[text.as_bytes()])
    }

    fn emit_message(&self, object: &str, offset_json: &str) -> io::Result<()> {
        self.send(
            TEXT,
            &[
                br#"42["message","#,
                object.as_bytes(),
                b",",
                offset_json.as_bytes(),
                b"]",
            ],
        )
    }

    fn ack(&self, id: u64, args_json: &str) -> io::Result<()> {
        // The id's digits, on the stack (an ack id is at most 2^53 - 1: 16 digits).
        let mut digits = [0u8; 20];
        let mut cursor = io::Cursor::new(&mut digits[..]);
        io::Write::write_fmt(&mut cursor, format_args!("{id}"))?;
        let n = cursor.position() as usize;
        self.send(TEXT, &[b"43", &digits[..n], args_json.as_bytes()])
    }

    fn ping(&self) -> io::Result<bool> {
        self.send(TEXT, &[b"2"]).map(|()| true)
    }

    fn pong(&self, payload: &[u8]) -> io::Result<()> {
        self.send(PONG, &[payload])
    }

    fn disconnect(&self) {
        // The session writes out what waits, then ends: `finish` closes.
        let _ = self.send(TEXT, &[b"41"]);
    }

    fn finish(&self) {
        if !self.kept.lock().close_later {
            self.close();
        }
    }

    fn close_transport(&self) {
        self.close();
    }

    fn close_transport_after(&self, delay: Duration) {
        // The session ends now and its socket with it; a second descriptor of the connection
        // keeps it open until the delay is over (a drain's `delay_ms`: the client reconnects
        // when it closes), counted in `closing` so the node waits for it.
        let (Ok(rt), Ok(fd)) = (
            tokio::runtime::Handle::try_current(),
            self.stream.as_fd().try_clone_to_owned(),
        ) else {
            self.close();
            return;
        };
        self.kept.lock().close_later = true;
        let closing = self.closing.clone();
        let mut now = closing.now.subscribe();
        closing.count.fetch_add(1, Ordering::AcqRel);
        rt.spawn(async move {
            let _ = tokio::time::timeout(delay, now.wait_for(|now| *now)).await;
            let _ = socket2::SockRef::from(&fd).shutdown(std::net::Shutdown::Both);
            drop(fd);
            closing.count.fetch_sub(1, Ordering::AcqRel);
        });
    }
}

#[cfg(test)]
#[path = "ws_outlet_tests.rs"]
mod tests;
