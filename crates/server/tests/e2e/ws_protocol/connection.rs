//! A WebSocket connection's life: auth in its three forms, frames before auth, silence and
//! missed heartbeats, and shutdown reaching connections that never authenticated.

use super::*;

#[tokio::test]
async fn auth_by_frame_header_or_query_and_bad_tokens() {
    let node = TestNode::start().await;
    let (uid, token) = node.user("alice").await;

    // By frame: welcome echoes the id and describes the connection.
    let mut c = WsClient::connect(&node.ws_url()).await;
    c.send(json!({"type": "auth", "id": 7, "token": token}))
        .await;
    let w = c.expect("welcome").await;
    assert_eq!(w["id"], 7);
    assert_eq!(w["user_id"], uid.as_str());
    assert_eq!(w["node_id"], "n_test");
    assert!(w["conn_id"].as_str().unwrap().starts_with("c_"));
    assert_eq!(w["heartbeat_ms"], 25_000);

    // By header: welcome comes unasked, with a null id.
    let mut req = node.ws_url().into_client_request().unwrap();
    req.headers_mut()
        .insert("authorization", format!("Bearer {token}").parse().unwrap());
    let (ws, _) = tokio_tungstenite::connect_async(req).await.unwrap();
    let mut c = WsClient { ws };
    let w = c.expect("welcome").await;
    assert_eq!(w["id"], Value::Null);
    assert_eq!(w["user_id"], uid.as_str());

    // By query.
    let mut c = WsClient::connect(&format!("{}?token={token}", node.ws_url())).await;
    assert_eq!(c.expect("welcome").await["user_id"], uid.as_str());

    // A bad token on the upgrade is refused with 401.
    let err = tokio_tungstenite::connect_async(format!("{}?token=nope", node.ws_url()))
        .await
        .unwrap_err();
    match err {
        tokio_tungstenite::tungstenite::Error::Http(resp) => assert_eq!(resp.status(), 401),
        other => panic!("expected HTTP 401, got {other:?}"),
    }

    // A bad token in the frame: unauthorized, then the connection is closed.
    let mut c = WsClient::connect(&node.ws_url()).await;
    c.send(json!({"type": "auth", "id": 1, "token": "sb_bogus"}))
        .await;
    let seen = c.until_closed().await;
    assert_eq!(seen.len(), 1, "{seen:?}");
    assert_eq!(seen[0]["type"], "error");
    assert_eq!(seen[0]["code"], "unauthorized");
    assert_eq!(seen[0]["id"], 1);
    node.stop().await;
}

#[tokio::test]
async fn frames_before_auth_are_refused_and_silence_is_cut_off() {
    let node = TestNode::start_with(|c| c.limits.auth_timeout = Duration::from_millis(500)).await;
    let mut c = WsClient::connect(&node.ws_url()).await;
    c.send(json!({"type": "subscribe", "id": 3, "conv": "room:x"}))
        .await;
    let e = c.expect("error").await;
    assert_eq!(
        (e["id"].clone(), e["code"].clone()),
        (json!(3), json!("unauthorized"))
    );
    // ping works before auth, and the connection is still open...
    let p = c.request(json!({"type": "ping"}), 4).await;
    assert_eq!(p["type"], "pong");
    // ...until the auth timeout closes it.
    let started = std::time::Instant::now();
    let seen = c.until_closed().await;
    assert!(started.elapsed() < Duration::from_secs(3));
    assert!(seen.iter().any(|f| f["code"] == "unauthorized"), "{seen:?}");
    node.stop().await;
}

#[tokio::test]
async fn dead_peers_are_dropped_after_two_missed_heartbeats() {
    let node = TestNode::start_with(|c| c.limits.heartbeat = Duration::from_millis(300)).await;
    let (uid, token) = node.user("alice").await;
    // A raw TCP client that completes the upgrade by hand and then never answers pings.
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut s = tokio::net::TcpStream::connect(node.addr).await.unwrap();
    let req = format!(
        "GET /v1/ws?token={token} HTTP/1.1\r\nHost: {}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n",
        node.addr
    );
    s.write_all(req.as_bytes()).await.unwrap();
    let online = |n: u64| {
        let http = node.http.clone();
        let (uid, token) = (uid.clone(), token.clone());
        async move {
            let deadline = std::time::Instant::now() + Duration::from_secs(5);
            loop {
                let (_, v) = http
                    .get(&format!("/v1/presence/users?ids={uid}"), &token)
                    .await;
                if v["users"][&uid]["connections"].as_u64().unwrap_or(0) == n {
                    return;
                }
                assert!(
                    std::time::Instant::now() < deadline,
                    "presence never reached {n}: {v}"
                );
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
    };
    online(1).await;
    // Keep reading (so writes do not block) but never answer.
    let reader = tokio::spawn(async move {
        let mut buf = [0u8; 4096];
        while let Ok(n) = s.read(&mut buf).await {
            if n == 0 {
                break;
            }
        }
    });
    online(0).await;
    reader.abort();
    node.stop().await;
}

#[tokio::test]
async fn shutdown_reaches_connections_that_never_authenticated() {
    let node = TestNode::start().await;
    let mut anon = WsClient::connect(&node.ws_url()).await;
    // Make sure the connection is open on the server before shutting down.
    assert_eq!(
        anon.request(json!({"type": "ping"}), 1).await["type"],
        "pong"
    );
    let started = std::time::Instant::now();
    let stop = tokio::spawn(node.stop());
    let frames = anon.until_closed().await;
    let kinds: Vec<&str> = frames.iter().filter_map(|f| f["type"].as_str()).collect();
    assert_eq!(kinds, vec!["reconnect", "disconnect"], "{frames:?}");
    stop.await.unwrap();
    assert!(
        started.elapsed() < Duration::from_secs(3),
        "shutdown waited {:?}",
        started.elapsed()
    );
}
