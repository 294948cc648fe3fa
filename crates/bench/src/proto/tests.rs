//! Tests of the frames each protocol writes and reads.

use super::frames::Answer;
use super::*;

#[test]
fn switchboard_frames() {
    let b = body(1_700_000_000_000_123, 7, "xx");
    let msg = format!(
        r#"{{"type":"message","conv":"user:u1","seq":3,"message_id":"m_1","from":"u7","to":"u1","ts":1,"client_msg_id":null,"body":{b}}}"#
    );
    assert_eq!(
        Protocol::Switchboard.classify(&msg),
        Incoming::Delivery {
            ts_us: 1_700_000_000_000_123,
            src: Some(7)
        }
    );
    let server = format!(
        r#"{{"type":"message","conv":"room:r","seq":1,"body":{}}}"#,
        body(5, -1, "")
    );
    assert_eq!(
        Protocol::Switchboard.classify(&server),
        Incoming::Delivery {
            ts_us: 5,
            src: None
        }
    );
    assert_eq!(
        Protocol::Switchboard.classify(r#"{"type":"published","id":4,"conv":"user:x"}"#),
        Incoming::Ack
    );
    assert!(matches!(
        Protocol::Switchboard.classify(r#"{"type":"disconnect","reason":"slow_consumer"}"#),
        Incoming::Closed(_)
    ));
    assert!(matches!(
        Protocol::Switchboard.classify(r#"{"id":null,"type":"error","code":"x"}"#),
        Incoming::Error(_)
    ));
}

#[test]
fn socketio_packets() {
    let p = Protocol::Socketio;
    assert_eq!(p.classify("2"), Incoming::Ping);
    assert_eq!(p.classify(r#"431[{"ok":true}]"#), Incoming::Ack);
    assert_eq!(
        p.classify(&format!(
            r#"42["message",{{"room":"room:a","body":{}}}]"#,
            body(99, 3, "")
        )),
        Incoming::Delivery {
            ts_us: 99,
            src: Some(3)
        }
    );
    assert!(matches!(p.classify("41"), Incoming::Closed(_)));
    assert!(matches!(
        p.classify(r#"44{"message":"unauthorized"}"#),
        Incoming::Error(_)
    ));
    assert_eq!(
        p.dm_frame("u2", "{}", 9),
        r#"429["dm",{"to":"u2","body":{}}]"#
    );
    assert_eq!(
        p.pub_frame("room:a", "{}", 12),
        r#"4212["pub",{"room":"room:a","body":{}}]"#
    );
    assert_eq!(
        p.answer(r#"4312[{"ok":true}]"#),
        Some(Answer {
            id: 12,
            ok: true,
            conv: None,
            seq: None
        })
    );
    assert_eq!(p.answer(r#"42["message",{}]"#), None);
}

#[test]
fn switchboard_answers() {
    let p = Protocol::Switchboard;
    assert_eq!(
        p.answer(
            r#"{"type":"published","id":7,"conv":"user:b1","seq":42,"message_id":"m","ts":1}"#
        ),
        Some(Answer {
            id: 7,
            ok: true,
            conv: Some("user:b1".into()),
            seq: Some(42)
        })
    );
    assert_eq!(
        p.answer(r#"{"type":"error","id":8,"code":"rate_limited","message":"x"}"#),
        Some(Answer {
            id: 8,
            ok: false,
            conv: None,
            seq: None
        })
    );
    assert_eq!(
        p.answer(r#"{"type":"message","conv":"room:a","seq":1}"#),
        None
    );
    assert_eq!(
        conv_seq(r#"{"type":"message","conv":"room:r_1","seq":3,"body":{}}"#),
        Some(("room:r_1", 3))
    );
}

#[test]
fn switchboard_socketio_speaks_the_endpoints_events() {
    let p = Protocol::SwitchboardSocketio;
    assert_eq!(
        p.pub_frame("room:r_1", "{}", 3),
        r#"423["publish",{"conv":"room:r_1","body":{}}]"#
    );
    assert_eq!(
        p.dm_frame("b1", "{}", 4),
        r#"424["publish",{"conv":"user:b1","body":{}}]"#
    );
    assert_eq!(
        p.answer(r#"433[{"conv":"room:r_1","message_id":"m","seq":9,"ts":1}]"#),
        Some(Answer {
            id: 3,
            ok: true,
            conv: Some("room:r_1".into()),
            seq: Some(9)
        })
    );
    assert_eq!(
        p.answer(r#"434[{"error":{"code":"rate_limited","message":"x"}}]"#),
        Some(Answer {
            id: 4,
            ok: false,
            conv: None,
            seq: None
        })
    );
    let msg = format!(
        r#"42["message",{{"conv":"room:r_1","seq":2,"body":{}}},"2"]"#,
        body(77, 5, "")
    );
    assert_eq!(
        p.classify(&msg),
        Incoming::Delivery {
            ts_us: 77,
            src: Some(5)
        }
    );
    assert!(matches!(
        p.classify(r#"42["switchboard:disconnect",{"reason":"kicked"}]"#),
        Incoming::Closed(_)
    ));
}
