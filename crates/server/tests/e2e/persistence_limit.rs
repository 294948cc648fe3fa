//! A SIGKILL while streams are at their count limit: the embedded backend trims each stream at
//! its index steps and queues the rows left in no stream, deleting them in batches (and when the
//! database opens). After the restart each stream holds exactly its newest messages, every
//! acknowledged one among them as answered, and a retry of a trimmed publish still gets its
//! original answer.

use crate::common;
use crate::persistence::{pipeline_then_kill, pipelining_flags, whole_history};
use common::*;
use serde_json::json;

/// Messages kept per conversation.
const LIMIT: u64 = 20;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigkill_with_full_streams_keeps_the_newest_and_the_keys() {
    let dir = tempfile::tempdir().unwrap();
    let limit = LIMIT.to_string();
    let flags = pipelining_flags(&limit);
    let mut proc = NodeProcess::start(dir.path(), &flags).await;
    let (_, alice) = proc.http.user("alice").await;
    let (bob_id, bob) = proc.http.user("bob").await;
    let room = proc.http.room(&alice, "full", "public").await;
    // Thousands of publishes: every stream is trimmed at its steps, rows queue and go.
    let acked = pipeline_then_kill(&mut proc, &alice, &room, &bob_id).await;

    let proc = NodeProcess::start(dir.path(), &flags).await;
    let room_conv = format!("room:{room}");
    let histories = [
        (
            &room_conv,
            whole_history(&proc.http, &format!("/v1/rooms/{room}/messages"), &alice).await,
        ),
        (
            &format!("user:{bob_id}"),
            whole_history(&proc.http, "/v1/users/me/messages", &bob).await,
        ),
    ];
    for (conv, history) in histories {
        let mine = &acked[conv];
        assert!(
            mine.len() as u64 > 4 * LIMIT,
            "{conv}: only {} acknowledged before the kill",
            mine.len()
        );
        eprintln!("{conv}: {} acknowledged before the kill", mine.len());
        let seqs: Vec<u64> = history.iter().map(|m| m["seq"].as_u64().unwrap()).collect();
        let top = mine.last().unwrap().0;
        let head = *seqs.last().expect("a history");
        assert!(
            head >= top,
            "{conv}: acknowledged seq {top} lost (head {head})"
        );
        assert_eq!(
            seqs,
            (head - LIMIT + 1..=head).collect::<Vec<_>>(),
            "{conv}: exactly the newest {LIMIT}, no gap"
        );
        for (seq, id, cmid) in mine.iter().filter(|(seq, _, _)| *seq > head - LIMIT) {
            let m = &history[(*seq - (head - LIMIT + 1)) as usize];
            assert_eq!(
                (m["message_id"].as_str(), m["client_msg_id"].as_str()),
                (Some(id.as_str()), Some(cmid.as_str())),
                "{conv}: seq {seq} as acknowledged"
            );
        }
    }

    // The room's first publish was trimmed long ago: its retry gets the original answer.
    let (seq, id, cmid) = acked[&room_conv][0].clone();
    let mut ws = WsClient::connect(&format!("{}?token={alice}", proc.ws_url())).await;
    ws.expect("welcome").await;
    ws.send(
        json!({"type": "publish", "id": 1, "conv": room_conv, "body": {"again": true},
                   "client_msg_id": cmid}),
    )
    .await;
    let answer = ws.expect("published").await;
    assert_eq!(
        (answer["seq"].as_u64(), answer["message_id"].as_str()),
        (Some(seq), Some(id.as_str())),
        "a retry of a trimmed publish: {answer}"
    );
}
