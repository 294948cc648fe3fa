//! The direct write path of a WebSocket session on a plain TCP socket: whoever queues a packet
//! (a fan-out thread, a handler) writes its frame to the socket itself when nothing is queued
//! before it, with one `sendmsg` of the frame's head and its parts, under the session's lock.
//! The session's task then wakes only for what the client sends, the heartbeat, and a socket
//! that was full (the rest of a partial write, and what was queued behind it, are its job).
//!
//! Order holds because the check ("is anything queued?") and the write are one step under the
//! lock, and the task writes the queue under the same lock, front first, one frame per write (a
//! client may handle only the first frame of each TCP segment it reads, as the official test
//! suites' clients do, so frames are not packed together).
//!
//! The socket comes out of hyper's upgraded connection through [`TakeSocket`]: by default a
//! connection served as a plain `TcpStream`; an application whose server wraps its streams
//! gives its own (see [`Hooks::take_socket`](super::Hooks::take_socket)). Otherwise the
//! session runs on hyper's upgraded connection, every frame written by its task.

use std::io::{self, IoSlice};
use std::sync::Arc;

use bytes::Bytes;
use hyper::upgrade::Upgraded;
use hyper_util::rt::TokioIo;
use tokio::net::TcpStream;

use super::conn::{Frame, State};
use super::wsframe::{self, opcode};

/// Takes the plain TCP socket and the bytes read past the upgrade request out of hyper's
/// upgraded connection, or gives the connection back when it is not one.
pub type TakeSocket = Arc<dyn Fn(Upgraded) -> Result<(TcpStream, Bytes), Upgraded> + Send + Sync>;

/// The default [`TakeSocket`]: connections served by hyper on a `TokioIo<TcpStream>`.
pub fn plain_tcp(upgraded: Upgraded) -> Result<(TcpStream, Bytes), Upgraded> {
    upgraded
        .downcast::<TokioIo<TcpStream>>()
        .map(|parts| (parts.io.into_inner(), parts.read_buf))
}

/// The most parts one frame's payload is written from (more are joined first).
pub(crate) const MAX_PARTS: usize = 16;

/// Writes the frame of `opcode` whose payload is `parts` joined (`len` bytes: the caller knows
/// it, and it is not summed again per write), from byte `skip` of the framed bytes (head
/// included), with one `sendmsg`; returns the bytes written (0 when the socket is full).
pub(crate) fn write_parts(
    stream: &TcpStream,
    op: u8,
    parts: &[&[u8]],
    len: usize,
    skip: usize,
) -> io::Result<usize> {
    debug_assert_eq!(len, parts.iter().map(|p| p.len()).sum::<usize>());
    let mut head = [0u8; wsframe::MAX_HEADER];
    let used = wsframe::write_header(&mut head, op, len);
    let head = &head[..used];
    if skip == 0 && parts.len() < FEW_PARTS {
        // A whole frame of a few parts (every event the fan-out writes): its slices in order,
        // in an array sized for them, not for the most parts a frame may have.
        let mut slices = [IoSlice::new(head); FEW_PARTS];
        for (slot, part) in slices[1..].iter_mut().zip(parts) {
            *slot = IoSlice::new(part);
        }
        return send(stream, &slices[..=parts.len()]);
    }
    let mut slices = [IoSlice::new(&[]); MAX_PARTS + 1];
    let mut n = 0;
    let mut skip = skip;
    for part in std::iter::once(head).chain(parts.iter().copied()) {
        if skip >= part.len() {
            skip -= part.len();
            continue;
        }
        if n == slices.len() {
            break;
        }
        slices[n] = IoSlice::new(&part[skip..]);
        skip = 0;
        n += 1;
    }
    if n == 0 {
        return Ok(0);
    }
    send(stream, &slices[..n])
}

/// Parts of a frame (its head included) written from an array of this size; more go the
/// general way.
const FEW_PARTS: usize = 8;

/// One `sendmsg` of `slices`; 0 when the socket is full. Straight to the socket: tokio's
/// readiness state matters only when the socket is full, and then the same write through tokio
/// either goes through or clears that state, so that the session's task waits for room.
fn send(stream: &TcpStream, slices: &[IoSlice<'_>]) -> io::Result<usize> {
    let sent = socket2::SockRef::from(stream)
        .send_vectored(slices)
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

/// The opcode and the payload of a queued frame.
pub(crate) fn framed(frame: &Frame) -> (u8, &[u8]) {
    match frame {
        Frame::Text(t) => (opcode::TEXT, t),
        Frame::Binary(b) => (opcode::BINARY, b),
        Frame::Pong(p) => (opcode::PONG, p),
    }
}

/// The bytes `frame` takes on the wire, head included.
pub(crate) fn wire_len(op: u8, payload: usize) -> usize {
    let mut head = [0u8; wsframe::MAX_HEADER];
    wsframe::write_header(&mut head, op, payload) + payload
}

/// Writes `frame` from byte `skip`; returns whether it is now written whole, and how far in.
pub(crate) fn write_frame(stream: &TcpStream, frame: &Frame, skip: usize) -> io::Result<usize> {
    let (op, payload) = framed(frame);
    write_parts(stream, op, &[payload], payload.len(), skip)
}

/// Writes the queue of `st` to its socket, front first (resuming a partly written frame), one
/// frame per write, until it is empty (`Ok(true)`) or the socket is full (`Ok(false)`).
pub(crate) fn flush(st: &mut State) -> io::Result<bool> {
    let Some(stream) = st.socket.clone() else {
        return Ok(st.queue.is_empty());
    };
    while let Some(frame) = st.queue.front() {
        let (op, payload) = framed(frame);
        let total = wire_len(op, payload.len());
        let wrote = write_frame(&stream, frame, st.written)?;
        st.written += wrote;
        if st.written < total {
            return Ok(false);
        }
        st.written = 0;
        st.queued_bytes -= frame.len();
        st.queue.pop_front();
    }
    // An idle session keeps no queue buffer (its first frame, the open packet, made one).
    st.queue = Default::default();
    Ok(true)
}
