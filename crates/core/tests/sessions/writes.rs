//! How a session's frames reach the socket: a sender's answer to a direct message and its own
//! copy of that message leave in one write (one `sendmsg`), not one each from two threads.

use crate::common::embedded_node;
use bytes::Bytes;
use std::io;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;
use switchboard_core::config::Limits;
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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dm_answer_and_the_senders_copy_leave_in_one_write() {
    let (node, _dir) = embedded_node(Limits::default());
    node.register("alice", "secret-pass").await.unwrap();
    let bob = node.register("bob", "secret-pass").await.unwrap();
    let token = node.login("alice", "secret-pass").await.unwrap();
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
        let publish = format!(
            r#"{{"type":"publish","id":{i},"conv":"user:{}","body":{{"i":{i}}}}}"#,
            bob.user_id
        );
        tx.send(Bytes::from(publish)).unwrap();
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
