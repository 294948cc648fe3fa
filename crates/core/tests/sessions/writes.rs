//! How a session's frames reach the socket: a sender's answer to a direct message and its own
//! copy of that message leave in one write (one `sendmsg`), not one each from two threads; and
//! that copy is encoded once on the node, for the sender's connection and its other ones alike.

use crate::common::{Reads, embedded_node};
use bytes::Bytes;
use std::io;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;
use switchboard_core::Node;
use switchboard_core::config::Limits;
use switchboard_core::node::IssuedToken;
use switchboard_core::session::{PreAuth, run_session};
use switchboard_core::transport::{Inbound, Out, Progress, Transport, Wire};
use tokio::sync::mpsc;

/// A wire that keeps each write call's frames apart.
#[derive(Default)]
struct Calls(parking_lot::Mutex<Vec<Vec<String>>>);

impl Wire for Calls {
    fn try_write(
        &self,
        frames: &mut dyn Iterator<Item = &Out>,
        _offset: usize,
    ) -> io::Result<Progress> {
        let call: Vec<String> = frames
            .map(|o| match o {
                Out::Text(b) => String::from_utf8_lossy(b).into_owned(),
                other => format!("{other:?}"),
            })
            .collect();
        let n = call.len();
        if n > 0 {
            self.0.lock().push(call);
        }
        Ok(Progress {
            frames: n,
            offset: 0,
            blocked: false,
        })
    }
    fn poll_writable(&self, _: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }
    fn shutdown(&self) {}
}

/// Frames handed in one at a time by the test.
struct Fed(mpsc::UnboundedReceiver<Bytes>);

impl Transport for Fed {
    async fn recv(&mut self) -> Option<Inbound> {
        self.0.recv().await.map(Inbound::Frame)
    }
}

/// Alice writing to Bob: a node where both are registered, Alice's login and Bob's user id.
struct AliceAndBob {
    node: Arc<Node>,
    /// The node's data, removed when dropped.
    _dir: tempfile::TempDir,
    alice: IssuedToken,
    bob: String,
}

async fn alice_and_bob() -> AliceAndBob {
    let (node, dir) = embedded_node(Limits::default());
    node.register("alice", "secret-pass").await.unwrap();
    let bob = node.register("bob", "secret-pass").await.unwrap().user_id;
    let alice = node.login("alice", "secret-pass").await.unwrap();
    AliceAndBob {
        node,
        _dir: dir,
        alice,
        bob,
    }
}

/// A publish frame of a direct message `i` to `to`.
fn dm(i: u64, to: &str) -> Bytes {
    Bytes::from(format!(
        r#"{{"type":"publish","id":{i},"conv":"user:{to}","body":{{"i":{i}}}}}"#
    ))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dm_answer_and_the_senders_copy_leave_in_one_write() {
    let setup = alice_and_bob().await;
    let (node, token, bob) = (setup.node.clone(), &setup.alice, &setup.bob);
    let alice = token.user_id.clone();
    let principal = node.authenticate(&token.token).await.unwrap();
    let (tx, rx) = mpsc::unbounded_channel();
    let wire = Arc::new(Calls::default());
    let task = tokio::spawn(run_session(
        node.clone(),
        Fed(rx),
        wire.clone(),
        Some(PreAuth::from(principal)),
    ));
    let own = format!("\"conv\":\"user:{alice}\"");
    for i in 0..20u64 {
        tx.send(dm(i, bob)).unwrap();
        let answer = format!("\"type\":\"published\",\"id\":{i},");
        let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
        let call = loop {
            let found = wire
                .0
                .lock()
                .iter()
                .find(|c| c.iter().any(|f| f.contains(&answer)))
                .cloned();
            if let Some(call) = found {
                break call;
            }
            assert!(tokio::time::Instant::now() < deadline, "no answer to {i}");
            tokio::time::sleep(Duration::from_millis(2)).await;
        };
        assert!(
            call.iter()
                .any(|f| f.contains("\"type\":\"message\"") && f.contains(&own)),
            "publish {i}: the answer was written without the sender's copy: {call:?}"
        );
    }
    drop(tx);
    let _ = tokio::time::timeout(Duration::from_secs(5), task).await;
}

/// The `message` frames a wire was given, by message id: the bytes as written.
fn message_frames(reads: &Reads) -> Vec<(String, Bytes)> {
    let got = reads.got.lock();
    got.iter()
        .filter_map(|o| match o {
            Out::Text(b) => {
                let v: serde_json::Value = serde_json::from_slice(b).ok()?;
                let id = v["message_id"]
                    .as_str()
                    .filter(|_| v["type"] == "message")?;
                Some((id.to_owned(), b.clone()))
            }
            _ => None,
        })
        .collect()
}

/// Starts a session of the holder of `token`, fed from `rx`, writing to `wire`.
async fn start_session(
    node: &Arc<Node>,
    token: &str,
    wire: Arc<Reads>,
    rx: mpsc::UnboundedReceiver<Bytes>,
) -> tokio::task::JoinHandle<()> {
    let principal = node.authenticate(token).await.unwrap();
    tokio::spawn(run_session(
        node.clone(),
        Fed(rx),
        wire,
        Some(PreAuth::from(principal)),
    ))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_senders_copy_is_encoded_once_for_all_its_connections() {
    let setup = alice_and_bob().await;
    let (node, token, bob) = (setup.node.clone(), &setup.alice, &setup.bob);
    // Alice's second connection only listens: her copies reach it through the fan-out.
    let listener = Arc::new(Reads::default());
    let (keep_open, rx) = mpsc::unbounded_channel();
    let listening = start_session(&node, &token.token, listener.clone(), rx).await;
    let welcomed = || {
        listener
            .frames()
            .iter()
            .any(|f| f.contains("\"type\":\"welcome\""))
    };
    crate::common::eventually("the listener is welcomed", async || welcomed()).await;
    let sender = Arc::new(Reads::default());
    let (tx, rx) = mpsc::unbounded_channel();
    let sending = start_session(&node, &token.token, sender.clone(), rx).await;
    const DMS: usize = 10;
    for i in 0..DMS as u64 {
        tx.send(dm(i, bob)).unwrap();
    }
    crate::common::eventually("both connections have every copy", async || {
        message_frames(&sender).len() == DMS && message_frames(&listener).len() == DMS
    })
    .await;
    for ((id, written), (other_id, fanned_out)) in message_frames(&sender)
        .iter()
        .zip(&message_frames(&listener))
    {
        assert_eq!(id, other_id, "the same order on both connections");
        assert_eq!(
            written.as_ptr(),
            fanned_out.as_ptr(),
            "{id}: the sender's connection and the fan-out encoded it separately"
        );
    }
    drop(tx);
    drop(keep_open);
    let _ = tokio::time::timeout(Duration::from_secs(5), sending).await;
    let _ = tokio::time::timeout(Duration::from_secs(5), listening).await;
}
