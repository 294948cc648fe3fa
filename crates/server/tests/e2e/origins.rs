//! Origin checks (issue 17 part 3), from outside: real HTTP requests and WebSocket upgrades
//! with and without `Origin`, a preflight, and the default (the public URL's origin).

use crate::common::{TestNode, WAIT};
use switchboard_gateway::origin::OriginPolicy;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// Sends one raw HTTP/1.1 request and returns the response head (status line and headers).
async fn raw(node: &TestNode, request: String) -> String {
    let mut s = TcpStream::connect(node.addr).await.unwrap();
    s.write_all(request.as_bytes()).await.unwrap();
    let mut got = Vec::new();
    let mut buf = [0u8; 4096];
    tokio::time::timeout(WAIT, async {
        while !got.windows(4).any(|w| w == b"\r\n\r\n") {
            let n = s.read(&mut buf).await.unwrap();
            assert!(n > 0, "closed before the head: {got:?}");
            got.extend_from_slice(&buf[..n]);
        }
    })
    .await
    .expect("an answer");
    String::from_utf8_lossy(&got).to_ascii_lowercase()
}

fn upgrade(node: &TestNode, origin: Option<&str>) -> String {
    let origin = origin.map_or(String::new(), |o| format!("Origin: {o}\r\n"));
    format!(
        "GET /v1/ws HTTP/1.1\r\nHost: {}\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\
         Sec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n{origin}\r\n",
        node.addr
    )
}

#[tokio::test]
async fn websocket_upgrades_from_other_origins_are_refused_with_403() {
    let node = TestNode::start_with(|c| {
        c.allowed_origins = Some(OriginPolicy::parse("https://app.example.com").unwrap());
    })
    .await;
    let ok = raw(&node, upgrade(&node, Some("https://app.example.com"))).await;
    assert!(ok.starts_with("http/1.1 101"), "{ok}");
    let bad = raw(&node, upgrade(&node, Some("https://evil.example.com"))).await;
    assert!(bad.starts_with("http/1.1 403"), "{bad}");
    let native = raw(&node, upgrade(&node, None)).await;
    assert!(native.starts_with("http/1.1 101"), "{native}");
}

#[tokio::test]
async fn long_poll_and_its_cors_answers_follow_the_list() {
    let node = TestNode::start_with(|c| {
        c.allowed_origins =
            Some(OriginPolicy::parse("https://app.example.com, http://localhost:3000").unwrap());
    })
    .await;
    let (_, token) = node.user("olga").await;
    let client = reqwest::Client::new();
    let url = format!("http://{}/v1/poll", node.addr);
    // Allowed: the answer carries the CORS header naming the origin.
    let r = client
        .post(&url)
        .bearer_auth(&token)
        .header("origin", "http://localhost:3000")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 201);
    assert_eq!(
        r.headers()["access-control-allow-origin"],
        "http://localhost:3000"
    );
    // Not allowed: 403 in the error shape, and no CORS header.
    let r = client
        .post(&url)
        .bearer_auth(&token)
        .header("origin", "http://localhost:3001")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 403);
    assert!(r.headers().get("access-control-allow-origin").is_none());
    let body: serde_json::Value = r.json().await.unwrap();
    assert_eq!(body["error"]["code"], "forbidden");
    // Without an Origin (a native client): not checked, no CORS header.
    let r = client.post(&url).bearer_auth(&token).send().await.unwrap();
    assert_eq!(r.status(), 201);
    assert!(r.headers().get("access-control-allow-origin").is_none());
    // A preflight from an allowed origin, and from another.
    let preflight = |origin: &'static str| {
        client
            .request(reqwest::Method::OPTIONS, &url)
            .header("origin", origin)
            .header("access-control-request-method", "POST")
            .header("access-control-request-headers", "authorization")
            .send()
    };
    let r = preflight("https://app.example.com").await.unwrap();
    assert_eq!(r.status(), 204);
    assert_eq!(
        r.headers()["access-control-allow-origin"],
        "https://app.example.com"
    );
    let methods = r.headers()["access-control-allow-methods"]
        .to_str()
        .unwrap();
    assert!(methods.contains("POST"), "{methods}");
    let allowed = r.headers()["access-control-allow-headers"]
        .to_str()
        .unwrap();
    assert!(allowed.contains("authorization"), "{allowed}");
    let r = preflight("https://evil.example.com").await.unwrap();
    assert_eq!(r.status(), 403);
}

#[tokio::test]
async fn by_default_only_the_public_urls_origin_is_allowed() {
    let node = TestNode::start().await;
    let own = format!("http://{}", node.addr);
    let ok = raw(&node, upgrade(&node, Some(&own))).await;
    assert!(ok.starts_with("http/1.1 101"), "{ok}");
    let bad = raw(&node, upgrade(&node, Some("http://localhost:1"))).await;
    assert!(bad.starts_with("http/1.1 403"), "{bad}");
    // `*` lets every origin in.
    let any = TestNode::start_with(|c| c.allowed_origins = Some(OriginPolicy::Any)).await;
    let ok = raw(&any, upgrade(&any, Some("http://localhost:1"))).await;
    assert!(ok.starts_with("http/1.1 101"), "{ok}");
}

#[tokio::test]
async fn socket_io_follows_the_same_list() {
    let node = TestNode::start_with(|c| {
        c.allowed_origins = Some(OriginPolicy::parse("https://app.example.com").unwrap());
    })
    .await;
    let handshake = |origin: &str| {
        format!(
            "GET /socket.io/?EIO=4&transport=polling HTTP/1.1\r\nHost: {}\r\nOrigin: {origin}\r\n\r\n",
            node.addr
        )
    };
    let ok = raw(&node, handshake("https://app.example.com")).await;
    assert!(ok.starts_with("http/1.1 200"), "{ok}");
    assert!(
        ok.contains("access-control-allow-origin: https://app.example.com"),
        "{ok}"
    );
    let bad = raw(&node, handshake("https://evil.example.com")).await;
    assert!(bad.starts_with("http/1.1 403"), "{bad}");
}

#[tokio::test]
async fn a_page_the_node_served_under_another_name_is_same_origin() {
    // The public URL says 127.0.0.1; a browser that opened the chat as `localhost` sends
    // `Origin: http://localhost:<port>` with `Host: localhost:<port>`.
    let node = TestNode::start().await;
    let host = format!("localhost:{}", node.addr.port());
    let request = |origin: &str| {
        format!(
            "GET /v1/ws HTTP/1.1\r\nHost: {host}\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\
             Sec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\
             Origin: {origin}\r\n\r\n"
        )
    };
    let own = raw(&node, request(&format!("http://{host}"))).await;
    assert!(own.starts_with("http/1.1 101"), "{own}");
    let other_port = raw(&node, request("http://localhost:1")).await;
    assert!(other_port.starts_with("http/1.1 403"), "{other_port}");
}
