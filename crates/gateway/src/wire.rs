//! Writing frames to a socket that a connection's session and the fan-out share.
//!
//! The socket is a plain `TcpStream` inside the wire, which the connection and its reader
//! share through an `Arc`: writes take `&self` and never wait, so whoever holds the connection's lock (see `switchboard_core::conn`) can write.
//! A frame is its transport's head (a WebSocket header, a TCP length) followed by the shared
//! payload bytes, written with one `writev` per batch: payloads are never copied.

use bytes::{Bytes, BytesMut};
use std::io::{self, IoSlice};
use std::task::{Context, Poll};
use switchboard_core::transport::{Out, Progress, Wire};
use tokio::io::Interest;
use tokio::net::TcpStream;

/// Longest head any framing writes before a payload.
pub const MAX_HEAD: usize = 14;

/// Frames per `writev` (two slices each, well below the kernel's `IOV_MAX`).
const BATCH: usize = 32;

/// Bytes read from a socket per read call.
pub const READ_CHUNK: usize = 4096;

/// Where a connection's reader gets its bytes: the plain socket ([`SocketWire`]) or a TLS
/// connection ([`crate::tls_wire::TlsWire`]).
pub trait ReadSource: Send + Sync + 'static {
    /// Appends what the connection has to `buf`: `Ready(true)` once bytes came, `Ready(false)`
    /// at the end of the stream or on an error. Holds no state between polls (tokio keeps the
    /// waker in the socket's registration), so a connection waiting for its client costs no
    /// future of its own. An empty `buf` gives its memory back first, so an idle connection
    /// holds no buffer either.
    fn poll_read_into(&self, buf: &mut BytesMut, cx: &mut Context<'_>) -> Poll<bool>;
}

impl<F: Framing> ReadSource for SocketWire<F> {
    fn poll_read_into(&self, buf: &mut BytesMut, cx: &mut Context<'_>) -> Poll<bool> {
        poll_read_stream(&self.stream, buf, cx)
    }
}

/// [`ReadSource::poll_read_into`] for a plain socket (a [`SocketWire`]'s, or one another wire
/// owns).
pub(crate) fn poll_read_stream(
    stream: &TcpStream,
    buf: &mut BytesMut,
    cx: &mut Context<'_>,
) -> Poll<bool> {
    if buf.is_empty() && buf.capacity() > 0 {
        *buf = BytesMut::new();
    }
    loop {
        if let Err(e) = std::task::ready!(stream.poll_read_ready(cx)) {
            tracing::debug!(error = %e, "read failed");
            return Poll::Ready(false);
        }
        // Through the thread's read buffer, so `buf` grows only by what came.
        let read = with_read_chunk(|chunk| {
            let n = read_chunk(stream, chunk)?;
            buf.extend_from_slice(&chunk[..n]);
            Ok::<_, io::Error>(n)
        });
        match read {
            Ok(n) => return Poll::Ready(n > 0),
            // The readiness was stale and is cleared now: the next poll registers the waker.
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
            Err(e) => {
                tracing::debug!(error = %e, "read failed");
                return Poll::Ready(false);
            }
        }
    }
}

/// Runs `f` with this thread's read buffer, through which a socket's bytes go on their way into
/// the connection's own buffer (which then grows only by what came). Kept per thread and zeroed
/// once: a fresh stack buffer was zeroed on every read, about 4,000 instructions per frame a
/// client sent (callgrind). A nested call gets a fresh one.
pub(crate) fn with_read_chunk<R>(f: impl FnOnce(&mut [u8; READ_CHUNK]) -> R) -> R {
    thread_local! {
        static CHUNK: std::cell::RefCell<Box<[u8; READ_CHUNK]>> =
            std::cell::RefCell::new(Box::new([0; READ_CHUNK]));
    }
    CHUNK.with(|c| match c.try_borrow_mut() {
        Ok(mut chunk) => f(&mut chunk),
        Err(_) => f(&mut [0; READ_CHUNK]),
    })
}

/// Writes `slices` with one `sendmsg`; the bytes written, 0 when the socket is full. Straight to
/// the socket: tokio's readiness state (another cache line per connection) is only needed when
/// the socket is full. Then the same write through tokio either goes through or clears that
/// state, so that a wait for room (`poll_write_ready`) waits.
pub(crate) fn send_now(stream: &TcpStream, slices: &[IoSlice<'_>]) -> io::Result<usize> {
    send_now_flags(stream, slices, 0)
}

/// [`send_now`], telling the kernel that more follows at once (`MSG_MORE`, Linux): what it
/// takes waits in the socket for the next write without it, which sends both in one segment
/// (one transmit, and one wake-up of the reader), or for [`push`]. Linux also lets it go when
/// an ACK of earlier data comes, or after about 200 ms.
pub(crate) fn send_now_more(stream: &TcpStream, slices: &[IoSlice<'_>]) -> io::Result<usize> {
    #[cfg(target_os = "linux")]
    let flags = libc::MSG_MORE;
    #[cfg(not(target_os = "linux"))]
    let flags = 0;
    send_now_flags(stream, slices, flags)
}

/// Sends what writes with `MSG_MORE` left waiting in the socket ([`send_now_more`]): turning
/// `TCP_NODELAY` on, even when it is on already, pushes the socket's pending data.
pub(crate) fn push(stream: &TcpStream) -> io::Result<()> {
    socket2::SockRef::from(stream).set_tcp_nodelay(true)
}

fn send_now_flags(
    stream: &TcpStream,
    slices: &[IoSlice<'_>],
    flags: std::ffi::c_int,
) -> io::Result<usize> {
    let sent = socket2::SockRef::from(stream)
        .send_vectored_with_flags(slices, flags)
        .or_else(|e| match e.kind() {
            io::ErrorKind::WouldBlock => stream.try_write_vectored(slices),
            _ => Err(e),
        });
    match sent {
        Ok(w) => Ok(w),
        Err(e) if e.kind() == io::ErrorKind::WouldBlock => Ok(0),
        Err(e) => Err(e),
    }
}

/// Reads what the socket has now into `chunk`. A read that took less than `chunk` emptied the
/// socket, so it also clears the socket's read readiness: the next wait goes straight to the
/// poller instead of first paying a `recvfrom` that can only answer `EAGAIN` (one system call
/// per frame a client sends). This is what tokio's own `poll_read` does on epoll; it is safe
/// because tokio clears readiness only if no new event came since it was observed, and on epoll
/// each arrival is a new event.
pub(crate) fn read_chunk(stream: &TcpStream, chunk: &mut [u8; READ_CHUNK]) -> io::Result<usize> {
    let mut short = None;
    let r = stream.try_io(Interest::READABLE, || {
        let n = stream.try_read(chunk)?;
        if 0 < n && n < READ_CHUNK {
            short = Some(n);
            return Err(io::ErrorKind::WouldBlock.into());
        }
        Ok(n)
    });
    match short {
        Some(n) => Ok(n),
        None => r,
    }
}

/// How a transport frames what it writes.
pub trait Framing: Send + Sync + 'static {
    /// Writes the bytes that go before `frame`'s payload into `head`; returns how many.
    fn head(&self, frame: &Out, head: &mut [u8; MAX_HEAD]) -> usize;
    /// The payload of `frame`.
    fn payload<'a>(&self, frame: &'a Out) -> &'a [u8];
}

/// A socket as a [`Wire`] (and, through its `stream`, its reader's source).
pub struct SocketWire<F> {
    stream: TcpStream,
    framing: F,
}

impl<F: Framing> SocketWire<F> {
    /// Up to `N` frames from `frames` in one `writev` of at most `S` (= 2 `N`) slices.
    fn write_frames<const N: usize, const S: usize>(
        &self,
        frames: &mut dyn Iterator<Item = &Out>,
        offset: usize,
    ) -> io::Result<Progress> {
        let mut heads = [[0u8; MAX_HEAD]; N];
        let mut head_lens = [0usize; N];
        let mut payloads: [&[u8]; N] = [&[]; N];
        let mut n = 0;
        for frame in frames.take(N) {
            head_lens[n] = self.framing.head(frame, &mut heads[n]);
            payloads[n] = self.framing.payload(frame);
            n += 1;
        }
        let mut slices = [IoSlice::new(&[]); S];
        let mut k = 0;
        let mut total = 0;
        for i in 0..n {
            let head = &heads[i][..head_lens[i]];
            // The first frame may be partly written already: skip that much of it.
            let skip = if i == 0 { offset } else { 0 };
            let (head, payload) = if skip < head.len() {
                (&head[skip..], payloads[i])
            } else {
                (&[][..], &payloads[i][skip - head.len()..])
            };
            for part in [head, payload] {
                if !part.is_empty() {
                    slices[k] = IoSlice::new(part);
                    k += 1;
                    total += part.len();
                }
            }
        }
        let written = if total == 0 {
            0
        } else {
            send_now(&self.stream, &slices[..k])?
        };
        // Which frames that completed, and how far into the next one it got.
        let mut left = written;
        let mut progress = Progress {
            frames: 0,
            offset,
            blocked: written < total,
        };
        for i in 0..n {
            let remaining = head_lens[i] + payloads[i].len() - progress.offset;
            if left < remaining {
                progress.offset += left;
                break;
            }
            left -= remaining;
            progress.frames += 1;
            progress.offset = 0;
        }
        Ok(progress)
    }

    /// Writes to `stream` with `framing`.
    pub fn new(stream: TcpStream, framing: F) -> SocketWire<F> {
        SocketWire { stream, framing }
    }
}

impl<F: Framing> Wire for SocketWire<F> {
    fn try_write(
        &self,
        frames: &mut dyn Iterator<Item = &Out>,
        offset: usize,
    ) -> io::Result<Progress> {
        // The fan-out writes one frame at a time: arrays sized for one (zeroing 32 frames'
        // worth of heads and slices was most of this function's instructions per delivery).
        if frames.size_hint().1 == Some(1) {
            self.write_frames::<1, 2>(frames, offset)
        } else {
            self.write_frames::<BATCH, { 2 * BATCH }>(frames, offset)
        }
    }

    fn poll_writable(&self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        self.stream.poll_write_ready(cx)
    }

    fn shutdown(&self) {
        // FIN after the last frame; the descriptor closes when the last reference goes.
        let _ = socket2::SockRef::from(&self.stream).shutdown(std::net::Shutdown::Write);
    }
}

/// RFC 6455 framing of server frames: unmasked, unfragmented.
pub struct WsFraming;

/// Writes the head of an unmasked, final server frame of `opcode` with a payload of `len`
/// bytes; returns its length (2, 4 or 10).
pub(crate) fn ws_head(opcode: u8, len: usize, head: &mut [u8; MAX_HEAD]) -> usize {
    head[0] = 0x80 | opcode;
    if len < 126 {
        head[1] = len as u8;
        2
    } else if len <= u16::MAX as usize {
        head[1] = 126;
        head[2..4].copy_from_slice(&(len as u16).to_be_bytes());
        4
    } else {
        head[1] = 127;
        head[2..10].copy_from_slice(&(len as u64).to_be_bytes());
        10
    }
}

impl Framing for WsFraming {
    fn head(&self, frame: &Out, head: &mut [u8; MAX_HEAD]) -> usize {
        let (opcode, len) = match frame {
            Out::Text(b) => (0x1, b.len()),
            Out::Ping => (0x9, 0),
            Out::Pong(b) => (0xA, b.len()),
            Out::Close(code) => {
                // The status code is the whole payload; it lives in the head.
                head[0] = 0x88;
                head[1] = 2;
                head[2..4].copy_from_slice(&code.to_be_bytes());
                return 4;
            }
        };
        ws_head(opcode, len, head)
    }

    fn payload<'a>(&self, frame: &'a Out) -> &'a [u8] {
        match frame {
            Out::Text(b) | Out::Pong(b) => b,
            Out::Ping | Out::Close(_) => &[],
        }
    }
}

/// The raw TCP transport's framing: a 4-byte big-endian length, then the JSON. Heartbeats are
/// `{"type":"ping"}` frames; there are no close or pong frames.
pub struct TcpFraming;

/// The heartbeat frame of transports without protocol pings.
pub static PING_FRAME: Bytes = Bytes::from_static(br#"{"type":"ping"}"#);

impl Framing for TcpFraming {
    fn head(&self, frame: &Out, head: &mut [u8; MAX_HEAD]) -> usize {
        let len = self.payload(frame).len();
        if len == 0 {
            return 0;
        }
        head[..4].copy_from_slice(&(len as u32).to_be_bytes());
        4
    }

    fn payload<'a>(&self, frame: &'a Out) -> &'a [u8] {
        match frame {
            Out::Text(b) => b,
            Out::Ping => &PING_FRAME,
            Out::Pong(_) | Out::Close(_) => &[],
        }
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// Writes `frames` as the session does (resuming at the offset, waiting when blocked);
    /// returns whether the wire was ever blocked.
    pub(crate) async fn write_all(wire: &dyn Wire, frames: &[Out]) -> bool {
        let (mut next, mut offset, mut blocked_once) = (0, 0, false);
        while next < frames.len() {
            let p = wire.try_write(&mut frames[next..].iter(), offset).unwrap();
            next += p.frames;
            offset = p.offset;
            if p.blocked {
                blocked_once = true;
                std::future::poll_fn(|cx| wire.poll_writable(cx))
                    .await
                    .unwrap();
            }
        }
        assert_eq!(offset, 0);
        blocked_once
    }

    pub(crate) fn framed(f: &dyn Framing, frame: &Out) -> Vec<u8> {
        let mut head = [0u8; MAX_HEAD];
        let n = f.head(frame, &mut head);
        let mut v = head[..n].to_vec();
        v.extend_from_slice(f.payload(frame));
        v
    }

    #[test]
    fn websocket_heads_follow_rfc_6455() {
        let text = |n: usize| Out::Text(Bytes::from(vec![b'x'; n]));
        assert_eq!(framed(&WsFraming, &text(5))[..2], [0x81, 5]);
        assert_eq!(framed(&WsFraming, &text(200))[..4], [0x81, 126, 0, 200]);
        assert_eq!(
            framed(&WsFraming, &text(70_000))[..10],
            [0x81, 127, 0, 0, 0, 0, 0, 1, 0x11, 0x70]
        );
        assert_eq!(framed(&WsFraming, &Out::Ping), [0x89, 0]);
        assert_eq!(
            framed(&WsFraming, &Out::Pong(Bytes::from_static(b"hi"))),
            [0x8A, 2, b'h', b'i']
        );
        assert_eq!(framed(&WsFraming, &Out::Close(1009)), [0x88, 2, 0x03, 0xF1]);
    }

    #[test]
    fn tcp_frames_are_length_prefixed() {
        assert_eq!(
            framed(&TcpFraming, &Out::Text(Bytes::from_static(b"{}"))),
            [0, 0, 0, 2, b'{', b'}']
        );
        assert_eq!(framed(&TcpFraming, &Out::Ping)[4..], *br#"{"type":"ping"}"#);
        assert!(framed(&TcpFraming, &Out::Close(1000)).is_empty());
    }

    /// The read buffer is kept per thread; a nested call (none is made today) gets a fresh one
    /// instead of the one in use.
    #[test]
    fn the_read_buffer_is_the_threads_and_a_nested_call_gets_its_own() {
        let outer = with_read_chunk(|a| {
            a[0] = 7;
            let inner = with_read_chunk(|b| {
                assert_eq!(b[0], 0, "a fresh buffer, not the one in use");
                b.as_ptr() as usize
            });
            assert_ne!(inner, a.as_ptr() as usize);
            a.as_ptr() as usize
        });
        assert_eq!(with_read_chunk(|a| a.as_ptr() as usize), outer, "kept");
    }

    /// A short read leaves the socket's read readiness cleared (no `EAGAIN` read needed), and
    /// the next bytes to arrive make it ready again.
    #[tokio::test]
    async fn a_short_read_clears_readiness_until_more_comes() {
        use std::future::poll_fn;
        use tokio::io::AsyncWriteExt;
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let mut client = TcpStream::connect(listener.local_addr().unwrap())
            .await
            .unwrap();
        let (server, _) = listener.accept().await.unwrap();
        let ready_now = |s: &TcpStream| {
            let waker = std::task::Waker::noop();
            let mut cx = Context::from_waker(waker);
            s.poll_read_ready(&mut cx).is_ready()
        };
        for round in 0..3u8 {
            client.write_all(&[round; 10]).await.unwrap();
            poll_fn(|cx| server.poll_read_ready(cx)).await.unwrap();
            let mut chunk = [0u8; READ_CHUNK];
            assert_eq!(read_chunk(&server, &mut chunk).unwrap(), 10);
            assert_eq!(chunk[..10], [round; 10]);
            assert!(
                !ready_now(&server),
                "round {round}: still ready after a short read"
            );
        }
        // A full chunk does not clear it: more may be waiting.
        client.write_all(&[7u8; READ_CHUNK + 5]).await.unwrap();
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        poll_fn(|cx| server.poll_read_ready(cx)).await.unwrap();
        let mut chunk = [0u8; READ_CHUNK];
        assert_eq!(read_chunk(&server, &mut chunk).unwrap(), READ_CHUNK);
        assert!(ready_now(&server));
        assert_eq!(read_chunk(&server, &mut chunk).unwrap(), 5);
        assert!(!ready_now(&server));
    }

    /// Batches, partial writes and the offset arithmetic, over a real socket pair whose
    /// receiver is drained only at the end.
    #[tokio::test]
    async fn partial_writes_resume_where_they_stopped() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let client = TcpStream::connect(listener.local_addr().unwrap())
            .await
            .unwrap();
        let (server, _) = listener.accept().await.unwrap();
        // Small buffers, so that the writer surely finds them full.
        socket2::SockRef::from(&server)
            .set_send_buffer_size(4096)
            .unwrap();
        socket2::SockRef::from(&client)
            .set_recv_buffer_size(4096)
            .unwrap();
        let wire = SocketWire::new(server, TcpFraming);
        // Enough frames to fill the socket buffers, so some write stops midway.
        let frames: Vec<Out> = (0..600)
            .map(|i| Out::Text(Bytes::from(format!("frame-{i:06}-{}", "y".repeat(100)))))
            .collect();
        let mut expected = Vec::new();
        for f in &frames {
            expected.extend(framed(&TcpFraming, f));
        }
        let reader = tokio::spawn(async move {
            use tokio::io::AsyncReadExt;
            // Let the writer hit a full buffer first.
            tokio::time::sleep(std::time::Duration::from_millis(200)).await;
            let mut got = Vec::new();
            let mut client = client;
            client.read_to_end(&mut got).await.unwrap();
            got
        });
        let blocked_once = write_all(&wire, &frames).await;
        wire.shutdown();
        drop(wire);
        let got = reader.await.unwrap();
        assert!(blocked_once, "the test never filled the socket");
        assert!(got == expected, "bytes differ from the frames written");
    }
}
