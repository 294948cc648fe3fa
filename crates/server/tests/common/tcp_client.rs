//! A raw TCP test client speaking the length-prefixed framing.

use super::Client;
use serde_json::{Value, json};
use std::net::SocketAddr;
use std::time::Duration;
use tokio::net::TcpStream;

/// A raw TCP client: 4-byte big-endian length, then the JSON frame. It answers the server's
/// `ping` frames with `pong` unless `answer_pings` is turned off.
pub struct TcpClient {
    pub stream: TcpStream,
    buf: Vec<u8>,
    pub answer_pings: bool,
}

impl TcpClient {
    pub async fn connect(addr: SocketAddr) -> TcpClient {
        let stream = TcpStream::connect(addr).await.expect("TCP connect");
        TcpClient {
            stream,
            buf: Vec::new(),
            answer_pings: true,
        }
    }

    /// Writes raw bytes (for framing tests).
    pub async fn write_bytes(&mut self, bytes: &[u8]) -> std::io::Result<()> {
        use tokio::io::AsyncWriteExt;
        self.stream.write_all(bytes).await
    }

    async fn write_frame(&mut self, payload: &[u8]) {
        let mut out = (payload.len() as u32).to_be_bytes().to_vec();
        out.extend_from_slice(payload);
        let _ = self.write_bytes(&out).await;
    }
}

impl Client for TcpClient {
    async fn send(&mut self, frame: Value) {
        self.write_frame(frame.to_string().as_bytes()).await;
    }

    async fn send_raw(&mut self, text: &str) {
        self.write_frame(text.as_bytes()).await;
    }

    async fn next_within(&mut self, d: Duration) -> Result<Option<Value>, ()> {
        use tokio::io::AsyncReadExt;
        let deadline = tokio::time::Instant::now() + d;
        loop {
            if self.buf.len() >= 4 {
                let len = u32::from_be_bytes([self.buf[0], self.buf[1], self.buf[2], self.buf[3]])
                    as usize;
                if self.buf.len() >= 4 + len {
                    let frame: Vec<u8> = self.buf.drain(..4 + len).skip(4).collect();
                    let v: Value = serde_json::from_slice(&frame).expect("server sent JSON");
                    if v["type"] == "ping" && self.answer_pings {
                        self.send(json!({"type": "pong"})).await;
                        continue;
                    }
                    return Ok(Some(v));
                }
            }
            let mut chunk = [0u8; 8192];
            let n = tokio::time::timeout_at(deadline, self.stream.read(&mut chunk))
                .await
                .map_err(|_| ())?;
            match n {
                Ok(0) | Err(_) => return Ok(None),
                Ok(n) => self.buf.extend_from_slice(&chunk[..n]),
            }
        }
    }
}
