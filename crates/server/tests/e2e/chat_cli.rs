//! The README demo, end to end: two `switchboard chat` processes talk through a real node, and
//! a chat that loses its node reconnects and shows what was said meanwhile, exactly once.

use crate::common;
use common::*;
use std::process::Stdio;
use std::time::Duration;
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader, Lines};
use tokio::process::{Child, ChildStdout, Command};

struct Chat {
    child: Child,
    out: Lines<BufReader<ChildStdout>>,
}

impl Chat {
    async fn start(server: &str, user: &str) -> Chat {
        let mut child = Command::new(env!("CARGO_BIN_EXE_switchboard"))
            .args(["chat", "--server", server, "--user", user, "--room", "demo"])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .kill_on_drop(true)
            .spawn()
            .expect("spawn chat");
        let out = BufReader::new(child.stdout.take().unwrap()).lines();
        let mut chat = Chat { child, out };
        chat.wait_for("joined #demo").await;
        chat
    }

    async fn say(&mut self, line: &str) {
        let stdin = self.child.stdin.as_mut().unwrap();
        stdin
            .write_all(format!("{line}\n").as_bytes())
            .await
            .unwrap();
        stdin.flush().await.unwrap();
    }

    /// Waits for a printed line containing `text`; returns every line read until then.
    async fn wait_for(&mut self, text: &str) -> Vec<String> {
        let mut seen = Vec::new();
        let r = tokio::time::timeout(Duration::from_secs(15), async {
            while let Some(line) = self.out.next_line().await.unwrap() {
                let hit = line.contains(text);
                seen.push(line);
                if hit {
                    return;
                }
            }
            panic!("chat exited before printing {text:?}; it printed {seen:?}");
        })
        .await;
        assert!(
            r.is_ok(),
            "chat never printed {text:?}; it printed {seen:?}"
        );
        seen
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_chat_clients_talk_and_survive_a_server_restart() {
    let dir = tempfile::tempdir().unwrap();
    let mut node = NodeProcess::start(dir.path(), &[]).await;
    let server = format!("http://{}", node.addr);
    let mut alice = Chat::start(&server, "alice").await;
    let mut bob = Chat::start(&server, "bob").await;

    alice.say("hello bob").await;
    bob.wait_for("alice: hello bob").await;
    bob.say("hi alice").await;
    alice.wait_for("bob: hi alice").await;

    // Restart the node on the same port and data: both clients reconnect and resume.
    let port = node.addr.port();
    node.signal("TERM");
    node.wait(Duration::from_secs(30)).await;
    let node = NodeProcess::start(dir.path(), &["--listen", &format!("127.0.0.1:{port}")]).await;
    // A message sent over HTTP while the chats are reconnecting reaches both, once.
    let (_, token) = node.http.user("carol").await;
    let (_, rooms) = node.http.get("/v1/rooms", &token).await;
    let room = rooms["rooms"][0]["room_id"].as_str().unwrap().to_owned();
    node.http
        .publish(&token, &room, serde_json::json!({"text": "welcome back"}))
        .await;
    for c in [&mut alice, &mut bob] {
        let lines = c.wait_for("carol: welcome back").await;
        assert!(
            !lines.iter().any(|l| l.contains("hello bob")),
            "history was shown twice: {lines:?}"
        );
    }
    alice.say("/quit").await;
    assert!(
        tokio::time::timeout(Duration::from_secs(5), alice.child.wait())
            .await
            .unwrap()
            .unwrap()
            .success()
    );
}
