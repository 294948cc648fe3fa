//! The WebSocket transport (`ws://`, or `wss://` over TLS): one text frame per server frame.

use super::{INCOMING_BUFFER, Incoming, Link, OUTGOING_BUFFER, OpenError, Out, closed, forward};
use crate::Transport;
use crate::net::Net;
use futures_util::{SinkExt, StreamExt};
use std::time::Duration;
use tokio::sync::mpsc;
use tokio_tungstenite::tungstenite;
use tokio_tungstenite::tungstenite::Message as WsMessage;

/// Opens a WebSocket to a `ws://` or `wss://` `url` (not yet authenticated).
pub(crate) async fn open_ws(net: &Net, url: &str, timeout: Duration) -> Result<Link, OpenError> {
    let (tls, rest) = match (url.strip_prefix("wss://"), url.strip_prefix("ws://")) {
        (Some(rest), _) => (true, rest),
        (None, Some(rest)) => (false, rest),
        _ => return Err(OpenError::Failed(format!("not a ws:// URL: {url}"))),
    };
    let host_port = rest.split('/').next().unwrap_or(rest);
    let connect = async {
        let io = net
            .open(host_port, tls)
            .await
            .map_err(|e| tungstenite::Error::Io(std::io::Error::other(e)))?;
        tokio_tungstenite::client_async(url, io).await
    };
    let ws = match tokio::time::timeout(timeout, connect).await {
        Err(_) => return Err(OpenError::Failed(format!("{url}: connect timed out"))),
        Ok(Err(tungstenite::Error::Http(resp))) => {
            let status = resp.status().as_u16();
            return Err(match status {
                503 => OpenError::Failed(format!("{url}: node overloaded or draining")),
                s => OpenError::UpgradeRefused(s),
            });
        }
        Ok(Err(e)) => return Err(OpenError::Failed(format!("{url}: {e}"))),
        Ok(Ok((ws, _))) => ws,
    };
    let (mut sink, mut stream) = ws.split();
    let (out_tx, mut out_rx) = mpsc::channel::<Out>(OUTGOING_BUFFER);
    let (inc_tx, inc_rx) = mpsc::channel(INCOMING_BUFFER);
    let inc = inc_tx.clone();
    let writer = tokio::spawn(async move {
        while let Some(o) = out_rx.recv().await {
            match o {
                Out::Frame(text) => {
                    if let Err(e) = sink.send(WsMessage::text(text)).await {
                        closed(&inc, format!("write failed: {e}"));
                        return;
                    }
                }
                Out::Close => {
                    let _ = sink.send(WsMessage::Close(None)).await;
                    let _ = sink.close().await;
                    return;
                }
            }
        }
    });
    let reader = tokio::spawn(async move {
        let reason = loop {
            match stream.next().await {
                None => break "connection closed".to_owned(),
                Some(Err(e)) => break format!("read failed: {e}"),
                Some(Ok(WsMessage::Text(t))) => forward(&inc_tx, t.as_bytes()).await,
                Some(Ok(WsMessage::Binary(b))) => forward(&inc_tx, &b).await,
                Some(Ok(WsMessage::Close(_))) => break "closed by the server".to_owned(),
                Some(Ok(_)) => {
                    let _ = inc_tx.send(Incoming::Alive).await;
                }
            }
        };
        let _ = inc_tx.send(Incoming::Closed(reason)).await;
    });
    Ok(Link {
        transport: Transport::WebSocket,
        out: out_tx,
        inc: inc_rx,
        writer: Some(writer),
        tasks: vec![reader],
    })
}
