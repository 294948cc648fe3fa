//! The raw TCP transport (`tcp://`, or `tls://` over TLS): each frame is a 4-byte big-endian
//! length followed by its JSON.

use super::{INCOMING_BUFFER, Incoming, Link, OUTGOING_BUFFER, OpenError, Out, closed, forward};
use crate::Transport;
use crate::net::Net;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::sync::mpsc;

/// Longest frame read from a TCP peer (the server's own hard limit is far lower).
const MAX_TCP_FRAME: usize = 16 * 1024 * 1024;

/// Opens a TCP connection to `tcp://host:port`, or a TLS one to `tls://host:port` (not yet
/// authenticated).
pub(crate) async fn open_tcp(net: &Net, url: &str, timeout: Duration) -> Result<Link, OpenError> {
    let (tls, addr) = match (url.strip_prefix("tls://"), url.strip_prefix("tcp://")) {
        (Some(addr), _) => (true, addr),
        (None, Some(addr)) => (false, addr),
        _ => return Err(OpenError::Failed(format!("not a tcp:// endpoint: {url}"))),
    };
    let addr = addr.trim_end_matches('/');
    let stream = match tokio::time::timeout(timeout, net.open(addr, tls)).await {
        Err(_) => return Err(OpenError::Failed(format!("{url}: connect timed out"))),
        Ok(Err(e)) => return Err(OpenError::Failed(format!("{url}: {e}"))),
        Ok(Ok(s)) => s,
    };
    let (mut rd, mut wr) = tokio::io::split(stream);
    let (out_tx, mut out_rx) = mpsc::channel::<Out>(OUTGOING_BUFFER);
    let (inc_tx, inc_rx) = mpsc::channel(INCOMING_BUFFER);
    let inc = inc_tx.clone();
    let writer = tokio::spawn(async move {
        while let Some(o) = out_rx.recv().await {
            match o {
                Out::Frame(text) => {
                    let mut buf = Vec::with_capacity(4 + text.len());
                    buf.extend_from_slice(&(text.len() as u32).to_be_bytes());
                    buf.extend_from_slice(text.as_bytes());
                    if let Err(e) = wr.write_all(&buf).await {
                        closed(&inc, format!("write failed: {e}"));
                        return;
                    }
                }
                Out::Close => {
                    let _ = wr.shutdown().await;
                    return;
                }
            }
        }
    });
    let reader = tokio::spawn(async move {
        let reason = loop {
            let mut len = [0u8; 4];
            if let Err(e) = rd.read_exact(&mut len).await {
                break format!("connection closed: {e}");
            }
            let len = u32::from_be_bytes(len) as usize;
            if len > MAX_TCP_FRAME {
                break format!("server frame of {len} bytes is too large");
            }
            let mut frame = vec![0u8; len];
            if let Err(e) = rd.read_exact(&mut frame).await {
                break format!("connection closed: {e}");
            }
            forward(&inc_tx, &frame).await;
        };
        let _ = inc_tx.send(Incoming::Closed(reason)).await;
    });
    Ok(Link {
        transport: Transport::Tcp,
        out: out_tx,
        inc: inc_rx,
        writer: Some(writer),
        tasks: vec![reader],
    })
}
