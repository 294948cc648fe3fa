//! [`Nginx`]: a real nginx child with a generated configuration on its own port.

use crate::{START_ATTEMPTS, START_TIMEOUT, free_port, log_tail};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

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
        Nginx::start_on(http_body, free_port)
    }

    /// Starts nginx on the first port from `next_port` that it manages to bind.
    fn start_on(http_body: &str, mut next_port: impl FnMut() -> u16) -> Nginx {
        let dir = tempfile::tempdir().expect("tempdir");
        let mut failures = Vec::new();
        for _ in 0..START_ATTEMPTS {
            let port = next_port();
            match spawn(dir.path(), http_body, port) {
                Ok(child) => {
                    return Nginx {
                        child: Some(child),
                        port,
                        _dir: dir,
                    };
                }
                Err(e) => failures.push(e),
            }
        }
        panic!("nginx did not start: {}", failures.join("; "))
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

/// Writes the configuration for `port` into `dir` and starts nginx on it; `Ok` once it listens,
/// `Err` (the child gone) if it exited, e.g. because another process holds the port.
fn spawn(dir: &Path, http_body: &str, port: u16) -> Result<Child, String> {
    let p = dir.display().to_string();
    let pid_file = dir.join("nginx.pid");
    let error_log = dir.join("error.log");
    let _ = std::fs::remove_file(&pid_file);
    let _ = std::fs::remove_file(&error_log);
    let conf = format!(
        "worker_processes 1;\nerror_log {p}/error.log warn;\npid {p}/nginx.pid;\nevents {{ worker_connections 1024; }}\n\
         http {{\n  access_log off;\n  client_body_temp_path {p}/body;\n  proxy_temp_path {p}/proxy;\n  fastcgi_temp_path {p}/fcgi;\n  \
         uwsgi_temp_path {p}/uwsgi;\n  scgi_temp_path {p}/scgi;\n{}\n}}\n",
        http_body.replace("{port}", &port.to_string())
    );
    std::fs::write(dir.join("nginx.conf"), conf).expect("write nginx.conf");
    let mut child = Command::new(nginx_binary())
        .arg("-p")
        .arg(dir)
        .arg("-c")
        .arg(dir.join("nginx.conf"))
        .args(["-g", "daemon off;"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap_or_else(|e| panic!("cannot start nginx ({e}); install it (apt-get install nginx)"));
    let deadline = Instant::now() + START_TIMEOUT;
    loop {
        // nginx writes its pid file only after binding its sockets: our child's pid there means
        // the port is ours, whoever else may have tried for it.
        let pid = std::fs::read_to_string(&pid_file).unwrap_or_default();
        if pid.trim() == child.id().to_string() && TcpStream::connect(("127.0.0.1", port)).is_ok() {
            return Ok(child);
        }
        if let Ok(Some(status)) = child.try_wait() {
            return Err(format!("port {port} ({status}): {}", log_tail(&error_log)));
        }
        if Instant::now() >= deadline {
            stop(&mut child);
            return Err(format!(
                "port {port}: not listening within {START_TIMEOUT:?}: {}",
                log_tail(&error_log)
            ));
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// How long nginx gets to stop its workers before it is killed.
const STOP_TIMEOUT: Duration = Duration::from_secs(5);

/// Stops nginx with its workers. SIGKILL would end only the master: its worker kept running,
/// holding the listening socket, after the test was over. SIGTERM is nginx's fast shutdown (the
/// master ends its workers, then itself); SIGKILL only if that takes too long.
fn stop(child: &mut Child) {
    let pid = child.id().to_string();
    let termed = Command::new("sh")
        .args(["-c", &format!("kill -TERM {pid}")])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    let deadline = Instant::now() + STOP_TIMEOUT;
    while termed && Instant::now() < deadline {
        if let Ok(Some(_)) = child.try_wait() {
            return;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    let _ = child.kill();
    let _ = child.wait();
}

impl Drop for Nginx {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            stop(&mut c);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::{Read, Write};

    /// The body of a GET / on `port`.
    fn get(port: u16) -> String {
        let mut s = TcpStream::connect(("127.0.0.1", port)).expect("connect");
        s.write_all(b"GET / HTTP/1.0\r\n\r\n").expect("write");
        let mut out = String::new();
        s.read_to_string(&mut out).expect("read");
        out
    }

    /// The pids of `parent`'s children (from /proc).
    fn children(parent: u32) -> Vec<u32> {
        let path = format!("/proc/{parent}/task/{parent}/children");
        std::fs::read_to_string(path)
            .unwrap_or_default()
            .split_whitespace()
            .filter_map(|p| p.parse().ok())
            .collect()
    }

    #[test]
    fn dropping_it_stops_the_workers_too() {
        let body = "server { listen 127.0.0.1:{port}; location / { return 200 \"up\"; } }";
        let nginx = Nginx::start(body);
        let master = nginx.child.as_ref().expect("running").id();
        let deadline = Instant::now() + START_TIMEOUT;
        let workers = loop {
            let w = children(master);
            if !w.is_empty() || Instant::now() >= deadline {
                break w;
            }
            std::thread::sleep(Duration::from_millis(20));
        };
        assert!(!workers.is_empty(), "nginx started no worker");
        let port = nginx.port();
        drop(nginx);
        for w in workers {
            assert!(
                !std::path::Path::new(&format!("/proc/{w}")).exists()
                    || std::fs::read_to_string(format!("/proc/{w}/stat"))
                        .is_ok_and(|s| s.contains(") Z ")),
                "worker {w} outlived its master"
            );
        }
        assert!(
            TcpStream::connect(("127.0.0.1", port)).is_err(),
            "port {port} still answers after the drop"
        );
    }

    #[test]
    fn a_port_taken_by_another_server_moves_nginx_to_another() {
        let body = "server { listen 127.0.0.1:{port}; location / { return 200 \"MARK\"; } }";
        let theirs = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        let taken = theirs.local_addr().expect("addr").port();
        let mut ports = [taken, free_port()].into_iter();
        let ours = Nginx::start_on(&body.replace("MARK", "ours"), || {
            ports.next().expect("a second port")
        });
        assert_ne!(ours.port(), taken);
        assert!(get(ours.port()).ends_with("ours"), "{}", get(ours.port()));
    }
}
