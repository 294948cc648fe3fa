//! Server frames: the encoder's bytes, and `decode(encode(f)) == f` for every variant.

use super::*;
use crate::{Conv, DisconnectReason, ErrorCode, Message, MessageBody};
use serde_json::Value;
use std::collections::BTreeMap;
use std::sync::Arc;

fn message(seq: u64, body: &str) -> Arc<Message> {
    Arc::new(Message {
        conv: Conv::room("r1"),
        seq,
        message_id: format!("m_{seq}"),
        from: Some("u_1".into()),
        to: None,
        ts: 17,
        client_msg_id: Some("c-1".into()),
        body: MessageBody::from_json(body.into()).unwrap(),
        encoded: Default::default(),
    })
}

/// One frame of every variant (and of the optional fields both ways).
fn every_variant() -> Vec<ServerFrame> {
    let id = Some(Value::from(7));
    let resumed = BTreeMap::from([(
        Conv::room("r1"),
        Resumed {
            recovered: true,
            from_seq: 4,
            epoch: "e1".into(),
        },
    )]);
    vec![
        ServerFrame::Welcome {
            id: Some(Value::from("auth-1")),
            user_id: "u_1".into(),
            node_id: "n_1".into(),
            conn_id: "c_1".into(),
            heartbeat_ms: 25_000,
            resumed,
        },
        ServerFrame::Subscribed {
            id: id.clone(),
            conv: Conv::room("r1"),
            head_seq: 9,
            epoch: "e1".into(),
            recovered: Some(false),
            from_seq: Some(3),
        },
        ServerFrame::Subscribed {
            id: None,
            conv: Conv::user("u_1"),
            head_seq: 0,
            epoch: "e2".into(),
            recovered: None,
            from_seq: None,
        },
        ServerFrame::Unsubscribed {
            id: None,
            conv: Conv::room("r1"),
            reason: Some("not_member".into()),
        },
        ServerFrame::Unsubscribed {
            id: id.clone(),
            conv: Conv::room("r1"),
            reason: None,
        },
        ServerFrame::Published {
            id: id.clone(),
            conv: Conv::user("u_2"),
            seq: 5,
            message_id: "m_5".into(),
            ts: 99,
        },
        ServerFrame::History {
            id: id.clone(),
            conv: Conv::room("r1"),
            messages: vec![message(1, r#"{"a": [1, 2]}"#), message(2, "\"x\"")],
            more: true,
        },
        ServerFrame::History {
            id: None,
            conv: Conv::room("r1"),
            messages: vec![],
            more: false,
        },
        ServerFrame::Presence {
            id: id.clone(),
            conv: Conv::room("r1"),
            users: vec![PresenceEntry {
                user_id: "u_1".into(),
                connections: 2,
            }],
        },
        ServerFrame::Pong { id: None },
        ServerFrame::Ping {},
        ServerFrame::error(id.clone(), ErrorCode::NotFound, "no such room"),
        ServerFrame::error_for(
            id,
            ErrorCode::NotMember,
            "room:r2: not a member",
            Some(Conv::room("r2")),
        ),
        ServerFrame::Reconnect {
            reason: "drain".into(),
            delay_ms: 250,
        },
        ServerFrame::Disconnect {
            reason: DisconnectReason::SlowConsumer,
        },
        ServerFrame::Message(message(3, r#"{"text": "hi"}"#)),
    ]
}

#[test]
fn every_variant_decodes_to_itself() {
    for f in every_variant() {
        let bytes = f.encode();
        let back = ServerFrame::decode(&bytes)
            .unwrap_or_else(|e| panic!("{}: {e}", String::from_utf8_lossy(&bytes)));
        assert_eq!(back, f, "{}", String::from_utf8_lossy(&bytes));
        // Through serde as well, e.g. a long-poll answer (an array, with `pseq` beside).
        let from_serde: ServerFrame = serde_json::from_slice(&bytes).unwrap();
        assert_eq!(from_serde, f);
    }
}

#[test]
fn replies_carry_null_id_when_absent() {
    let t = ServerFrame::Pong { id: None }.encode();
    assert_eq!(&t[..], br#"{"type":"pong","id":null}"#);
    let t = ServerFrame::Ping {}.encode();
    assert_eq!(&t[..], br#"{"type":"ping"}"#);
}

#[test]
fn error_frames_name_the_conv_only_when_given() {
    let t = ServerFrame::error(Some(Value::from(1)), ErrorCode::BadRequest, "nope").encode();
    assert_eq!(
        &t[..],
        br#"{"type":"error","id":1,"code":"bad_request","message":"nope"}"#
    );
    let f = ServerFrame::error_for(
        Some(Value::from(1)),
        ErrorCode::NotMember,
        "room:a: not a member",
        Some(Conv::room("a")),
    );
    assert_eq!(
        &f.encode()[..],
        br#"{"type":"error","id":1,"code":"not_member","message":"room:a: not a member","conv":"room:a"}"#
    );
}

#[test]
fn message_variant_encodes_like_encode_frame_and_keeps_the_body_raw() {
    let m = message(8, r#"{"n": [1,  2]}"#);
    assert_eq!(ServerFrame::Message(m.clone()).encode(), m.encode_frame());
    match ServerFrame::decode(&m.encode_frame()).unwrap() {
        ServerFrame::Message(back) => assert_eq!(back.body.get(), r#"{"n": [1,  2]}"#),
        other => panic!("{other:?}"),
    }
}

#[test]
fn a_long_poll_answer_reads_as_frames() {
    let text = br#"[{"type":"ping","pseq":1},{"type":"pong","id":3,"pseq":2}]"#;
    let frames: Vec<ServerFrame> = serde_json::from_slice(text).unwrap();
    assert_eq!(
        frames,
        vec![
            ServerFrame::Ping {},
            ServerFrame::Pong {
                id: Some(Value::from(3))
            }
        ]
    );
}

#[test]
fn garbage_and_unknown_frames_are_typed_errors() {
    for text in [&b"{nope"[..], b"", b"[1,2]", b"42", b"\xff\xfe"] {
        let e = ServerFrame::decode(text).unwrap_err();
        assert_eq!(e.id, None, "{}", String::from_utf8_lossy(text));
    }
    let e = ServerFrame::decode(br#"{"id":5}"#).unwrap_err();
    assert_eq!(e.id, Some(Value::from(5)));
    assert!(e.message.contains("type"), "{e}");
    let e = ServerFrame::decode(br#"{"type":"warp","id":"x"}"#).unwrap_err();
    assert_eq!(e.id, Some(Value::from("x")));
    assert!(e.message.contains("unknown frame type `warp`"), "{e}");
}

#[test]
fn bad_fields_keep_the_id() {
    let cases: [&[u8]; 4] = [
        br#"{"type":"subscribed","id":4,"conv":"room:a"}"#,
        br#"{"type":"error","id":4,"code":"no_such_code","message":"m"}"#,
        br#"{"type":"history","id":4,"conv":"chan:x","messages":[]}"#,
        br#"{"type":"published","id":4,"conv":"room:a","seq":"one","message_id":"m","ts":1}"#,
    ];
    for text in cases {
        let e = ServerFrame::decode(text).unwrap_err();
        assert_eq!(e.id, Some(Value::from(4)), "{e}");
    }
    let e = ServerFrame::decode(br#"{"type":"message","conv":"room:a","seq":1}"#).unwrap_err();
    assert!(e.message.starts_with("bad `message` frame"), "{e}");
}
