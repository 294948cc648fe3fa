//! [`RedisServer`]: a real `redis-server` child on its own port and directory.

use crate::{START_ATTEMPTS, START_TIMEOUT, free_port, log_tail};
use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// A `redis-server` child process.
pub struct RedisServer {
    child: Option<Child>,
    port: u16,
    dir: tempfile::TempDir,
    persistent: bool,
}

/// The redis-server binary: `$REDIS_SERVER`, else `redis-server` on the PATH.
fn binary() -> PathBuf {
    std::env::var_os("REDIS_SERVER")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("redis-server"))
}

impl RedisServer {
    /// Starts a Redis without persistence.
    pub fn start() -> RedisServer {
        RedisServer::start_with(false)
    }

    /// Starts a Redis; with `persistent`, every write is appended to an fsynced AOF in its
    /// directory, so a restart keeps the data.
    pub fn start_with(persistent: bool) -> RedisServer {
        RedisServer::start_on(persistent, free_port)
    }

    /// Starts a Redis on the first port from `next_port` that it manages to bind.
    fn start_on(persistent: bool, mut next_port: impl FnMut() -> u16) -> RedisServer {
        let mut r = RedisServer {
            child: None,
            port: 0,
            dir: tempfile::tempdir().expect("tempdir"),
            persistent,
        };
        let mut failures = Vec::new();
        for _ in 0..START_ATTEMPTS {
            r.port = next_port();
            match r.spawn() {
                Ok(()) => return r,
                Err(e) => failures.push(e),
            }
        }
        panic!("redis-server did not start: {}", failures.join("; "))
    }

    /// Starts the child on `self.port` and waits until it answers as itself; `Err` (the child
    /// gone) if it exited, e.g. because another process holds the port.
    fn spawn(&mut self) -> Result<(), String> {
        let log = self.dir.path().join("redis.log");
        let mut cmd = Command::new(binary());
        cmd.arg("--port")
            .arg(self.port.to_string())
            .args([
                "--bind",
                "127.0.0.1",
                "--save",
                "",
                "--protected-mode",
                "no",
                "--daemonize",
                "no",
            ])
            .arg("--dir")
            .arg(self.dir.path())
            .arg("--logfile")
            .arg(&log)
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        if self.persistent {
            cmd.args(["--appendonly", "yes", "--appendfsync", "always"]);
        } else {
            cmd.args(["--appendonly", "no"]);
        }
        let mut child = cmd.spawn().unwrap_or_else(|e| {
            panic!("cannot start redis-server ({e}); install it (apt-get install redis-server)")
        });
        let deadline = Instant::now() + START_TIMEOUT;
        loop {
            // Another test's Redis may answer on this port: only our child's pid will do. And
            // a Redis loading its AOF answers INFO but `-LOADING` to commands: wait for PONG.
            if answering_pid(self.port) == Some(child.id()) && serving(self.port) {
                self.child = Some(child);
                return Ok(());
            }
            if let Ok(Some(status)) = child.try_wait() {
                return Err(format!("port {} ({status}): {}", self.port, log_tail(&log)));
            }
            if Instant::now() >= deadline {
                let _ = child.kill();
                let _ = child.wait();
                return Err(format!(
                    "port {}: no answer within {START_TIMEOUT:?}: {}",
                    self.port,
                    log_tail(&log)
                ));
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// `redis://127.0.0.1:<port>/`.
    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}/", self.port)
    }

    /// The port.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// The data directory.
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// Stops the server (SIGKILL: a crash; with persistence every acknowledged write is in the AOF).
    pub fn stop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// Starts it again on the same port and directory (clients hold its URL). Panics if the
    /// port was taken by another process meanwhile.
    pub fn restart(&mut self) {
        self.stop();
        let mut failures = Vec::new();
        for _ in 0..START_ATTEMPTS {
            match self.spawn() {
                Ok(()) => return,
                Err(e) => failures.push(e),
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        panic!("redis-server did not restart: {}", failures.join("; "))
    }

    /// Sends one inline command and returns the raw reply (for test assertions such as
    /// `INFO commandstats`).
    pub fn command(&self, line: &str) -> String {
        command(self.port, line, Duration::from_secs(5)).expect("a reply from redis")
    }
}

/// Sends one inline command to the Redis on `port` and reads its reply.
fn command(port: u16, line: &str, timeout: Duration) -> std::io::Result<String> {
    let mut s = TcpStream::connect(("127.0.0.1", port))?;
    s.set_read_timeout(Some(timeout))?;
    s.write_all(format!("{line}\r\n").as_bytes())?;
    let mut out = Vec::new();
    let mut buf = [0u8; 65536];
    // Read until the reply looks complete (bulk replies end with CRLF after their length).
    loop {
        let n = s.read(&mut buf).unwrap_or(0);
        if n == 0 {
            break;
        }
        out.extend_from_slice(&buf[..n]);
        if reply_complete(&out) {
            break;
        }
    }
    Ok(String::from_utf8_lossy(&out).into_owned())
}

fn reply_complete(r: &[u8]) -> bool {
    let text = String::from_utf8_lossy(r);
    match text.chars().next() {
        Some('$') => {
            let Some((len, rest)) = text[1..].split_once("\r\n") else {
                return false;
            };
            let Ok(len) = len.parse::<i64>() else {
                return true;
            };
            len < 0 || rest.len() >= len as usize + 2
        }
        Some(_) => text.ends_with("\r\n"),
        None => false,
    }
}

/// The pid of the Redis answering on `port`, if one does.
pub(crate) fn answering_pid(port: u16) -> Option<u32> {
    let info = command(port, "INFO server", Duration::from_millis(500)).ok()?;
    info.lines()
        .find_map(|l| l.strip_prefix("process_id:"))
        .and_then(|pid| pid.trim().parse().ok())
}

/// Whether the Redis on `port` serves commands (it answers PING with PONG, not `-LOADING`).
fn serving(port: u16) -> bool {
    command(port, "PING", Duration::from_millis(500)).is_ok_and(|r| r.starts_with("+PONG"))
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        self.stop();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// These tests take and free ports on purpose: run one at a time, or one could restart
    /// onto a port the other just took.
    static ONE_AT_A_TIME: std::sync::Mutex<()> = std::sync::Mutex::new(());

    #[test]
    fn starts_answers_and_keeps_data_across_a_restart_when_persistent() {
        let _one = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
        let mut r = RedisServer::start_with(true);
        assert!(r.command("SET k v").starts_with("+OK"));
        r.restart();
        assert!(r.command("GET k").contains("v"), "AOF kept the key");
        let ours = r.child.as_ref().map(Child::id);
        r.stop();
        // Another test may start a Redis of its own on the freed port at once: only ours must
        // be gone.
        assert!(ours.is_some());
        assert_ne!(answering_pid(r.port()), ours, "stopped");
    }

    #[test]
    fn a_port_taken_by_another_redis_is_not_mistaken_for_ours() {
        let _one = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
        let theirs = RedisServer::start();
        assert!(theirs.command("SET k theirs").starts_with("+OK"));
        let mut ports = [theirs.port(), free_port()].into_iter();
        let ours = RedisServer::start_on(false, || ports.next().expect("a second port"));
        assert_ne!(ours.port(), theirs.port(), "moved to another port");
        assert!(
            ours.command("GET k").starts_with("$-1"),
            "a Redis of its own"
        );
        assert_eq!(
            answering_pid(ours.port()),
            ours.child.as_ref().map(Child::id)
        );
    }
}
