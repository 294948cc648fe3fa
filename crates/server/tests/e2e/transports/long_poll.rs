//! What is specific to long-polling: lost poll responses, `wait_ms`, newer polls releasing
//! older ones, and sessions of other nodes.

use super::*;

// ----- long-polling -----

#[tokio::test]
async fn a_lost_poll_response_loses_nothing_and_frames_keep_their_pseq() {
    let node = TestNode::start().await;
    let (_, token) = node.user("alice").await;
    let room = node.http.room(&token, "r", "public").await;
    let conv = format!("room:{room}");
    let mut p = PollClient::open(&node.http, &token, Some(json!({conv.clone(): 0})))
        .await
        .unwrap();
    let w = p.expect("welcome").await;
    assert_eq!(
        w["resumed"][&conv]["recovered"], true,
        "resume given when the session was opened"
    );
    for i in 1..=3 {
        node.http.publish(&token, &room, json!(i)).await;
    }
    // Collect the three without acknowledging anything: the same `after` each time.
    let get = |after: u64| {
        let url = format!("{}?after={after}&wait_ms=0", p.url);
        async move {
            reqwest::get(url)
                .await
                .unwrap()
                .json::<Vec<Value>>()
                .await
                .unwrap()
        }
    };
    let mut got = get(p.after).await;
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    while got.len() < 3 && std::time::Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(20)).await;
        got = get(p.after).await;
    }
    assert_eq!(got.len(), 3, "{got:?}");
    let last = got[2]["pseq"].as_u64().unwrap();
    // Pretend that response was lost: ask again from the same place. The same frames come back,
    // with the same pseq.
    let again = get(p.after).await;
    assert_eq!(again.len(), 3);
    for (a, b) in again.iter().zip(&got) {
        assert_eq!(
            (a["pseq"].clone(), a["seq"].clone()),
            (b["pseq"].clone(), b["seq"].clone())
        );
    }
    // Acknowledging them (a larger after) releases them.
    let empty: Vec<Value> = reqwest::get(format!("{}?after={last}&wait_ms=0", p.url))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert!(empty.is_empty());
    let gone: Vec<Value> = reqwest::get(format!("{}?after=0&wait_ms=0", p.url))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert!(gone.is_empty(), "acknowledged frames are dropped: {gone:?}");
    node.stop().await;
}

#[tokio::test]
async fn wait_ms_really_holds_a_poll_open_and_a_newer_poll_releases_the_older() {
    let node = TestNode::start().await;
    let (_, token) = node.user("alice").await;
    let room = node.http.room(&token, "r", "public").await;
    let mut p = PollClient::open(&node.http, &token, None).await.unwrap();
    p.expect("welcome").await;
    let url = format!("{}?after={}&wait_ms=800", p.url, p.after);
    let started = std::time::Instant::now();
    let frames: Vec<Value> = reqwest::get(&url).await.unwrap().json().await.unwrap();
    let held = started.elapsed();
    assert!(frames.is_empty());
    assert!(
        held >= Duration::from_millis(700) && held < Duration::from_secs(3),
        "held {held:?}"
    );

    // A message arriving while a poll waits answers it at once.
    let waiting = tokio::spawn(reqwest::get(format!(
        "{}?after={}&wait_ms=10000",
        p.url, p.after
    )));
    tokio::time::sleep(Duration::from_millis(100)).await;
    let started = std::time::Instant::now();
    node.http
        .call(
            "POST",
            &format!("/v1/rooms/{room}/messages"),
            Some(&token),
            Some(json!({"body": 1})),
        )
        .await;
    // (not subscribed: publish a DM to self instead, which every session receives)
    let (me, _) = (
        node.http.get("/v1/me", &token).await.1["user_id"]
            .as_str()
            .unwrap()
            .to_owned(),
        (),
    );
    node.http
        .post(
            &format!("/v1/users/{me}/messages"),
            &token,
            json!({"body": "wake"}),
        )
        .await;
    let frames: Vec<Value> = waiting.await.unwrap().unwrap().json().await.unwrap();
    assert!(started.elapsed() < Duration::from_secs(2));
    assert!(frames.iter().any(|f| f["body"] == "wake"), "{frames:?}");

    // One outstanding GET per session: a newer one releases the older with an empty answer.
    let older = tokio::spawn(reqwest::get(format!(
        "{}?after=1000000&wait_ms=10000",
        p.url
    )));
    tokio::time::sleep(Duration::from_millis(100)).await;
    let newer = tokio::spawn(reqwest::get(format!("{}?after=1000000&wait_ms=300", p.url)));
    let started = std::time::Instant::now();
    let frames: Vec<Value> = older.await.unwrap().unwrap().json().await.unwrap();
    assert!(frames.is_empty() && started.elapsed() < Duration::from_secs(2));
    newer.await.unwrap().unwrap();
    node.stop().await;
}

#[tokio::test]
async fn a_session_of_another_node_is_wrong_node_and_an_unknown_one_is_not_found() {
    let node = TestNode::start().await;
    let (_, token) = node.user("alice").await;
    let (s, v) = node
        .http
        .get(
            "/v1/poll/0123456789abcdef~n_elsewhere?after=0&wait_ms=0",
            &token,
        )
        .await;
    assert_eq!(s, 421);
    assert_eq!(
        (v["error"]["code"].as_str(), v["error"]["node_id"].as_str()),
        (Some("wrong_node"), Some("n_elsewhere"))
    );
    let (s, v) = node
        .http
        .get("/v1/poll/0123456789abcdef~n_test?after=0", &token)
        .await;
    assert_eq!((s, v["error"]["code"].as_str()), (404, Some("not_found")));
    let (s, _) = node.http.call("GET", "/v1/node", None, None).await;
    assert_eq!(s, 200);
    let (_, n) = node.http.call("GET", "/v1/node", None, None).await;
    assert_eq!(
        n["endpoints"]["poll"],
        format!("http://{}/v1/poll", node.addr)
    );
    // DELETE ends a session; it then reads as gone.
    let p = PollClient::open(&node.http, &token, None).await.unwrap();
    let (s, _) = node
        .http
        .call(
            "DELETE",
            &format!("/v1/poll/{}", p.session),
            Some(&token),
            None,
        )
        .await;
    assert_eq!(s, 204);
    let (s, _) = node
        .http
        .get(&format!("/v1/poll/{}?after=0&wait_ms=0", p.session), &token)
        .await;
    assert_eq!(s, 404);
    node.stop().await;
}
