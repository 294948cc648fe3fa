//! The writing end of a Socket.IO socket that runs on its own WebSocket ([`super::ws_session`]):
//! Engine.IO and Socket.IO packets written as WebSocket text frames straight to the plain
//! socket, by whoever writes (the session's task, or the fan-out's thread for a `message`).
//!
//! A frame goes out in one `sendmsg` of its head and its parts: a `message` event's object is
//! the node's one encoding, shared by every socket, and is not copied. What the socket does not
//! take is kept (the rest of that one frame, and the few control packets written behind it)
//! until the socket has room again; meanwhile the wire offers no further frame
//! ([`Outlet::has_room`]), so the session's own bounded queue holds them, as on a native
//! WebSocket.

use super::wire::Outlet;
use crate::wire::{MAX_HEAD, ws_head};
use parking_lot::Mutex;
use std::io::{self, IoSlice};
use std::os::fd::AsFd;
use std::sync::atomic::{AtomicBool, Ordering};
use std::task::{Context, Poll};
use std::time::Duration;
use tokio::net::TcpStream;

/// The opcode of a text frame.
pub const TEXT: u8 = 0x1;
const CLOSE: u8 = 0x8;
const PONG: u8 = 0xA;

/// The most parts one frame is written from (the `message` event has five; more are not
/// given).
const MAX_PARTS: usize = 6;

/// A Socket.IO socket's own WebSocket, written directly.
pub struct WsOutlet {
    stream: TcpStream,
    /// Framed bytes the socket has not taken yet (empty, and holding no memory, while it keeps
    /// up).
    pending: Mutex<Vec<u8>>,
    /// The close was written (or the socket failed): nothing more is.
    closed: AtomicBool,
}

fn gone() -> io::Error {
    io::Error::new(io::ErrorKind::BrokenPipe, "the WebSocket is closed")
}

impl WsOutlet {
    /// Writes to `stream`.
    pub fn new(stream: TcpStream) -> WsOutlet {
        WsOutlet {
            stream,
            pending: Mutex::new(Vec::new()),
            closed: AtomicBool::new(false),
        }
    }

    /// The socket, for its reader.
    pub fn stream(&self) -> &TcpStream {
        &self.stream
    }

    /// Writes one frame of opcode `op` whose payload is `parts` joined: straight to the socket
    /// when nothing waits before it, else (or for what the socket did not take) kept, in order.
    pub fn send(&self, op: u8, parts: &[&[u8]]) -> io::Result<()> {
        if self.closed.load(Ordering::Acquire) {
            return Err(gone());
        }
        let len: usize = parts.iter().map(|p| p.len()).sum();
        let mut head = [0u8; MAX_HEAD];
        let used = ws_head(op, len, &mut head);
        let head = &head[..used];
        let mut pending = self.pending.lock();
        let mut written = 0;
        if pending.is_empty() {
            let mut slices = [IoSlice::new(head); MAX_PARTS + 1];
            let mut n = 1;
            for part in parts.iter().take(MAX_PARTS) {
                slices[n] = IoSlice::new(part);
                n += 1;
            }
            // Straight to `sendmsg`: tokio's readiness state is only needed when the socket is
            // full. Then the same write through tokio either goes through or clears that
            // state, so that `poll_room` waits.
            let sent = socket2::SockRef::from(&self.stream)
                .send_vectored(&slices[..n])
                .or_else(|e| match e.kind() {
                    io::ErrorKind::WouldBlock => self.stream.try_write_vectored(&slices[..n]),
                    _ => Err(e),
                });
            written = match sent {
                Ok(w) => w,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => 0,
                Err(e) => {
                    self.closed.store(true, Ordering::Release);
                    return Err(e);
                }
            };
            if written == used + len {
                return Ok(());
            }
        }
        // Whatever the socket did not take, from where it stopped.
        let mut skip = written;
        for part in std::iter::once(head).chain(parts.iter().copied()) {
            if skip >= part.len() {
                skip -= part.len();
                continue;
            }
            pending.extend_from_slice(&part[skip..]);
            skip = 0;
        }
        Ok(())
    }

    /// Writes what is kept; `true` once nothing is.
    fn flush(&self, pending: &mut Vec<u8>) -> bool {
        while !pending.is_empty() {
            match self.stream.try_write(pending) {
                Ok(n) => {
                    pending.drain(..n);
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return false,
                Err(_) => {
                    // The peer is gone: nothing kept will reach it (the reader sees the end).
                    self.closed.store(true, Ordering::Release);
                    pending.clear();
                }
            }
        }
        *pending = Vec::new();
        true
    }

    /// Sends a text frame.
    pub fn text(&self, text: &[u8]) -> io::Result<()> {
        self.send(TEXT, &[text])
    }

    /// Answers a WebSocket ping.
    pub fn pong(&self, payload: &[u8]) -> io::Result<()> {
        self.send(PONG, &[payload])
    }

    /// Writes a close frame (1000) after what is kept, if the socket takes it now, and ends the
    /// write side. A client that stopped reading does not hold anything up.
    pub fn close(&self) {
        let _ = self.send(CLOSE, &[&1000u16.to_be_bytes()]);
        self.closed.store(true, Ordering::Release);
        let mut pending = self.pending.lock();
        self.flush(&mut pending);
        *pending = Vec::new();
        let _ = socket2::SockRef::from(&self.stream).shutdown(std::net::Shutdown::Write);
    }
}

impl Outlet for WsOutlet {
    fn has_room(&self) -> bool {
        let mut pending = self.pending.lock();
        pending.is_empty() || self.flush(&mut pending)
    }

    fn poll_room(&self, cx: &mut Context<'_>) -> Poll<()> {
        loop {
            if self.has_room() {
                return Poll::Ready(());
            }
            // Not writable (the flush's `WouldBlock` cleared the readiness): this registers the
            // waker. An error means the peer is gone; the next write says so.
            if std::task::ready!(self.stream.poll_write_ready(cx)).is_err() {
                return Poll::Ready(());
            }
        }
    }

    fn emit(&self, event: &str, args: String) -> io::Result<()> {
        let inner = args
            .trim()
            .strip_prefix('[')
            .and_then(|a| a.strip_suffix(']'))
            .unwrap_or("");
        let name = serde_json::to_string(event).map_err(io::Error::other)?;
        let comma: &[u8] = if inner.trim().is_empty() { b"" } else { b"," };
        self.send(
            TEXT,
            &[b"42[", name.as_bytes(), comma, inner.as_bytes(), b"]"],
        )
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

    fn disconnect(&self) {
        let _ = self.send(TEXT, &[b"41"]);
        self.close();
    }

    fn close_transport(&self) {
        self.close();
    }

    fn close_transport_after(&self, delay: Duration) {
        // The session ends now and its socket with it; a second descriptor of the connection
        // keeps it open until the delay is over (a drain's `delay_ms`: the client reconnects
        // when it closes).
        let (Ok(rt), Ok(fd)) = (
            tokio::runtime::Handle::try_current(),
            self.stream.as_fd().try_clone_to_owned(),
        ) else {
            self.close();
            return;
        };
        rt.spawn(async move {
            tokio::time::sleep(delay).await;
            let _ = socket2::SockRef::from(&fd).shutdown(std::net::Shutdown::Both);
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::AsyncReadExt;

    /// The text frames in `bytes` (server frames: unmasked, unfragmented), and what is left.
    fn frames(mut bytes: &[u8]) -> (Vec<String>, usize) {
        let mut out = Vec::new();
        loop {
            if bytes.len() < 2 {
                return (out, bytes.len());
            }
            let (len, head) = match bytes[1] {
                126 if bytes.len() >= 4 => (u16::from_be_bytes([bytes[2], bytes[3]]) as usize, 4),
                127 if bytes.len() >= 10 => (
                    u64::from_be_bytes(bytes[2..10].try_into().unwrap()) as usize,
                    10,
                ),
                126 | 127 => return (out, bytes.len()),
                n => (n as usize, 2),
            };
            if bytes.len() < head + len {
                return (out, bytes.len());
            }
            assert_eq!(bytes[0], 0x81, "a final text frame");
            out.push(String::from_utf8(bytes[head..head + len].to_vec()).unwrap());
            bytes = &bytes[head + len..];
        }
    }

    #[tokio::test]
    async fn what_the_socket_does_not_take_waits_in_order_until_it_has_room() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let mut client = TcpStream::connect(listener.local_addr().unwrap())
            .await
            .unwrap();
        let (server, _) = listener.accept().await.unwrap();
        let outlet = WsOutlet::new(server);
        let pad = "x".repeat(1000);
        // A client that does not read: the socket fills, and the outlet says so.
        let mut sent = 0;
        while outlet.has_room() {
            let object = format!(r#"{{"n":{sent},"pad":"{pad}"}}"#);
            outlet.emit_message(&object, r#""o""#).unwrap();
            sent += 1;
            assert!(sent < 100_000, "the socket never filled");
        }
        // A heartbeat is still taken, behind what waits.
        assert!(outlet.ping().unwrap());
        let reader = tokio::spawn(async move {
            let mut bytes = Vec::new();
            let mut chunk = vec![0u8; 65536];
            loop {
                let n = client.read(&mut chunk).await.unwrap();
                assert!(n > 0, "closed early");
                bytes.extend_from_slice(&chunk[..n]);
                let (got, _) = frames(&bytes);
                if got.len() == sent + 1 {
                    return got;
                }
            }
        });
        std::future::poll_fn(|cx| outlet.poll_room(cx)).await;
        let got = reader.await.unwrap();
        for (n, text) in got[..sent].iter().enumerate() {
            let want = format!(r#"42["message",{{"n":{n},"pad":"{pad}"}},"o"]"#);
            assert_eq!(text, &want, "frame {n} whole and in order");
        }
        assert_eq!(got[sent], "2");
        assert!(outlet.has_room());
        assert!(
            outlet.pending.lock().capacity() == 0,
            "nothing kept once written"
        );
    }

    #[tokio::test]
    async fn events_acks_and_the_close() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let mut client = TcpStream::connect(listener.local_addr().unwrap())
            .await
            .unwrap();
        let (server, _) = listener.accept().await.unwrap();
        let outlet = WsOutlet::new(server);
        outlet
            .emit("switchboard:reconnect", "[{\"delay_ms\":5}]".into())
            .unwrap();
        outlet.emit("bare", "[]".into()).unwrap();
        outlet.ack(9_007_199_254_740_991, "[1,\"two\"]").unwrap();
        outlet.disconnect();
        assert!(
            outlet.emit("late", "[]".into()).is_err(),
            "nothing after the close"
        );
        let mut bytes = Vec::new();
        client.read_to_end(&mut bytes).await.unwrap();
        let close_at = bytes.iter().rposition(|&b| b == 0x88).unwrap();
        assert_eq!(
            &bytes[close_at..],
            &[0x88, 2, 0x03, 0xE8],
            "a close frame, 1000"
        );
        let (got, left) = frames(&bytes[..close_at]);
        assert_eq!(left, 0);
        assert_eq!(
            got,
            [
                r#"42["switchboard:reconnect",{"delay_ms":5}]"#,
                r#"42["bare"]"#,
                r#"439007199254740991[1,"two"]"#,
                "41",
            ]
        );
    }
}
