//! Issue 13, finding 1, reproduced from outside over real sockets: slowloris heads and bodies,
//! connection floods from one address, a huge `Content-Length`, a huge header block, and a
//! client that never reads its responses. Each is bounded now; none of them stops `/healthz`.

use crate::common::*;
use serde_json::{Value, json};
use std::net::SocketAddr;
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::time::Instant;

/// How a connection ended while the test read it.
#[derive(Debug, PartialEq)]
enum End {
    /// The server closed it (EOF or reset), after sending these bytes.
    Closed(Vec<u8>),
    /// Still open when the test stopped waiting.
    Open(Vec<u8>),
}

/// Reads `stream` until the server closes it, for at most `within`.
async fn read_to_close<R: AsyncRead + Unpin>(stream: &mut R, within: Duration) -> End {
    let deadline = Instant::now() + within;
    let mut got = Vec::new();
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        match tokio::time::timeout_at(deadline, stream.read(&mut buf)).await {
            Err(_) => return End::Open(got),
            Ok(Ok(0)) | Ok(Err(_)) => return End::Closed(got),
            Ok(Ok(n)) => got.extend_from_slice(&buf[..n]),
        }
    }
}

/// Sends one request on a fresh socket and reads the whole answer (the server closes, or the
/// test stops waiting after 5 s): (status line, body).
async fn exchange(addr: SocketAddr, request: &str) -> (String, String) {
    let mut s = TcpStream::connect(addr).await.expect("connect");
    s.write_all(request.as_bytes()).await.expect("write");
    let got = match read_to_close(&mut s, Duration::from_secs(5)).await {
        End::Closed(b) | End::Open(b) => String::from_utf8_lossy(&b).into_owned(),
    };
    let status = got.lines().next().unwrap_or_default().to_owned();
    let body = got.split_once("\r\n\r\n").map(|x| x.1).unwrap_or_default();
    (status, body.to_owned())
}

const HEALTHZ: &str = "GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n";

/// The node's count of error answers with `code`.
async fn errors(addr: SocketAddr, code: &str) -> f64 {
    let text = reqwest::get(format!("http://{addr}/metrics"))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    metric(
        &text,
        &format!("switchboard_errors_total{{code=\"{code}\"}}"),
    )
}

/// `n` connections that send nothing.
async fn connected(addr: SocketAddr, n: usize) -> Vec<TcpStream> {
    let mut held = Vec::new();
    for _ in 0..n {
        held.push(TcpStream::connect(addr).await.expect("connect"));
    }
    held
}

async fn healthz_answers(addr: SocketAddr) {
    let (status, _) = exchange(addr, HEALTHZ).await;
    assert!(status.starts_with("HTTP/1.1 200"), "/healthz: {status:?}");
}

#[tokio::test]
async fn partial_heads_are_closed_at_the_header_timeout_and_healthz_answers_meanwhile() {
    let node = TestNode::start_with(|c| c.http.header_timeout = Duration::from_secs(1)).await;
    let started = Instant::now();
    let mut held = Vec::new();
    for _ in 0..60 {
        let mut s = TcpStream::connect(node.addr).await.unwrap();
        s.write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\n")
            .await
            .unwrap();
        held.push(s);
    }
    // And some that connect and say nothing.
    held.extend(connected(node.addr, 10).await);
    // One of them trickles a header byte every 200 ms: the timeout is a total, not reset.
    let mut trickler = TcpStream::connect(node.addr).await.unwrap();
    trickler
        .write_all(b"GET /healthz HTTP/1.1\r\n")
        .await
        .unwrap();
    let trickle = tokio::spawn(async move {
        for _ in 0..25 {
            if trickler.write_all(b"X").await.is_err() {
                return Some(started.elapsed());
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        None
    });
    // A keep-alive connection that got its answer and then idles is closed by the same clock.
    let mut kept = TcpStream::connect(node.addr).await.unwrap();
    kept.write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
        .await
        .unwrap();
    healthz_answers(node.addr).await;
    let End::Closed(answer) = read_to_close(&mut kept, Duration::from_secs(4)).await else {
        panic!("an idle keep-alive connection is held");
    };
    assert!(answer.starts_with(b"HTTP/1.1 200"));
    for s in &mut held {
        let end = read_to_close(s, Duration::from_secs(4)).await;
        assert!(matches!(end, End::Closed(_)), "a partial head still held");
    }
    assert!(started.elapsed() < Duration::from_secs(4));
    let cut = trickle
        .await
        .unwrap()
        .expect("the trickling head was never cut");
    assert!(
        cut < Duration::from_secs(4),
        "trickling head cut after {cut:?}"
    );
    healthz_answers(node.addr).await;
    node.stop().await;
}

#[tokio::test]
async fn a_body_trickled_in_is_cut_at_the_body_timeout() {
    let node = TestNode::start_with(|c| c.http.body_timeout = Duration::from_secs(1)).await;
    let mut s = TcpStream::connect(node.addr).await.unwrap();
    s.write_all(b"POST /v1/users HTTP/1.1\r\nHost: x\r\nContent-Length: 200\r\n\r\n{\"u")
        .await
        .unwrap();
    let started = Instant::now();
    match read_to_close(&mut s, Duration::from_secs(5)).await {
        End::Closed(b) => {
            let text = String::from_utf8_lossy(&b);
            assert!(text.starts_with("HTTP/1.1 4"), "answer: {text}");
        }
        End::Open(_) => panic!("a body that never arrives holds its connection"),
    }
    assert!(started.elapsed() < Duration::from_secs(4));
    node.stop().await;
}

#[tokio::test]
async fn connections_over_the_per_address_cap_get_503_and_upgraded_ones_do_not_count() {
    let node = TestNode::start_with(|c| c.http.max_connections_per_ip = 4).await;
    let mut idle = connected(node.addr, 4).await;
    let (status, body) = exchange(node.addr, HEALTHZ).await;
    assert!(
        status.starts_with("HTTP/1.1 503"),
        "over the cap: {status:?}"
    );
    let v: Value = serde_json::from_str(&body).expect("JSON error body");
    assert_eq!(v["error"]["code"], "overloaded");
    // A place given back is a place for the next client.
    idle.pop();
    eventually(|| async {
        let (status, _) = exchange(node.addr, HEALTHZ).await;
        status
            .starts_with("HTTP/1.1 200")
            .then_some(())
            .ok_or(status)
    })
    .await;
    assert!(errors(node.addr, "overloaded").await >= 1.0);
    drop(idle);
    // WebSockets count while they are HTTP; once upgraded they are sessions, not HTTP.
    let (_, token) = node.user("cap").await;
    let mut sockets = Vec::new();
    for _ in 0..6 {
        sockets.push(node.connect(&token).await);
    }
    healthz_answers(node.addr).await;
    node.stop().await;
}

#[tokio::test]
async fn the_total_http_cap_holds_and_tcp_has_the_per_address_cap() {
    let node = TestNode::start_with(|c| {
        c.http.max_connections = 3;
        c.http.max_connections_per_ip = 0;
        c.tcp_max_connections_per_ip = 2;
    })
    .await;
    let idle = connected(node.addr, 3).await;
    let (status, _) = exchange(node.addr, HEALTHZ).await;
    assert!(
        status.starts_with("HTTP/1.1 503"),
        "over the total: {status:?}"
    );
    let (_a, _b) = (
        TcpClient::connect(node.tcp_addr()).await,
        TcpClient::connect(node.tcp_addr()).await,
    );
    let mut third = TcpClient::connect(node.tcp_addr()).await;
    let refused = third.next_within(WAIT).await.expect("an answer");
    let refused = refused.expect("an error frame before the close");
    assert_eq!(refused["code"], "overloaded", "{refused}");
    drop(idle);
    node.stop().await;
}

#[tokio::test]
async fn a_huge_content_length_gets_413_before_any_body_is_sent() {
    let node = TestNode::start().await;
    let mut s = TcpStream::connect(node.addr).await.unwrap();
    s.write_all(b"POST /v1/users HTTP/1.1\r\nHost: x\r\nContent-Length: 1000000000000\r\n\r\n")
        .await
        .unwrap();
    let End::Closed(b) = read_to_close(&mut s, Duration::from_secs(3)).await else {
        panic!("no answer (and no close) without the body");
    };
    let text = String::from_utf8_lossy(&b);
    assert!(text.starts_with("HTTP/1.1 413"), "answer: {text}");
    let body: Value = serde_json::from_str(text.split_once("\r\n\r\n").unwrap().1).unwrap();
    assert_eq!(body["error"]["code"], "too_large");
    healthz_answers(node.addr).await;
    assert_eq!(errors(node.addr, "too_large").await, 1.0);
    node.stop().await;
}

#[tokio::test]
async fn a_huge_header_block_is_refused() {
    let node = TestNode::start().await;
    let mut s = TcpStream::connect(node.addr).await.unwrap();
    // 64 KiB of headers, never finished: far over the 16 KiB default.
    let mut head = b"GET /healthz HTTP/1.1\r\nHost: x\r\n".to_vec();
    while head.len() < 64 * 1024 {
        head.extend_from_slice(format!("X-Pad-{}: {}\r\n", head.len(), "a".repeat(100)).as_bytes());
    }
    let (mut r, mut w) = s.split();
    let send = async {
        let _ = w.write_all(&head).await;
    };
    let (_, end) = tokio::join!(send, read_to_close(&mut r, Duration::from_secs(3)));
    match end {
        End::Closed(b) => {
            let text = String::from_utf8_lossy(&b);
            assert!(b.is_empty() || text.starts_with("HTTP/1.1 431"), "{text}");
        }
        End::Open(_) => panic!("64 KiB of unfinished headers is held"),
    }
    healthz_answers(node.addr).await;
    node.stop().await;
}

#[tokio::test]
async fn a_client_that_does_not_read_its_responses_is_cut() {
    let node = TestNode::start_with(|c| c.http.write_timeout = Duration::from_secs(1)).await;
    let (_, token) = node.user("reader").await;
    let room = node.http.room(&token, "big", "public").await;
    let text = "x".repeat(60_000);
    for _ in 0..40 {
        node.http
            .publish(&token, &room, json!({"text": text}))
            .await;
    }
    // Ten pipelined pages of ~2.4 MB each, on a socket with a small receive buffer, never read.
    let socket = tokio::net::TcpSocket::new_v4().unwrap();
    socket.set_recv_buffer_size(8 * 1024).unwrap();
    let mut s = socket.connect(node.addr).await.unwrap();
    let get = format!(
        "GET /v1/rooms/{room}/messages?limit=500 HTTP/1.1\r\nHost: x\r\n\
         Authorization: Bearer {token}\r\n\r\n"
    );
    s.write_all(get.repeat(10).as_bytes()).await.unwrap();
    // Long enough for a loaded CI machine to read the pages, fill the socket and time the
    // stall (2.5 s once was not); then reading finds the close. A server that never cut would
    // still be found: all ten pages read and the connection left open.
    tokio::time::sleep(Duration::from_millis(4000)).await;
    let End::Closed(b) = read_to_close(&mut s, Duration::from_secs(15)).await else {
        panic!("a client that does not read is still served");
    };
    let answers = String::from_utf8_lossy(&b).matches("HTTP/1.1 200").count();
    assert!(answers < 10, "all {answers} pages were written");
    healthz_answers(node.addr).await;
    node.stop().await;
}
