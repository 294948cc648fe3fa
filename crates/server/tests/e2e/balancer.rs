//! Long-polling behind a plain round-robin balancer: a real nginx in front of two cluster nodes.
//! The classic failure (poll request 2 lands on a node that does not know the session) is
//! reproduced, and shown harmless: the wrong node answers `421 wrong_node` with the session's
//! node-specific URL, and a client that follows it gets every message.
//!
//! Topology, as in a deployment where only the balancer is reachable: nginx round-robins `/`
//! over both nodes, and routes `/n1/` and `/n2/` to one node each; each node's `--public-url`
//! is its path on the balancer.

use crate::common;
use common::*;
use serde_json::{Value, json};
use std::time::Duration;
use switchboard_testkit::{Nginx, RedisServer, free_port};

struct Balanced {
    nginx: Nginx,
    nodes: Vec<TestNode>,
    _redis: RedisServer,
}

/// Redis, two cluster nodes on fixed ports, and nginx in front of them.
async fn balanced() -> Balanced {
    let redis = RedisServer::start();
    let ports = [free_port(), free_port()];
    let nginx = Nginx::start(&format!(
        "upstream rr {{ server 127.0.0.1:{p1}; server 127.0.0.1:{p2}; }}\n\
         server {{\n  listen 127.0.0.1:{{port}};\n  proxy_http_version 1.1;\n  proxy_buffering off;\n  proxy_read_timeout 60s;\n\
           location /n1/ {{ proxy_pass http://127.0.0.1:{p1}/; }}\n\
           location /n2/ {{ proxy_pass http://127.0.0.1:{p2}/; }}\n\
           location / {{ proxy_pass http://rr; }}\n}}",
        p1 = ports[0],
        p2 = ports[1]
    ));
    let mut nodes = Vec::new();
    for (i, port) in ports.iter().enumerate() {
        let (url, public) = (redis.url(), format!("{}/n{}", nginx.url(), i + 1));
        let port = *port;
        nodes.push(
            TestNode::start_with(move |c| {
                c.redis = Some(url);
                c.node_id = format!("n{}", i + 1);
                c.listen = format!("127.0.0.1:{port}");
                c.public_url = Some(public);
                c.lease = Duration::from_millis(1500);
            })
            .await,
        );
    }
    Balanced {
        nginx,
        nodes,
        _redis: redis,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_round_robin_balancer_sends_polls_to_the_wrong_node_and_wrong_node_sets_it_right() {
    let b = balanced().await;
    let lb = Http {
        base: b.nginx.url(),
        client: reqwest::Client::new(),
    };
    let (_, token) = lb.user("walker").await;
    let room = lb.room(&token, "behind nginx", "public").await;
    let conv = format!("room:{room}");

    let (s, opened) = lb
        .call(
            "POST",
            "/v1/poll",
            Some(&token),
            Some(json!({"resume": {conv.clone(): 0}})),
        )
        .await;
    assert_eq!(s, 201, "{opened}");
    let session = opened["session"].as_str().unwrap().to_owned();
    let owner = opened["node_id"].as_str().unwrap().to_owned();
    let direct = opened["poll"].as_str().unwrap().to_owned();
    assert!(
        direct.starts_with(&format!("{}/{owner}/v1/poll/", b.nginx.url())),
        "{direct}"
    );

    // The classic failure: a naive client polls the balancer's shared URL; round robin sends
    // every other request to the node that does not hold the session.
    let naive = format!("{}/v1/poll/{session}", b.nginx.url());
    let mut wrong = 0;
    for _ in 0..6 {
        let resp = reqwest::get(format!("{naive}?after=0&wait_ms=0"))
            .await
            .unwrap();
        match resp.status().as_u16() {
            200 => {}
            421 => {
                wrong += 1;
                let v: Value = resp.json().await.unwrap();
                assert_eq!(v["error"]["code"], "wrong_node");
                assert_eq!(v["error"]["node_id"], owner.as_str());
                assert_eq!(
                    v["error"]["poll"],
                    direct.as_str(),
                    "wrong_node names the session's own URL"
                );
            }
            other => panic!("unexpected {other}"),
        }
    }
    assert!(
        wrong >= 2,
        "round robin should have sent some polls to the other node ({wrong} of 6)"
    );

    // Following it, every message arrives: published through the balancer, on either node.
    let mut poll = PollClient::attach(&lb, &direct, &session);
    let w = poll.expect("welcome").await;
    assert_eq!(w["resumed"][&conv]["recovered"], true);
    for i in 1..=20 {
        lb.publish(&token, &room, json!(i)).await;
    }
    let got = poll.messages(&conv, 20).await;
    let seqs: Vec<u64> = got.iter().map(|m| m["seq"].as_u64().unwrap()).collect();
    assert_eq!(seqs, (1..=20).collect::<Vec<_>>());
    for n in b.nodes {
        n.stop().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_sdk_poll_client_behind_the_balancer_gets_every_message() {
    use switchboard_client::{Client, ClientConfig, Event, TransportChoice};
    let b = balanced().await;
    let lb = Http {
        base: b.nginx.url(),
        client: reqwest::Client::new(),
    };
    let (_, token) = lb.user("sdk-walker").await;
    let room = lb.room(&token, "sdk behind nginx", "public").await;
    let conv = format!("room:{room}");

    // The SDK only knows the balancer; dispatch answers come from either node.
    let mut config = ClientConfig::new(b.nginx.url(), token.clone());
    config.transport = TransportChoice::LongPoll;
    let (client, mut events) = Client::connect(config)
        .await
        .expect("connects through nginx");
    client.subscribe(&conv).await.unwrap();
    // Publishes go through the balancer too, so they land on both nodes.
    for i in 1..=100 {
        lb.publish(&token, &room, json!(i)).await;
    }
    let mut next = 1;
    while next <= 100 {
        let e = tokio::time::timeout(WAIT, events.next())
            .await
            .expect("stalled")
            .expect("ended");
        if let Event::Message(m) = e
            && m.conv == conv
        {
            assert_eq!(m.seq, next, "gap or repeat");
            next += 1;
        }
    }
    client.close().await;
    for n in b.nodes {
        n.stop().await;
    }
}
