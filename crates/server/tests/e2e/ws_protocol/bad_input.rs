//! Bad input on a WebSocket: malformed, unknown and oversized frames get errors and the
//! connection survives; a connection that keeps sending garbage is closed.

use super::*;

#[tokio::test]
async fn malformed_unknown_and_oversized_frames_get_errors_and_the_connection_survives() {
    let node = TestNode::start().await;
    let (_, token) = node.user("alice").await;
    let mut c = node.connect(&token).await;

    c.send_raw("{not json").await;
    let e = c.expect("error").await;
    assert_eq!(e["code"], "bad_request");
    assert_eq!(e["id"], Value::Null);

    c.send_raw(r#"{"type":"teleport","id":"x1"}"#).await;
    let e = c.expect("error").await;
    assert_eq!(
        (e["id"].clone(), e["code"].clone()),
        (json!("x1"), json!("bad_request"))
    );

    c.send_raw(r#"{"type":"publish","id":5,"conv":"room:r"}"#)
        .await;
    let e = c.expect("error").await;
    assert_eq!(e["id"], 5);
    assert!(e["message"].as_str().unwrap().contains("body"), "{e}");

    c.send_raw(r#"{"type":"subscribe","id":6,"conv":"lobby"}"#)
        .await;
    assert_eq!(c.expect("error").await["code"], "bad_request");

    // Over 64 KiB: too_large, and the connection goes on.
    let big = json!({"type": "publish", "id": 8, "conv": "room:r", "body": "x".repeat(70_000)});
    c.send(big).await;
    assert_eq!(c.expect("error").await["code"], "too_large");
    assert_eq!(c.request(json!({"type": "ping"}), 9).await["type"], "pong");

    // Far over the limit: the socket is closed with 1009 (message too big), and the node is fine.
    let huge = "y".repeat(1_000_000);
    let _ = c.ws.send(WsMessage::text(huge)).await;
    assert_eq!(close_code(&mut c).await, 1009);
    let (s, _) = node.http.call("GET", "/healthz", None, None).await;
    assert_eq!(s, 200);
    node.stop().await;
}

/// Reads until the server's close frame and returns its status code; panics if the connection
/// ends without one.
async fn close_code(c: &mut WsClient) -> u16 {
    loop {
        match tokio::time::timeout(WAIT, c.ws.next()).await {
            Err(_) => panic!("no close frame within {WAIT:?}"),
            Ok(Some(Ok(WsMessage::Close(Some(frame))))) => return frame.code.into(),
            Ok(Some(Ok(WsMessage::Close(None)))) => panic!("a close frame without a code"),
            Ok(Some(Ok(_))) => continue,
            Ok(Some(Err(e))) => panic!("the connection failed before its close frame: {e}"),
            Ok(None) => panic!("the connection ended without a close frame"),
        }
    }
}

#[tokio::test]
async fn a_connection_that_keeps_sending_garbage_is_closed() {
    let node = TestNode::start().await;
    let (_, token) = node.user("alice").await;
    let mut c = node.connect(&token).await;
    for _ in 0..30 {
        if c.ws.send(WsMessage::text("garbage")).await.is_err() {
            break;
        }
    }
    let seen = c.until_closed().await;
    let last = seen.last().unwrap();
    assert_eq!(last["type"], "disconnect");
    assert_eq!(last["reason"], "protocol_error");
    node.stop().await;
}
