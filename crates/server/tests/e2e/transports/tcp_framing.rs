//! What is specific to TCP's length-prefixed framing: frames split into single bytes,
//! oversized, truncated and garbage frames.

use super::*;

// ----- TCP framing -----

#[tokio::test]
async fn tcp_frames_split_into_single_bytes_are_reassembled() {
    let node = TestNode::start().await;
    let (_, token) = node.user("alice").await;
    let mut c = TcpClient::connect(node.tcp_addr()).await;
    let payload = json!({"type": "auth", "id": 1, "token": token}).to_string();
    let mut bytes = (payload.len() as u32).to_be_bytes().to_vec();
    bytes.extend_from_slice(payload.as_bytes());
    for b in bytes {
        c.write_bytes(&[b]).await.unwrap();
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    assert_eq!(c.expect("welcome").await["id"], 1);
    node.stop().await;
}

#[tokio::test]
async fn tcp_oversized_and_truncated_frames_never_hurt_the_node() {
    let node = TestNode::start().await;
    let (_, token) = node.user("alice").await;
    // Over the limit but under the hard limit: skipped without buffering, too_large, goes on.
    let mut c = TcpClient::connect(node.tcp_addr()).await;
    c.send(json!({"type": "auth", "id": 1, "token": token}))
        .await;
    c.expect("welcome").await;
    c.send_raw(&"z".repeat(100_000)).await;
    assert_eq!(c.expect("error").await["code"], "too_large");
    assert_eq!(c.request(json!({"type": "ping"}), 2).await["type"], "pong");

    // A length announcing 2 GiB: too_large, then the connection is closed.
    let mut c = TcpClient::connect(node.tcp_addr()).await;
    c.write_bytes(&0x8000_0000u32.to_be_bytes()).await.unwrap();
    let seen = c.until_closed().await;
    assert_eq!(
        seen.first().map(|f| f["code"].clone()),
        Some(json!("too_large")),
        "{seen:?}"
    );

    // A frame cut short by the client closing: nothing happens to the node.
    let mut c = TcpClient::connect(node.tcp_addr()).await;
    c.write_bytes(&100u32.to_be_bytes()).await.unwrap();
    c.write_bytes(b"{\"type\":").await.unwrap();
    drop(c);
    // Garbage that is not even a length: answered and survived like any bad frame.
    let mut c = TcpClient::connect(node.tcp_addr()).await;
    c.write_bytes(&[0, 0, 0, 3, b'a', b'b', b'c'])
        .await
        .unwrap();
    assert_eq!(c.expect("error").await["code"], "bad_request");

    let (s, _) = node.http.call("GET", "/healthz", None, None).await;
    assert_eq!(s, 200);
    let (_, n) = node.http.call("GET", "/v1/node", None, None).await;
    assert!(
        n["endpoints"]["tcp"]
            .as_str()
            .unwrap()
            .starts_with("tcp://127.0.0.1:")
    );
    node.stop().await;
}
