//! Admission across transports: a full node refuses clients with `overloaded`, and clients
//! racing over every transport never exceed `max_connections`.

use super::*;

#[tokio::test]
async fn a_full_node_refuses_tcp_clients_with_overloaded() {
    let node = TestNode::start_with(|c| c.limits.max_connections = 1).await;
    let (_, token) = node.user("alice").await;
    let _first = node.connect_over(Kind::Tcp, &token).await;
    let mut second = TcpClient::connect(node.tcp_addr()).await;
    let seen = second.until_closed().await;
    assert_eq!(seen.len(), 1);
    assert_eq!(seen[0]["code"], "overloaded");
    node.stop().await;
}

/// One client racing for a slot: `Some(client)` when the node took it, `None` when it
/// answered `overloaded`.
async fn try_to_connect(node: &TestNode, kind: Kind, token: &str) -> Option<AnyClient> {
    match kind {
        Kind::Ws => {
            // With a token the node decides at the upgrade: 101 is admitted, 503 is not.
            let url = format!("{}?token={token}", node.ws_url());
            let (ws, _) = tokio_tungstenite::connect_async(url).await.ok()?;
            Some(AnyClient::Ws(WsClient { ws }))
        }
        Kind::Tcp => {
            let mut c = TcpClient::connect(node.tcp_addr()).await;
            c.send(json!({"type": "auth", "id": "auth", "token": token}))
                .await;
            let first = c.next().await.expect("a welcome or an overloaded error");
            if first["type"] == "welcome" {
                return Some(AnyClient::Tcp(c));
            }
            assert_eq!(first["code"], "overloaded", "{first}");
            None
        }
        Kind::Poll => match PollClient::open(&node.http, token, None).await {
            Ok(p) => Some(AnyClient::Poll(p)),
            Err((status, v)) => {
                assert_eq!((status, &v["error"]["code"]), (503, &json!("overloaded")));
                None
            }
        },
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn clients_racing_over_every_transport_never_exceed_max_connections() {
    const LIMIT: usize = 3;
    // On Redis the token check of an upgrade or a poll session is a round trip; with Redis
    // paused it is the window between admission and the session's start, and every racer
    // falls into it.
    let redis = switchboard_testkit::RedisServer::start();
    let node = TestNode::start_with(|c| {
        c.limits.max_connections = LIMIT;
        c.redis = Some(redis.url());
    })
    .await;
    let (_, token) = node.user("alice").await;
    // Thirty clients at once, half WebSocket, half long-poll, for three slots. Admission that
    // checks a count and registers the session later (after the token check, after the
    // upgrade) lets several of them through on the same last slot. (TCP is left out of the
    // race: its clients are admitted at `accept`, before any token, and would take the slots
    // before the others could race for them; it is checked below.)
    assert!(redis.command("CLIENT PAUSE 300 ALL").starts_with("+OK"));
    let kinds = [Kind::Ws, Kind::Poll];
    let tries = (0..30).map(|i| try_to_connect(&node, kinds[i % 2], &token));
    let admitted: Vec<AnyClient> = futures_util::future::join_all(tries)
        .await
        .into_iter()
        .flatten()
        .collect();
    assert!(!admitted.is_empty(), "someone got a slot");
    assert!(
        admitted.len() <= LIMIT,
        "{} clients admitted for {LIMIT} slots",
        admitted.len()
    );
    let (_, n) = node.http.call("GET", "/v1/node", None, None).await;
    assert!(n["connections"].as_u64().unwrap() <= LIMIT as u64, "{n}");
    // Whatever is left, every transport shares it.
    let more = (admitted.len()..=LIMIT).map(|_| try_to_connect(&node, Kind::Tcp, &token));
    let tcp: Vec<AnyClient> = futures_util::future::join_all(more)
        .await
        .into_iter()
        .flatten()
        .collect();
    assert_eq!(
        admitted.len() + tcp.len(),
        LIMIT,
        "TCP takes only the free slots"
    );
    node.stop().await;
}
