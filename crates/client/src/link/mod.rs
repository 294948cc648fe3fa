//! One live connection to one node, whatever the transport: frames out through a channel,
//! frames in through another. Each transport runs as small tasks that end with the link, in a
//! file of its own: [`ws`] (WebSocket), [`tcp`] (length-prefixed frames over TCP or TLS) and
//! [`poll`] (HTTP long-polling).
//!
//! Both channels are bounded ([`INCOMING_BUFFER`], [`OUTGOING_BUFFER`]): when the driver falls
//! behind, the reader stops reading the socket (the server then sees a slow consumer), and a
//! driver sending faster than the socket takes waits. Nothing buffers without bound.

mod poll;
mod tcp;
mod ws;

pub(crate) use poll::open_poll;
pub(crate) use tcp::open_tcp;
pub(crate) use ws::open_ws;

use crate::Transport;
use serde_json::Value;
use std::time::Duration;
use switchboard_proto::{FrameError, ServerFrame};
use tokio::sync::mpsc;
use tokio::task::JoinHandle;

/// Frames read from the server and not yet taken by the driver; when full, the reader waits.
pub(crate) const INCOMING_BUFFER: usize = 256;
/// Frames the driver queued and the writer has not sent yet; when full, the driver waits.
pub(crate) const OUTGOING_BUFFER: usize = 256;

/// Something that came from the server.
#[derive(Debug)]
pub(crate) enum Incoming {
    /// One server frame.
    Frame(ServerFrame),
    /// A frame that could not be decoded (with its `id`, when the envelope was readable).
    Unreadable(FrameError),
    /// A sign of life without a frame (a WebSocket ping or pong, an empty poll answer).
    Alive,
    /// The connection is over, and why.
    Closed(String),
}

/// What the driver hands the writer.
pub(crate) enum Out {
    /// One frame's JSON text.
    Frame(String),
    /// End the connection politely.
    Close,
}

/// Why a node could not be reached or refused the connection.
#[derive(Debug)]
pub(crate) enum OpenError {
    /// The token was refused: no other node will take it either.
    Unauthorized(String),
    /// The WebSocket upgrade was answered with this HTTP status (other than 503): something
    /// between us and the node does not do WebSocket. Long-polling may work.
    UpgradeRefused(u16),
    /// Anything else: try the next node.
    Failed(String),
}

/// A live connection.
pub(crate) struct Link {
    pub transport: Transport,
    out: mpsc::Sender<Out>,
    pub inc: mpsc::Receiver<Incoming>,
    writer: Option<JoinHandle<()>>,
    tasks: Vec<JoinHandle<()>>,
}

impl Link {
    /// Queues one frame, waiting while the outgoing buffer is full; false when the link is
    /// already gone.
    pub async fn send(&self, frame: &Value) -> bool {
        self.out.send(Out::Frame(frame.to_string())).await.is_ok()
    }

    /// Ends the connection politely (WebSocket close, TCP shutdown, `DELETE` of the poll
    /// session), waiting a moment for that to go out.
    pub async fn close(mut self) {
        // The writer may be gone or stuck; the close is a courtesy, so never wait for room.
        let _ = self.out.try_send(Out::Close);
        if let Some(w) = self.writer.take() {
            let _ = tokio::time::timeout(Duration::from_secs(1), w).await;
        }
    }
}

#[cfg(test)]
impl Link {
    /// A link with no connection behind it, for driver tests: what is fed into the returned
    /// sender comes in, what the driver sends stays in the returned receiver.
    pub(crate) fn for_test() -> (Link, mpsc::Sender<Incoming>, mpsc::Receiver<Out>) {
        let (out, out_rx) = mpsc::channel(OUTGOING_BUFFER);
        let (inc_tx, inc) = mpsc::channel(INCOMING_BUFFER);
        let link = Link {
            transport: Transport::Tcp,
            out,
            inc,
            writer: None,
            tasks: Vec::new(),
        };
        (link, inc_tx, out_rx)
    }
}

impl Drop for Link {
    fn drop(&mut self) {
        for t in &self.tasks {
            t.abort();
        }
        if let Some(w) = &self.writer {
            w.abort();
        }
    }
}

/// Decodes one frame and hands it to the driver, waiting while the incoming buffer is full.
async fn forward(inc: &mpsc::Sender<Incoming>, bytes: &[u8]) {
    let _ = inc.send(decode(bytes)).await;
}

fn decode(bytes: &[u8]) -> Incoming {
    match ServerFrame::decode(bytes) {
        Ok(f) => Incoming::Frame(f),
        Err(e) => Incoming::Unreadable(e),
    }
}

/// A writer's last word. It must not wait: the driver may itself be waiting for the writer's
/// room, and the writer ending (dropping its receiver) is what frees it. The reader reports
/// the closed connection anyway.
fn closed(inc: &mpsc::Sender<Incoming>, reason: String) {
    let _ = inc.try_send(Incoming::Closed(reason));
}
