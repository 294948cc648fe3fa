//! A session whose task panics still releases everything its connection held: the hub's record
//! and subscriptions, presence in the registry (user and room), and the node's bus interest.
//! Run on both backends: the embedded one (in-process registry) and the Redis one (bus
//! subscriptions and presence in a real Redis).

use crate::common::{Reads, embedded_node, eventually};
use bytes::Bytes;
use std::sync::Arc;
use switchboard_backend_redis::{RedisBackend, RedisConfig};
use switchboard_core::Node;
use switchboard_core::backend::Visibility;
use switchboard_core::config::Limits;
use switchboard_core::hub::Hub;
use switchboard_core::metrics::Metrics;
use switchboard_core::session::{PreAuth, run_session};
use switchboard_core::transport::{Inbound, Transport};
use switchboard_proto::Conv;
use switchboard_testkit::RedisServer;
use tokio::sync::oneshot;

/// Hands the session its frames, then waits for the word and panics (a bug in the task).
struct Panicking {
    frames: Vec<Bytes>,
    go: oneshot::Receiver<()>,
}

impl Transport for Panicking {
    async fn recv(&mut self) -> Option<Inbound> {
        if !self.frames.is_empty() {
            return Some(Inbound::Frame(self.frames.remove(0)));
        }
        let _ = (&mut self.go).await;
        panic!("a bug in the session's task");
    }
}

/// What the node holds for `user` in `room` and their streams: (connections in the hub,
/// subscribers of the room and of the user's stream, the user's registry connections, room
/// presence entries, conversations with bus interest).
async fn held(node: &Node, user: &str, room: &Conv) -> (usize, usize, usize, u32, usize, usize) {
    let reg = &node.backend.registry;
    let conns = reg.user_connections(&[user.to_owned()]).await.unwrap()[0];
    let presence = reg.room_presence(room.id()).await.unwrap().len();
    (
        node.hub.open_connections(),
        node.hub.subscriber_count(room),
        node.hub.subscriber_count(&Conv::user(user)),
        conns,
        presence,
        node.interest.conversations().len(),
    )
}

/// Subscribes a session to a room, checks it holds what a live connection holds, panics its
/// task, and checks that all of it is released. `bus` says whether the backend has bus
/// interest to hold (the Redis backend does; the embedded one delivers everything).
async fn a_panicking_session_releases_everything(node: Arc<Node>, bus: bool) {
    node.register("alice", "secret-pass").await.unwrap();
    let token = node.login("alice", "secret-pass").await.unwrap();
    let user = token.user_id.clone();
    let room = node
        .create_room(&user, "ops", Visibility::Public)
        .await
        .unwrap();
    let room = Conv::room(&room.room_id);
    let principal = node.authenticate(&token.token).await.unwrap();
    let subscribe = format!(r#"{{"type":"subscribe","id":1,"conv":"{room}"}}"#);
    let (go, wait) = oneshot::channel();
    let transport = Panicking {
        frames: vec![Bytes::from(subscribe)],
        go: wait,
    };
    let task = tokio::spawn(run_session(
        node.clone(),
        transport,
        Arc::new(Reads::default()),
        Some(PreAuth::from(principal)),
    ));

    let interest = if bus { 2 } else { 0 };
    eventually("the session is connected and subscribed", async || {
        held(&node, &user, &room).await == (1, 1, 1, 1, 1, interest)
    })
    .await;

    go.send(()).unwrap();
    let err = task.await.expect_err("the task panicked");
    assert!(err.is_panic());

    eventually("nothing is left of the connection", async || {
        held(&node, &user, &room).await == (0, 0, 0, 0, 0, 0)
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_panicking_session_releases_everything_on_the_embedded_backend() {
    let (node, _dir) = embedded_node(Limits::default());
    a_panicking_session_releases_everything(node, false).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_panicking_session_releases_everything_on_redis() {
    let redis = RedisServer::start();
    let config = RedisConfig::new(redis.url(), "n1");
    let metrics = Arc::new(Metrics::new());
    let hub = Arc::new(Hub::new(metrics.clone(), 0));
    let backend = RedisBackend::connect(config, hub.clone()).await.unwrap();
    let node = Arc::new(Node::new(
        "n1".into(),
        Limits::default(),
        backend.backend(),
        hub,
        metrics,
    ));
    a_panicking_session_releases_everything(node, true).await;
    // And Redis agrees: no channel of the room or the user's stream is subscribed.
    let channels = redis.command("PUBSUB CHANNELS *");
    assert!(
        !channels.contains("room:") && !channels.contains("user:"),
        "Redis still has subscriptions: {channels}"
    );
}
