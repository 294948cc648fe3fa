//! Resume over a WebSocket: a refused entry names its conversation; resume on auth replays,
//! then goes live, and says when history is gone.

use super::*;

#[tokio::test]
async fn a_refused_resume_entry_names_its_conversation() {
    let node = TestNode::start().await;
    let (_, alice) = node.user("alice").await;
    let (bob_id, bob) = node.user("bob").await;
    let secret = node.http.room(&bob, "secret", "private").await;
    let (theirs, private) = (format!("user:{bob_id}"), format!("room:{secret}"));
    let mut c = WsClient::connect(&node.ws_url()).await;
    let resume = json!({theirs.clone(): 0, private.clone(): 0});
    c.send(json!({"type": "auth", "id": 1, "token": alice, "resume": resume}))
        .await;
    let w = c.expect("welcome").await;
    assert!(w["resumed"].get(&theirs).is_none() && w["resumed"].get(&private).is_none());
    let mut refused = Vec::new();
    for _ in 0..2 {
        let e = c.expect("error").await;
        assert_eq!(e["id"], 1);
        let conv = e["conv"]
            .as_str()
            .expect("the refused conv, structured")
            .to_owned();
        assert!(
            e["message"]
                .as_str()
                .unwrap()
                .starts_with(&format!("{conv}: "))
        );
        refused.push((conv, e["code"].as_str().unwrap().to_owned()));
    }
    refused.sort();
    let mut want = vec![
        (theirs, "forbidden".to_owned()),
        (private, "not_member".to_owned()),
    ];
    want.sort();
    assert_eq!(refused, want);
}

#[tokio::test]
async fn resume_on_auth_replays_then_goes_live_and_says_when_history_is_gone() {
    let node = TestNode::start_with(|c| c.history_max_messages = 5).await;
    let (_, alice) = node.user("alice").await;
    let room = node.http.room(&alice, "lobby", "public").await;
    let conv = format!("room:{room}");
    for i in 1..=4 {
        node.http.publish(&alice, &room, json!(i)).await;
    }
    let mut c = WsClient::connect(&node.ws_url()).await;
    c.send(json!({"type": "auth", "id": 1, "token": alice, "resume": {conv.clone(): 2}}))
        .await;
    let w = c.expect("welcome").await;
    assert_eq!(w["resumed"][&conv]["recovered"], true);
    assert_eq!(w["resumed"][&conv]["from_seq"], 3);
    let got = c.messages(&conv, 2).await;
    assert_eq!(
        (got[0]["seq"].clone(), got[1]["seq"].clone()),
        (json!(3), json!(4))
    );
    // resume subscribed the connection: live messages follow.
    node.http.publish(&alice, &room, json!(5)).await;
    assert_eq!(c.messages(&conv, 1).await[0]["seq"], 5);

    // History keeps 5 messages: a client at seq 2 of 20 cannot be recovered.
    for i in 6..=20 {
        node.http.publish(&alice, &room, json!(i)).await;
    }
    let mut c = WsClient::connect(&node.ws_url()).await;
    c.send(json!({"type": "auth", "token": alice, "resume": {conv.clone(): 2}}))
        .await;
    let w = c.expect("welcome").await;
    assert_eq!(w["resumed"][&conv]["recovered"], false);
    assert_eq!(w["resumed"][&conv]["from_seq"], 16);
    let got = c.messages(&conv, 5).await;
    assert_eq!(
        got.iter()
            .map(|m| m["seq"].as_u64().unwrap())
            .collect::<Vec<_>>(),
        vec![16, 17, 18, 19, 20]
    );

    // Another epoch: not recovered either.
    let mut c = node.connect(&alice).await;
    let r = c
        .request(
            json!({"type": "subscribe", "conv": conv, "since": 18, "epoch": "some-other-epoch"}),
            2,
        )
        .await;
    assert_eq!(r["recovered"], false);
    node.stop().await;
}
