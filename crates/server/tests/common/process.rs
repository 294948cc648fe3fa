//! Real `switchboard serve` child processes, for tests that signal or kill a node and for
//! cluster nodes on Redis.

use super::{API_KEY, Http, WAIT};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;
use tokio::io::{AsyncBufReadExt, BufReader};

/// A `switchboard serve` child process (for SIGKILL and SIGTERM tests).
pub struct NodeProcess {
    pub child: tokio::process::Child,
    pub addr: SocketAddr,
    pub http: Http,
    /// What the node printed on stdout before its `listening on` line (warnings included).
    pub startup: Vec<String>,
}

impl NodeProcess {
    /// Starts the real binary on a free port and waits for its `listening on` line.
    pub async fn start(data_dir: &Path, extra: &[&str]) -> NodeProcess {
        let mut cmd = tokio::process::Command::new(env!("CARGO_BIN_EXE_switchboard"));
        cmd.arg("serve");
        if !extra.contains(&"--listen") {
            cmd.args(["--listen", "127.0.0.1:0"]);
        }
        if !extra.contains(&"--tcp-listen") {
            cmd.args(["--tcp-listen", "off"]);
        }
        cmd.args(["--api-key", API_KEY, "--data-dir"])
            .arg(data_dir)
            .args(extra)
            .env("RUST_LOG", "warn")
            // As in `test_config`: many registrations and logins from one address.
            .env("SWITCHBOARD_REGISTER_PER_IP_PER_MIN", "0")
            .env("SWITCHBOARD_LOGIN_PER_IP_PER_MIN", "0")
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .kill_on_drop(true);
        let mut child = cmd.spawn().expect("spawn switchboard");
        let stdout = child.stdout.take().unwrap();
        let mut lines = BufReader::new(stdout).lines();
        let mut startup = Vec::new();
        let addr = tokio::time::timeout(WAIT, async {
            while let Some(line) = lines.next_line().await.unwrap() {
                if let Some((_, rest)) = line.split_once("listening on ") {
                    let addr = rest.split_whitespace().next().unwrap();
                    return addr.parse::<SocketAddr>().unwrap();
                }
                startup.push(line);
            }
            panic!("switchboard exited before listening")
        })
        .await
        .expect("switchboard did not print `listening on` in time");
        tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });
        NodeProcess {
            child,
            addr,
            http: Http::new(addr),
            startup,
        }
    }

    pub fn ws_url(&self) -> String {
        format!("ws://{}/v1/ws", self.addr)
    }

    pub fn signal(&self, sig: &str) {
        let pid = self.child.id().expect("running").to_string();
        let ok = std::process::Command::new("kill")
            .args([format!("-{sig}"), pid])
            .status()
            .unwrap()
            .success();
        assert!(ok, "kill -{sig}");
    }

    /// Waits for exit; returns the exit code.
    pub async fn wait(&mut self, within: Duration) -> Option<i32> {
        tokio::time::timeout(within, self.child.wait())
            .await
            .expect("process did not exit in time")
            .unwrap()
            .code()
    }
}

/// A cluster-mode child on the Redis at `redis_url` with `roles`, node id `id`, a 2 s lease,
/// and `extra` arguments.
pub async fn redis_node(
    redis_url: &str,
    dir: &Path,
    roles: &str,
    id: &str,
    extra: &[&str],
) -> NodeProcess {
    let mut args = vec![
        "--roles",
        roles,
        "--redis",
        redis_url,
        "--node-id",
        id,
        "--lease-ms",
        "2000",
    ];
    args.extend_from_slice(extra);
    NodeProcess::start(dir, &args).await
}

pub fn data_path(dir: &tempfile::TempDir) -> PathBuf {
    dir.path().to_path_buf()
}
