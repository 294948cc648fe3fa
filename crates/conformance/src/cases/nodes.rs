//! Node-level cases: control broadcasts, the registry of live connections, and lifecycle.

use crate::util::{WAIT, append, assert_unavailable, req};
use crate::{BackendFactory, RecordingSink};
use switchboard_core::backend::{ConnEntry, ControlEvent, HistoryQuery};
use switchboard_proto::frame::PresenceEntry;
use switchboard_proto::{Conv, DisconnectReason};

/// `broadcast` reaches the sink's `control` (this node is one of "every node").
pub async fn broadcast(factory: &dyn BackendFactory) {
    let sink = RecordingSink::new();
    let b = factory.make(sink.as_sink()).await;
    let events = vec![
        ControlEvent::DisconnectSession {
            user_id: "u_1".into(),
            session_id: "s_1".into(),
            reason: DisconnectReason::LoggedOut,
        },
        ControlEvent::DisconnectUser {
            user_id: "u_1".into(),
            reason: DisconnectReason::Kicked,
        },
    ];
    for e in &events {
        b.broker.broadcast(e.clone()).await.expect("broadcast");
    }
    let got = sink
        .wait_for_controls(2, WAIT)
        .await
        .unwrap_or_else(|got| panic!("sink got control events {got:?}, wanted {events:?}"));
    assert_eq!(got, events, "control events arrive, in order");
    b.lifecycle.close().await;
}

fn conn(conn_id: &str, user_id: &str) -> ConnEntry {
    ConnEntry {
        conn_id: conn_id.into(),
        user_id: user_id.into(),
        session_id: format!("s_{user_id}").into(),
    }
}

fn entry(user_id: &str, connections: u32) -> PresenceEntry {
    PresenceEntry {
        user_id: user_id.into(),
        connections,
    }
}

/// Registry: connection counts per user, room presence sorted by user id, and a removed
/// connection leaving every room it was in.
pub async fn registry(factory: &dyn BackendFactory) {
    let b = factory.make(RecordingSink::new()).await;
    let r = &b.registry;
    let (zed1, zed2, amy) = (conn("c1", "zed"), conn("c2", "zed"), conn("c3", "amy"));
    let users: Vec<String> = vec!["zed".into(), "amy".into(), "nobody".into()];
    let counts = || async { r.user_connections(&users).await.expect("user_connections") };
    let presence =
        |room: &'static str| async move { r.room_presence(room).await.expect("room_presence") };

    assert_eq!(counts().await, vec![0, 0, 0]);
    for c in [&zed1, &zed2, &amy] {
        r.add_connection(c).await.expect("add_connection");
    }
    r.add_connection(&zed1).await.expect("adding twice");
    assert_eq!(counts().await, vec![2, 1, 0], "counts in the order asked");

    for c in [&zed1, &zed2, &amy] {
        r.add_room_subscriber("r1", c)
            .await
            .expect("add_room_subscriber");
    }
    r.add_room_subscriber("r2", &zed1)
        .await
        .expect("add_room_subscriber");
    assert_eq!(
        presence("r1").await,
        vec![entry("amy", 1), entry("zed", 2)],
        "presence sorted by user id"
    );
    assert_eq!(presence("r2").await, vec![entry("zed", 1)]);
    assert_eq!(presence("r3").await, vec![], "a room nobody is in");

    r.remove_room_subscriber("r1", &zed2)
        .await
        .expect("remove_room_subscriber");
    r.remove_room_subscriber("r1", &zed2)
        .await
        .expect("removing twice");
    assert_eq!(presence("r1").await, vec![entry("amy", 1), entry("zed", 1)]);

    r.remove_connection(&zed1).await.expect("remove_connection");
    assert_eq!(counts().await, vec![1, 1, 0], "one connection fewer");
    assert_eq!(
        presence("r1").await,
        vec![entry("amy", 1)],
        "an ended connection leaves its rooms"
    );
    assert_eq!(presence("r2").await, vec![]);

    r.remove_connection(&zed2).await.expect("remove_connection");
    r.remove_connection(&amy).await.expect("remove_connection");
    r.remove_connection(&amy).await.expect("removing twice");
    assert_eq!(counts().await, vec![0, 0, 0]);
    assert_eq!(presence("r1").await, vec![]);
    b.lifecycle.close().await;
}

/// Lifecycle: ready while open; after `close`, not ready and every call is `Unavailable`; a
/// second close is harmless.
pub async fn lifecycle(factory: &dyn BackendFactory) {
    let b = factory.make(RecordingSink::new()).await;
    let conv = Conv::room("life");
    assert!(b.lifecycle.ready().await, "ready once made");
    append(&b, req(&conv, 1)).await;
    b.lifecycle.close().await;
    assert!(!b.lifecycle.ready().await, "not ready after close");

    assert_unavailable("append", b.broker.append(req(&conv, 2)).await);
    let q = HistoryQuery {
        after: None,
        before: None,
        limit: 10,
    };
    assert_unavailable("history", b.broker.history(&conv, q).await);
    assert_unavailable("position", b.broker.position(&conv).await);
    assert_unavailable("user", b.store.user("u_1").await);
    assert_unavailable("create_user", b.store.create_user("late", "h").await);
    assert_unavailable(
        "user_connections",
        b.registry.user_connections(&["u_1".into()]).await,
    );
    b.lifecycle.close().await;
}
