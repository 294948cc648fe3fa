//! Fixtures shared by test suites. [`RedisServer`] starts the real `redis-server` binary on a
//! free 127.0.0.1 port with its own temporary directory, and stops it when dropped. Cluster
//! tests use it instead of any mock: they need Redis's real scripting, streams and pub/sub.

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
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

/// A free TCP port on 127.0.0.1 (bound, then released, so a child can take it).
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free port")
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
        let dir = tempfile::tempdir().expect("tempdir");
        let mut r = RedisServer {
            child: None,
            port: free_port(),
            dir,
            persistent,
        };
        r.spawn();
        r
    }

    fn spawn(&mut self) {
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
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        if self.persistent {
            cmd.args(["--appendonly", "yes", "--appendfsync", "always"]);
        } else {
            cmd.args(["--appendonly", "no"]);
        }
        let child = cmd.spawn().unwrap_or_else(|e| {
            panic!("cannot start redis-server ({e}); install it (apt-get install redis-server)")
        });
        self.child = Some(child);
        let deadline = Instant::now() + Duration::from_secs(10);
        while !ping(self.port) {
            assert!(
                Instant::now() < deadline,
                "redis-server did not answer PING on port {}",
                self.port
            );
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

    /// Starts it again on the same port and directory.
    pub fn restart(&mut self) {
        self.stop();
        self.spawn();
    }

    /// Sends one inline command and returns the raw reply (for test assertions such as
    /// `INFO commandstats`).
    pub fn command(&self, line: &str) -> String {
        let mut s = TcpStream::connect(("127.0.0.1", self.port)).expect("connect to redis");
        s.set_read_timeout(Some(Duration::from_secs(5))).ok();
        s.write_all(format!("{line}\r\n").as_bytes())
            .expect("write to redis");
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
        String::from_utf8_lossy(&out).into_owned()
    }
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

fn ping(port: u16) -> bool {
    let Ok(mut s) = TcpStream::connect(("127.0.0.1", port)) else {
        return false;
    };
    s.set_read_timeout(Some(Duration::from_millis(500))).ok();
    if s.write_all(b"PING\r\n").is_err() {
        return false;
    }
    let mut buf = [0u8; 16];
    matches!(s.read(&mut buf), Ok(n) if buf[..n].starts_with(b"+PONG"))
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        self.stop();
    }
}

/// A real nginx started in the foreground with a generated configuration, stopped on drop.
/// Used to put a plain (non-sticky) HTTP balancer in front of several nodes.
pub struct Nginx {
    child: Option<Child>,
    port: u16,
    _dir: tempfile::TempDir,
}

/// The nginx binary: `$NGINX`, else `nginx` on the PATH, else /usr/sbin/nginx.
fn nginx_binary() -> PathBuf {
    if let Some(p) = std::env::var_os("NGINX") {
        return PathBuf::from(p);
    }
    let sbin = PathBuf::from("/usr/sbin/nginx");
    if sbin.exists() {
        sbin
    } else {
        PathBuf::from("nginx")
    }
}

impl Nginx {
    /// Starts nginx on a free 127.0.0.1 port with `http_body` as the body of its `http { }`
    /// block; `{port}` in it is replaced by the listening port.
    pub fn start(http_body: &str) -> Nginx {
        let dir = tempfile::tempdir().expect("tempdir");
        let port = free_port();
        let p = dir.path().display().to_string();
        let conf = format!(
            "worker_processes 1;\nerror_log {p}/error.log warn;\npid {p}/nginx.pid;\nevents {{ worker_connections 1024; }}\n\
             http {{\n  access_log off;\n  client_body_temp_path {p}/body;\n  proxy_temp_path {p}/proxy;\n  fastcgi_temp_path {p}/fcgi;\n  \
             uwsgi_temp_path {p}/uwsgi;\n  scgi_temp_path {p}/scgi;\n{}\n}}\n",
            http_body.replace("{port}", &port.to_string())
        );
        std::fs::write(dir.path().join("nginx.conf"), conf).expect("write nginx.conf");
        let child = Command::new(nginx_binary())
            .arg("-p")
            .arg(dir.path())
            .arg("-c")
            .arg(dir.path().join("nginx.conf"))
            .args(["-g", "daemon off;"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| {
                panic!("cannot start nginx ({e}); install it (apt-get install nginx)")
            });
        let mut n = Nginx {
            child: Some(child),
            port,
            _dir: dir,
        };
        let deadline = Instant::now() + Duration::from_secs(10);
        while TcpStream::connect(("127.0.0.1", port)).is_err() {
            if let Some(Ok(Some(status))) = n.child.as_mut().map(|c| c.try_wait()) {
                let log =
                    std::fs::read_to_string(n._dir.path().join("error.log")).unwrap_or_default();
                panic!("nginx exited ({status}): {log}");
            }
            assert!(Instant::now() < deadline, "nginx did not listen on {port}");
            std::thread::sleep(Duration::from_millis(20));
        }
        n
    }

    /// `http://127.0.0.1:<port>`.
    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// The port.
    pub fn port(&self) -> u16 {
        self.port
    }
}

impl Drop for Nginx {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn starts_answers_and_keeps_data_across_a_restart_when_persistent() {
        let mut r = RedisServer::start_with(true);
        assert!(r.command("SET k v").starts_with("+OK"));
        r.restart();
        assert!(r.command("GET k").contains("v"), "AOF kept the key");
        r.stop();
        assert!(!ping(r.port()));
    }
}
