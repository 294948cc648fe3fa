//! Durability: a restart keeps users, tokens, rooms, history and seq; a SIGKILL in the middle
//! of heavy publishing loses no message whose `published` answer was sent; SIGTERM tells every
//! client to reconnect, then exits cleanly.

use crate::common;
use common::*;
use serde_json::json;
use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

#[tokio::test]
async fn a_restart_keeps_tokens_rooms_history_and_seq() {
    let node = TestNode::start().await;
    let (alice_id, alice) = node.user("alice").await;
    let (bob_id, bob) = node.user("bob").await;
    let room = node.http.room(&alice, "keep", "private").await;
    node.http
        .call(
            "PUT",
            &format!("/v1/rooms/{room}/members/{bob_id}"),
            Some(&alice),
            None,
        )
        .await;
    for i in 1..=3 {
        node.http.publish(&alice, &room, json!({"i": i})).await;
    }
    let (s, _) = node
        .http
        .post(
            &format!("/v1/users/{bob_id}/messages"),
            &alice,
            json!({"body": "dm", "client_msg_id": "once"}),
        )
        .await;
    assert_eq!(s, 201);
    let dir = node.stop().await;

    let node = TestNode::start_in(dir, |_| {}).await;
    let (s, me) = node.http.get("/v1/me", &alice).await;
    assert_eq!(
        (s, me["user_id"].as_str()),
        (200, Some(alice_id.as_str())),
        "the token survives a restart"
    );
    let (s, _) = node.http.get(&format!("/v1/rooms/{room}"), &bob).await;
    assert_eq!(s, 200, "membership survives");
    let (_, h) = node
        .http
        .get(&format!("/v1/rooms/{room}/messages"), &bob)
        .await;
    let seqs: Vec<u64> = h["messages"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["seq"].as_u64().unwrap())
        .collect();
    assert_eq!(seqs, vec![1, 2, 3]);
    assert_eq!(
        node.http.publish(&alice, &room, json!({"i": 4})).await,
        4,
        "seq continues"
    );
    // Idempotency survives too.
    let (_, again) = node
        .http
        .post(
            &format!("/v1/users/{bob_id}/messages"),
            &alice,
            json!({"body": "dm", "client_msg_id": "once"}),
        )
        .await;
    assert_eq!(again["seq"], 1);
    let (_, bobs) = node.http.get("/v1/users/me/messages", &bob).await;
    assert_eq!(bobs["messages"].as_array().unwrap().len(), 1);
    // Login still works (password hashes persisted).
    let (s, _) = node
        .http
        .call(
            "POST",
            "/v1/sessions",
            None,
            Some(json!({"username": "bob", "password": PASSWORD})),
        )
        .await;
    assert_eq!(s, 201);
    node.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigkill_loses_no_acknowledged_message() {
    let dir = tempfile::tempdir().unwrap();
    let mut proc = NodeProcess::start(dir.path(), &["--publish-rate", "0"]).await;
    let (_, token) = proc.http.user("alice").await;
    let room = proc.http.room(&token, "crash", "public").await;

    // Eight concurrent publishers record every acknowledged (seq, message_id).
    let acked: Arc<Mutex<BTreeMap<u64, String>>> = Arc::default();
    let mut tasks = Vec::new();
    for p in 0..8 {
        let (http, token, room, acked) = (
            proc.http.clone(),
            token.clone(),
            room.clone(),
            acked.clone(),
        );
        tasks.push(tokio::spawn(async move {
            for i in 0.. {
                let req = http
                    .client
                    .post(format!("{}/v1/rooms/{room}/messages", http.base))
                    .bearer_auth(&token)
                    .json(&json!({"body": {"p": p, "i": i}}))
                    .send()
                    .await;
                let Ok(resp) = req else { return };
                if resp.status() != 201 {
                    return;
                }
                let Ok(v) = resp.json::<serde_json::Value>().await else {
                    return;
                };
                acked.lock().unwrap().insert(
                    v["seq"].as_u64().unwrap(),
                    v["message_id"].as_str().unwrap().to_owned(),
                );
            }
        }));
    }
    // Let them run, then kill -9 in the middle of it.
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    while acked.lock().unwrap().len() < 300 && std::time::Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    proc.signal("KILL");
    proc.wait(WAIT).await;
    for t in tasks {
        t.await.unwrap();
    }
    let acked = acked.lock().unwrap().clone();
    assert!(
        acked.len() >= 300,
        "only {} messages were acknowledged before the kill",
        acked.len()
    );

    let proc = NodeProcess::start(dir.path(), &[]).await;
    let mut stored = BTreeMap::new();
    let mut after = 0;
    loop {
        let (s, h) = proc
            .http
            .get(
                &format!("/v1/rooms/{room}/messages?after={after}&limit=500"),
                &token,
            )
            .await;
        assert_eq!(s, 200);
        let page = h["messages"].as_array().unwrap().clone();
        for m in &page {
            after = m["seq"].as_u64().unwrap();
            stored.insert(after, m["message_id"].as_str().unwrap().to_owned());
        }
        if page.len() < 500 {
            break;
        }
    }
    for (seq, id) in &acked {
        assert_eq!(
            stored.get(seq),
            Some(id),
            "acknowledged seq {seq} was lost or changed by the crash"
        );
    }
    let head = *stored.keys().last().unwrap();
    assert_eq!(
        stored.keys().copied().collect::<Vec<_>>(),
        (1..=head).collect::<Vec<_>>(),
        "stored seqs have no gap"
    );
    let next = proc
        .http
        .publish(&token, &room, json!("after the crash"))
        .await;
    assert_eq!(next, head + 1, "seq continues after the crash");
}

/// What a pipelining publisher got back: per conversation, the acknowledged
/// (seq, message_id, client_msg_id) in the order of the answers.
type AckedByConv = BTreeMap<String, Vec<(u64, String, String)>>;

/// Publishes over one WebSocket with `IN_FLIGHT` publishes outstanding, alternating between
/// `room` and a DM to `dm_to`, each with a `client_msg_id` of its own, until the connection ends.
/// Checks that the answers come back in the order the publishes were sent.
async fn pipeline_until_killed(
    mut ws: WsClient,
    room: String,
    dm_to: String,
    acked: Arc<Mutex<AckedByConv>>,
) {
    use futures_util::{SinkExt, StreamExt};
    use tokio_tungstenite::tungstenite::Message as WsMessage;
    const IN_FLIGHT: usize = 64;
    let mut outstanding = std::collections::VecDeque::new();
    let mut next: u64 = 1;
    loop {
        while outstanding.len() < IN_FLIGHT {
            let conv = if next.is_multiple_of(2) {
                format!("room:{room}")
            } else {
                format!("user:{dm_to}")
            };
            let cmid = format!("c{next}");
            let frame = json!({"type": "publish", "id": next, "conv": conv, "body": {"n": next},
                               "client_msg_id": cmid});
            if ws
                .ws
                .feed(WsMessage::text(frame.to_string()))
                .await
                .is_err()
            {
                return;
            }
            outstanding.push_back((next, cmid));
            next += 1;
        }
        if ws.ws.flush().await.is_err() {
            return;
        }
        let text = match ws.ws.next().await {
            Some(Ok(WsMessage::Text(t))) => t,
            Some(Ok(_)) => continue,
            // The node was killed.
            None | Some(Err(_)) => return,
        };
        let v: serde_json::Value = serde_json::from_str(&text).unwrap();
        match v["type"].as_str() {
            Some("published") => {
                let (id, cmid) = outstanding.pop_front().expect("an answer to a publish");
                assert_eq!(
                    v["id"], id,
                    "answers come back in the order of the publishes"
                );
                acked
                    .lock()
                    .unwrap()
                    .entry(v["conv"].as_str().unwrap().to_owned())
                    .or_default()
                    .push((
                        v["seq"].as_u64().unwrap(),
                        v["message_id"].as_str().unwrap().to_owned(),
                        cmid,
                    ));
            }
            Some("error") => panic!("a publish failed before the kill: {v}"),
            _ => {}
        }
    }
}

/// A pipelining node's flags: no publish, frame or DM rate limits, and `history` messages
/// kept per conversation.
pub(crate) fn pipelining_flags(history: &str) -> Vec<&str> {
    vec![
        "--publish-rate",
        "0",
        "--frame-rate",
        "0",
        "--dm-per-min",
        "0",
        "--history-max-messages",
        history,
    ]
}

/// Pipelines publishes from `token`'s connection (to `room` and as DMs to `dm_to`) for about
/// 2 s, then kills the node with SIGKILL in the middle of it. Returns what was acknowledged.
pub(crate) async fn pipeline_then_kill(
    proc: &mut NodeProcess,
    token: &str,
    room: &str,
    dm_to: &str,
) -> AckedByConv {
    let mut ws = WsClient::connect(&format!("{}?token={token}", proc.ws_url())).await;
    ws.expect("welcome").await;
    let acked: Arc<Mutex<AckedByConv>> = Arc::default();
    let publisher = tokio::spawn(pipeline_until_killed(
        ws,
        room.to_owned(),
        dm_to.to_owned(),
        acked.clone(),
    ));
    tokio::time::sleep(Duration::from_secs(2)).await;
    proc.signal("KILL");
    proc.wait(WAIT).await;
    tokio::time::timeout(WAIT, publisher)
        .await
        .expect("the publisher sees the connection end")
        .unwrap();
    acked.lock().unwrap().clone()
}

/// Every message of a conversation's history, read in pages after a restart.
pub(crate) async fn whole_history(http: &Http, path: &str, token: &str) -> Vec<serde_json::Value> {
    let mut all = Vec::new();
    let mut after = 0;
    loop {
        let (s, h) = http
            .get(&format!("{path}?after={after}&limit=500"), token)
            .await;
        assert_eq!(s, 200, "{path}: {h}");
        let page = h["messages"].as_array().unwrap().clone();
        let Some(last) = page.last() else {
            return all;
        };
        after = last["seq"].as_u64().unwrap();
        all.extend(page);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigkill_with_64_publishes_in_flight_loses_no_acknowledged_one() {
    sigkill_while_pipelining(&[]).await;
}

/// `--durability process` answers before the fsync: the commit is in the kernel's file cache, so
/// killing the process still loses nothing acknowledged (only the machine going down could).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigkill_with_process_durability_loses_no_acknowledged_one() {
    sigkill_while_pipelining(&["--durability", "process"]).await;
}

/// Publishes with 64 in flight from one connection (to a room and as DMs), kills the node with
/// SIGKILL, restarts it on the same data and checks that every acknowledged publish is in
/// history, in order and with no gap below it. `extra` are more flags for the killed node.
async fn sigkill_while_pipelining(extra: &[&str]) {
    let dir = tempfile::tempdir().unwrap();
    let mut flags = pipelining_flags("0");
    flags.extend_from_slice(extra);
    let mut proc = NodeProcess::start(dir.path(), &flags).await;
    let relaxed = proc
        .startup
        .iter()
        .any(|l| l.contains("before they are fsynced"));
    assert_eq!(
        relaxed,
        extra.contains(&"process"),
        "the node says whether it answers before the fsync: {:?}",
        proc.startup
    );
    let (_, alice) = proc.http.user("alice").await;
    let (bob_id, bob) = proc.http.user("bob").await;
    let room = proc.http.room(&alice, "pipelined", "public").await;
    let acked = pipeline_then_kill(&mut proc, &alice, &room, &bob_id).await;
    let room_conv = format!("room:{room}");
    let dm_conv = format!("user:{bob_id}");
    for conv in [&room_conv, &dm_conv] {
        let n = acked.get(conv).map_or(0, Vec::len);
        assert!(
            n >= 10,
            "only {n} publishes to {conv} acknowledged before the kill"
        );
    }

    // Pipelined, a connection stores thousands per second: keep them all (no count limit).
    let proc = NodeProcess::start(dir.path(), &["--history-max-messages", "0"]).await;
    let histories = [
        (
            &room_conv,
            whole_history(&proc.http, &format!("/v1/rooms/{room}/messages"), &alice).await,
        ),
        (
            &dm_conv,
            whole_history(&proc.http, "/v1/users/me/messages", &bob).await,
        ),
    ];
    for (conv, history) in histories {
        let stored: BTreeMap<u64, (String, String)> = history
            .iter()
            .map(|m| {
                (
                    m["seq"].as_u64().unwrap(),
                    (
                        m["message_id"].as_str().unwrap().to_owned(),
                        m["client_msg_id"].as_str().unwrap_or_default().to_owned(),
                    ),
                )
            })
            .collect();
        assert_eq!(stored.len(), history.len(), "{conv}: one message per seq");
        let mine = &acked[conv];
        eprintln!(
            "{conv}: {} acknowledged before the kill, {} stored",
            mine.len(),
            stored.len()
        );
        let seqs: Vec<u64> = mine.iter().map(|(seq, _, _)| *seq).collect();
        assert!(
            seqs.windows(2).all(|w| w[0] < w[1]),
            "{conv}: seqs grow in the order the publishes were sent"
        );
        for (seq, id, cmid) in mine {
            assert_eq!(
                stored.get(seq),
                Some(&(id.clone(), cmid.clone())),
                "{conv}: acknowledged seq {seq} was lost or changed by the crash"
            );
        }
        let top = *seqs.last().unwrap();
        for seq in 1..=top {
            assert!(
                stored.contains_key(&seq),
                "{conv}: seq {seq} is missing below the highest acknowledged ({top})"
            );
        }
        let mut cmids: Vec<&str> = stored.values().map(|(_, c)| c.as_str()).collect();
        let n = cmids.len();
        cmids.sort_unstable();
        cmids.dedup();
        assert_eq!(cmids.len(), n, "{conv}: a client_msg_id stored twice");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_tells_clients_to_reconnect_then_exits_cleanly() {
    let dir = tempfile::tempdir().unwrap();
    let mut proc = NodeProcess::start(dir.path(), &["--reconnect-jitter-ms", "3000"]).await;
    let (_, token) = proc.http.user("alice").await;
    let room = proc.http.room(&token, "bye", "public").await;
    proc.http.publish(&token, &room, json!("before")).await;
    let mut clients = Vec::new();
    for _ in 0..3 {
        let mut c = WsClient::connect(&format!("{}?token={token}", proc.ws_url())).await;
        c.expect("welcome").await;
        clients.push(c);
    }
    proc.signal("TERM");
    for c in &mut clients {
        let frames = c.until_closed().await;
        let kinds: Vec<&str> = frames.iter().filter_map(|f| f["type"].as_str()).collect();
        assert_eq!(kinds, vec!["reconnect", "disconnect"], "{frames:?}");
        assert!(frames[0]["delay_ms"].as_u64().unwrap() < 3000);
        assert_eq!(frames[1]["reason"], "shutdown");
    }
    assert_eq!(
        proc.wait(Duration::from_secs(30)).await,
        Some(0),
        "clean exit code"
    );
    // The store was closed cleanly: everything is there on the next start.
    let proc = NodeProcess::start(dir.path(), &[]).await;
    let (_, h) = proc
        .http
        .get(&format!("/v1/rooms/{room}/messages"), &token)
        .await;
    assert_eq!(h["messages"][0]["body"], "before");
}
