//! A minimal HTTP/1.1 keep-alive client, enough for the two servers under test (JSON bodies
//! with `Content-Length` or chunked encoding). Hand-written so the load generator spends as
//! little CPU as possible per request on the machine it shares with the server.

use crate::error::{BenchError, Result};
use crate::target::check_addr;
use std::net::{Ipv4Addr, SocketAddr};
use std::time::Duration;
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::{TcpSocket, TcpStream};

/// Longest wait for one request's answer.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(30);

/// An answer.
#[derive(Debug)]
pub struct Response {
    /// HTTP status code.
    pub status: u16,
    /// The body bytes.
    pub body: Vec<u8>,
}

impl Response {
    /// The body as JSON.
    pub fn json(&self) -> Result<serde_json::Value> {
        serde_json::from_slice(&self.body)
            .map_err(|e| BenchError::Http(format!("status {}: bad JSON body: {e}", self.status)))
    }

    /// Fails unless the status is 2xx, quoting the body.
    pub fn ok(self) -> Result<Response> {
        if (200..300).contains(&self.status) {
            Ok(self)
        } else {
            Err(BenchError::Http(format!(
                "status {}: {}",
                self.status,
                String::from_utf8_lossy(&self.body)
            )))
        }
    }
}

/// One keep-alive connection to a server, reopened when the server closes it.
pub struct HttpConn {
    addr: SocketAddr,
    src: Option<Ipv4Addr>,
    stream: Option<BufReader<TcpStream>>,
    head: String,
}

impl HttpConn {
    /// A connection to `addr` (opened on first use), bound to `src` if given.
    pub fn new(addr: SocketAddr, src: Option<Ipv4Addr>) -> HttpConn {
        HttpConn {
            addr,
            src,
            stream: None,
            head: String::with_capacity(256),
        }
    }

    async fn open(&mut self) -> Result<()> {
        check_addr(self.addr)?;
        let sock = TcpSocket::new_v4().map_err(|e| BenchError::io("socket", e))?;
        if let Some(ip) = self.src {
            sock.set_reuseaddr(true)
                .map_err(|e| BenchError::io("SO_REUSEADDR", e))?;
            sock.bind(SocketAddr::new(ip.into(), 0))
                .map_err(|e| BenchError::io(format!("bind {ip}"), e))?;
        }
        let stream = sock
            .connect(self.addr)
            .await
            .map_err(|e| BenchError::io(format!("connect {}", self.addr), e))?;
        stream.set_nodelay(true).ok();
        self.stream = Some(BufReader::with_capacity(8192, stream));
        Ok(())
    }

    /// Sends one request and reads its answer. A request on a reused connection that fails
    /// before any answer arrives is retried once on a fresh connection (the server may have
    /// closed an idle keep-alive connection).
    pub async fn request(
        &mut self,
        method: &str,
        path: &str,
        headers: &[(&str, &str)],
        body: &[u8],
    ) -> Result<Response> {
        let reused = self.stream.is_some();
        match tokio::time::timeout(REQUEST_TIMEOUT, self.once(method, path, headers, body)).await {
            Ok(Ok(r)) => Ok(r),
            Ok(Err(_)) if reused => {
                self.stream = None;
                tokio::time::timeout(REQUEST_TIMEOUT, self.once(method, path, headers, body))
                    .await
                    .map_err(|_| BenchError::Http(format!("{method} {path}: timed out")))?
            }
            Ok(Err(e)) => {
                self.stream = None;
                Err(e)
            }
            Err(_) => {
                self.stream = None;
                Err(BenchError::Http(format!("{method} {path}: timed out")))
            }
        }
    }

    async fn once(
        &mut self,
        method: &str,
        path: &str,
        headers: &[(&str, &str)],
        body: &[u8],
    ) -> Result<Response> {
        if self.stream.is_none() {
            self.open().await?;
        }
        use std::fmt::Write as _;
        self.head.clear();
        let _ = write!(
            self.head,
            "{method} {path} HTTP/1.1\r\nHost: {}\r\nContent-Length: {}\r\n",
            self.addr,
            body.len()
        );
        if !body.is_empty() {
            self.head.push_str("Content-Type: application/json\r\n");
        }
        for (k, v) in headers {
            let _ = write!(self.head, "{k}: {v}\r\n");
        }
        self.head.push_str("\r\n");
        let stream = self.stream.as_mut().expect("opened above");
        let mut out = Vec::with_capacity(self.head.len() + body.len());
        out.extend_from_slice(self.head.as_bytes());
        out.extend_from_slice(body);
        let res = async {
            stream.get_mut().write_all(&out).await?;
            read_response(stream).await
        }
        .await;
        match res {
            Ok((resp, keep)) => {
                if !keep {
                    self.stream = None;
                }
                Ok(resp)
            }
            Err(e) => {
                self.stream = None;
                Err(BenchError::io(format!("{method} {path}"), e))
            }
        }
    }
}

/// Reads a status line, headers and body; returns the response and whether the connection can
/// be reused.
async fn read_response(r: &mut BufReader<TcpStream>) -> std::io::Result<(Response, bool)> {
    use std::io::{Error, ErrorKind};
    let bad = |m: &str| Error::new(ErrorKind::InvalidData, m.to_string());
    let mut line = String::new();
    loop {
        line.clear();
        if r.read_line(&mut line).await? == 0 {
            return Err(Error::new(ErrorKind::UnexpectedEof, "connection closed"));
        }
        // Skip interim 1xx answers.
        let status: u16 = line
            .split_whitespace()
            .nth(1)
            .and_then(|s| s.parse().ok())
            .ok_or_else(|| bad("bad status line"))?;
        let mut length: Option<usize> = None;
        let mut chunked = false;
        let mut keep = !line.starts_with("HTTP/1.0");
        loop {
            line.clear();
            if r.read_line(&mut line).await? == 0 {
                return Err(Error::new(ErrorKind::UnexpectedEof, "closed in headers"));
            }
            let l = line.trim_end();
            if l.is_empty() {
                break;
            }
            if let Some((k, v)) = l.split_once(':') {
                let (k, v) = (k.trim(), v.trim());
                if k.eq_ignore_ascii_case("content-length") {
                    length = v.parse().ok();
                } else if k.eq_ignore_ascii_case("transfer-encoding") {
                    chunked = v.to_ascii_lowercase().contains("chunked");
                } else if k.eq_ignore_ascii_case("connection") {
                    keep = !v.eq_ignore_ascii_case("close");
                }
            }
        }
        if (100..200).contains(&status) {
            continue;
        }
        let mut body = Vec::new();
        if chunked {
            loop {
                line.clear();
                r.read_line(&mut line).await?;
                let size = usize::from_str_radix(line.trim().split(';').next().unwrap_or(""), 16)
                    .map_err(|_| bad("bad chunk size"))?;
                if size == 0 {
                    // Trailers end with an empty line.
                    loop {
                        line.clear();
                        if r.read_line(&mut line).await? == 0 || line.trim().is_empty() {
                            break;
                        }
                    }
                    break;
                }
                let start = body.len();
                body.resize(start + size, 0);
                r.read_exact(&mut body[start..]).await?;
                let mut crlf = [0u8; 2];
                r.read_exact(&mut crlf).await?;
            }
        } else if let Some(n) = length {
            body.resize(n, 0);
            r.read_exact(&mut body).await?;
        } else if status != 204 && status != 304 {
            r.read_to_end(&mut body).await?;
            keep = false;
        }
        return Ok((Response { status, body }, keep));
    }
}

/// Percent-encodes a path segment or query value (ids and tokens are plain ASCII already; this
/// keeps odd characters from breaking the request line).
pub fn encode_component(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || b"-_.~".contains(&b) {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}
