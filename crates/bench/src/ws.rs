//! WebSocket connections for the load: a TCP socket bound to a chosen 127.0.0.x source address
//! (so more than one address's worth of ephemeral ports can be used), then the WebSocket
//! handshake over that stream with small buffers, so 10,000s of client connections fit in a
//! worker.

use crate::error::{BenchError, Result};
use crate::target::check_addr;
use futures_util::{SinkExt, StreamExt};
use std::net::{Ipv4Addr, SocketAddr};
use std::time::Duration;
use tokio::net::{TcpSocket, TcpStream};
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;
use tokio_tungstenite::{WebSocketStream, client_async_with_config};

/// A client WebSocket over plain TCP.
pub type Ws = WebSocketStream<TcpStream>;

/// Longest wait for a TCP connect plus the WebSocket handshake.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(20);

/// Opens `ws://addr{path}` from `src` (or the kernel's choice).
pub async fn connect(addr: SocketAddr, src: Option<Ipv4Addr>, path: &str) -> Result<Ws> {
    check_addr(addr)?;
    let fut = async {
        let sock = TcpSocket::new_v4().map_err(|e| BenchError::io("socket", e))?;
        // Lets a port still in TIME_WAIT from an earlier run be bound again.
        sock.set_reuseaddr(true)
            .map_err(|e| BenchError::io("SO_REUSEADDR", e))?;
        if let Some(ip) = src {
            sock.bind(SocketAddr::new(ip.into(), 0))
                .map_err(|e| BenchError::io(format!("bind {ip}"), e))?;
        }
        let stream = sock
            .connect(addr)
            .await
            .map_err(|e| BenchError::io(format!("connect {addr}"), e))?;
        stream.set_nodelay(true).ok();
        let config = WebSocketConfig::default()
            .read_buffer_size(4096)
            .write_buffer_size(0);
        let (ws, _) = client_async_with_config(format!("ws://{addr}{path}"), stream, Some(config))
            .await
            .map_err(|e| BenchError::Ws(format!("handshake with {addr}: {e}")))?;
        Ok(ws)
    };
    tokio::time::timeout(CONNECT_TIMEOUT, fut)
        .await
        .map_err(|_| BenchError::Ws(format!("connect to {addr}: timed out")))?
}

/// The next text frame (binary frames are read as UTF-8), skipping control frames. Fails when
/// the connection ends or nothing arrives within `wait`.
pub async fn next_text(ws: &mut Ws, wait: Duration) -> Result<String> {
    let deadline = tokio::time::Instant::now() + wait;
    loop {
        let msg = tokio::time::timeout_at(deadline, ws.next())
            .await
            .map_err(|_| BenchError::Ws("no frame from the server in time".into()))?;
        match msg {
            Some(Ok(Message::Text(t))) => return Ok(t.as_str().to_owned()),
            Some(Ok(Message::Binary(b))) => return Ok(String::from_utf8_lossy(&b).into_owned()),
            Some(Ok(Message::Close(c))) => {
                return Err(BenchError::Ws(format!("closed by the server: {c:?}")));
            }
            Some(Ok(_)) => continue,
            Some(Err(e)) => return Err(BenchError::Ws(e.to_string())),
            None => return Err(BenchError::Ws("closed by the server".into())),
        }
    }
}

/// Sends one text frame.
pub async fn send_text(ws: &mut Ws, text: String) -> Result<()> {
    ws.send(Message::text(text))
        .await
        .map_err(|e| BenchError::Ws(e.to_string()))
}
