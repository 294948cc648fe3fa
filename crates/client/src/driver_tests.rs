//! The driver's handling of typed frames, without a server: refused resumes, unreadable
//! answers and message bodies, and the bounded event stream.

use super::*;
use crate::ClientConfig;
use crate::tracker::tests::msg;
use crate::tracker::{Action, FILL_PAGE};
use switchboard_proto::{Conv, ErrorCode};

struct Rig {
    driver: Driver,
    link: Link,
    events: mpsc::Receiver<Event>,
    _keep: (mpsc::Sender<Cmd>, mpsc::Sender<Incoming>),
}

fn rig() -> Rig {
    let (cmd_tx, cmd_rx) = mpsc::channel(4);
    let (ev_tx, events) = mpsc::channel(4);
    let (ready, _) = oneshot::channel();
    let cfg = ClientConfig::new("http://127.0.0.1:1", "t");
    let driver = Driver::new(
        cfg,
        crate::net::Net::new(None).unwrap(),
        cmd_rx,
        ev_tx,
        Shared::default(),
        ready,
    );
    let (link, inc, _out) = Link::for_test();
    Rig {
        driver,
        link,
        events,
        _keep: (cmd_tx, inc),
    }
}

fn track(d: &Driver, conv: &str) {
    lock(&d.shared).tracker.on_subscribed(conv, 0, "e");
}

#[tokio::test]
async fn a_refused_resume_is_read_from_the_conv_field_then_from_the_text() {
    let mut r = rig();
    track(&r.driver, "room:a");
    track(&r.driver, "room:b");
    // The structured field wins over the text (here deliberately naming no conversation).
    let f = ServerFrame::error_for(
        Some(Value::from(1)),
        ErrorCode::NotMember,
        "not a member",
        Some(Conv::room("a")),
    );
    assert!(r.driver.on_frame(&r.link, f, 1).await.is_none());
    // An older server: only "{conv}: {message}".
    let f = ServerFrame::error(Some(Value::from(1)), ErrorCode::NotFound, "room:b: gone");
    assert!(r.driver.on_frame(&r.link, f, 1).await.is_none());
    let mut got = Vec::new();
    while let Ok(e) = r.events.try_recv() {
        got.push(e);
    }
    assert_eq!(
        got,
        vec![
            Event::Unsubscribed {
                conv: "room:a".into(),
                reason: "not_member".into()
            },
            Event::Unsubscribed {
                conv: "room:b".into(),
                reason: "not_found".into()
            },
        ]
    );
    assert!(!lock(&r.driver.shared).tracker.is_tracked("room:a"));
}

#[tokio::test]
async fn an_unreadable_answer_fails_the_request_it_answers() {
    let mut r = rig();
    let (tx, rx) = oneshot::channel();
    let req = Request::Presence {
        conv: "room:a".into(),
    };
    r.driver.inflight.insert(
        3,
        Pending {
            req,
            waiter: Waiter::App(tx),
        },
    );
    let e = ServerFrame::decode(br#"{"type":"presence","id":3,"conv":"room:a","users":7}"#)
        .unwrap_err();
    r.driver.on_unreadable(&r.link, e).await;
    match rx.await.unwrap() {
        Err(ClientError::Protocol(m)) => assert!(m.contains("unreadable answer"), "{m}"),
        other => panic!("{other:?}"),
    }
    assert!(r.driver.inflight.is_empty());
    // Without a readable id there is nothing to fail; it is only logged.
    let e = ServerFrame::decode(b"not json").unwrap_err();
    r.driver.on_unreadable(&r.link, e).await;
}

#[tokio::test]
async fn a_full_event_stream_makes_the_driver_wait() {
    let r = rig();
    for i in 0..4 {
        r.driver
            .emit(Event::Disconnected {
                reason: i.to_string(),
            })
            .await;
    }
    let fifth = r.driver.emit(Event::Disconnected { reason: "5".into() });
    assert!(
        tokio::time::timeout(Duration::from_millis(50), fifth)
            .await
            .is_err(),
        "the fifth event waits for room"
    );
}

/// A `message` frame of `room:a` at `seq` with the body `body` (raw JSON text).
fn message_frame(seq: u64, body: &str) -> ServerFrame {
    let text = format!(
        r#"{{"type":"message","conv":"room:a","seq":{seq},"message_id":"m{seq}","from":"u","to":null,"ts":1,"client_msg_id":null,"body":{body}}}"#
    );
    ServerFrame::decode(text.as_bytes()).expect("the frame itself decodes")
}

#[tokio::test]
async fn a_message_too_deep_to_read_is_an_event_in_its_place_and_the_stream_goes_on() {
    let mut r = rig();
    track(&r.driver, "room:a");
    // Stored before the server refused such bodies: deeper than serde_json's 128 levels.
    let poison = format!("{}{}", "[".repeat(200), "]".repeat(200));
    for (seq, body) in [(1, "1"), (2, poison.as_str()), (3, "3")] {
        assert!(
            r.driver
                .on_frame(&r.link, message_frame(seq, body), 1)
                .await
                .is_none()
        );
    }
    let mut got = Vec::new();
    while let Ok(e) = r.events.try_recv() {
        got.push(e);
    }
    let shown: Vec<String> = got
        .iter()
        .map(|e| match e {
            Event::Message(m) => format!("message {} {}", m.seq, m.body),
            Event::Unreadable { conv, seq, error } => {
                assert!(error.contains("recursion"), "{error}");
                format!("unreadable {conv} {seq}")
            }
            other => panic!("{other:?}"),
        })
        .collect();
    assert_eq!(shown, ["message 1 1", "unreadable room:a 2", "message 3 3"]);
    assert!(r.driver.unreadable.is_empty());
}

#[tokio::test]
async fn a_message_too_deep_to_read_in_a_gap_fill_is_an_event_too() {
    let mut r = rig();
    track(&r.driver, "room:a");
    let poison = format!("{}{}", "[".repeat(200), "]".repeat(200));
    // 1 arrives, 2 does not, 3 does: a gap, filled from history, whose page holds the poison.
    for seq in [1, 3] {
        let f = message_frame(seq, &seq.to_string());
        assert!(r.driver.on_frame(&r.link, f, 1).await.is_none());
    }
    let ServerFrame::Message(two) = message_frame(2, &poison) else {
        unreachable!()
    };
    let page = ServerFrame::History {
        id: None,
        conv: Conv::room("a"),
        messages: vec![two],
        more: false,
    };
    let fill = Pending {
        req: Request::History {
            conv: "room:a".into(),
            after: Some(1),
            before: Some(3),
            limit: Some(FILL_PAGE),
        },
        waiter: Waiter::Fill("room:a".into()),
    };
    r.driver.on_reply(&r.link, fill, Ok(page)).await;
    let mut got = Vec::new();
    while let Ok(e) = r.events.try_recv() {
        got.push(match e {
            Event::Message(m) => format!("message {}", m.seq),
            Event::Unreadable { seq, .. } => format!("unreadable {seq}"),
            other => panic!("{other:?}"),
        });
    }
    assert_eq!(got, ["message 1", "unreadable 2", "message 3"]);
}

#[tokio::test]
async fn a_resume_refused_for_want_of_storage_keeps_the_conversation_and_reconnects() {
    let mut r = rig();
    track(&r.driver, "room:a");
    // The soak found this: Redis restarting while a client resumed; forgetting the room lost
    // every later message of it.
    let f = ServerFrame::error_for(
        Some(Value::from(1)),
        ErrorCode::Unavailable,
        "storage unavailable",
        Some(Conv::room("a")),
    );
    match r.driver.on_frame(&r.link, f, 1).await {
        Some(After::Reconnect { reason, .. }) => assert!(reason.contains("room:a"), "{reason}"),
        other => panic!("expected a reconnect, got {:?}", other.is_some()),
    }
    assert!(lock(&r.driver.shared).tracker.is_tracked("room:a"));
    assert!(r.events.try_recv().is_err(), "no Unsubscribed event");
}

#[tokio::test]
async fn a_long_poll_resume_refusal_without_an_id_is_handled_too() {
    // A long-poll session is opened with the resume and no `auth` frame, so its refusals carry
    // no id, only `conv`. The soak found them ignored: the client kept waiting for a
    // conversation the server no longer sent it.
    let mut r = rig();
    track(&r.driver, "room:a");
    track(&r.driver, "room:b");
    let refusal =
        |code, room| ServerFrame::error_for(None, code, "refused", Some(Conv::room(room)));
    let after = r
        .driver
        .on_frame(&r.link, refusal(ErrorCode::Unavailable, "a"), 7)
        .await;
    assert!(matches!(after, Some(After::Reconnect { .. })));
    assert!(lock(&r.driver.shared).tracker.is_tracked("room:a"));
    let after = r
        .driver
        .on_frame(&r.link, refusal(ErrorCode::NotMember, "b"), 7)
        .await;
    assert!(after.is_none());
    assert_eq!(
        r.events.try_recv().ok(),
        Some(Event::Unsubscribed {
            conv: "room:b".into(),
            reason: "not_member".into()
        })
    );
    // An id-less error naming no conversation is not a refusal.
    let other = ServerFrame::error(None, ErrorCode::BadRequest, "room:a: whatever");
    assert!(r.driver.on_frame(&r.link, other, 7).await.is_none());
    assert!(lock(&r.driver.shared).tracker.is_tracked("room:a"));
}

#[tokio::test]
async fn a_gap_fill_refused_for_want_of_storage_reconnects_instead_of_jumping() {
    // The soak found this: a gap fill answered `unavailable` while Redis restarted, the SDK
    // accepted the jump, and the two messages of the gap never reached the application.
    let mut r = rig();
    track(&r.driver, "room:a");
    let held = {
        let mut s = lock(&r.driver.shared);
        s.tracker.on_message(msg("room:a", 1));
        s.tracker.on_message(msg("room:a", 4))
    };
    assert!(
        held.iter().any(|a| matches!(a, Action::Fetch { .. })),
        "seq 4 after 1 is a gap to fetch"
    );
    let fill = || Pending {
        req: Request::History {
            conv: "room:a".into(),
            after: Some(1),
            before: Some(4),
            limit: Some(2),
        },
        waiter: Waiter::Fill("room:a".into()),
    };
    r.driver.inflight.insert(9, fill());
    let refused = ServerFrame::error(Some(Value::from(9)), ErrorCode::Unavailable, "later");
    match r.driver.on_frame(&r.link, refused, 1).await {
        Some(After::Reconnect { reason, .. }) => assert!(reason.contains("gap fill"), "{reason}"),
        other => panic!("expected a reconnect, got {:?}", other.is_some()),
    }
    assert_eq!(
        lock(&r.driver.shared)
            .tracker
            .position("room:a")
            .map(|p| p.1),
        Some(1),
        "nothing past the gap was delivered"
    );
    // Any other refusal (history gone for good) still lets the jump through.
    r.driver.inflight.insert(10, fill());
    let gone = ServerFrame::error(Some(Value::from(10)), ErrorCode::NotFound, "gone");
    assert!(r.driver.on_frame(&r.link, gone, 1).await.is_none());
    assert_eq!(
        lock(&r.driver.shared)
            .tracker
            .position("room:a")
            .map(|p| p.1),
        Some(4)
    );
}
