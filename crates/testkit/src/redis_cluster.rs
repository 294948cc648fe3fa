//! [`RedisCluster`]: a real Redis Cluster of six `redis-server` children (3 masters, 3
//! replicas), made with `redis-cli --cluster create`, killed when dropped.
//!
//! Each node needs two ports (clients on `p`, the cluster bus on `p + 10000`); both are checked
//! free just before the start, and a node that fails to bind makes the whole start try again.
//! A watchdog shell kills the servers if the test process dies without dropping the cluster (a
//! cluster in a `static`, shared by one test binary, is never dropped).

use crate::{START_TIMEOUT, log_tail};
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// Nodes of every cluster: 3 masters, each with one replica.
const NODES: usize = 6;

/// A running Redis Cluster.
pub struct RedisCluster {
    nodes: Vec<Node>,
    node_timeout_ms: u64,
    watchdog: Option<Child>,
    _dir: tempfile::TempDir,
}

struct Node {
    port: u16,
    child: Option<Child>,
    log: PathBuf,
    dir: PathBuf,
}

/// The redis-cli binary: `$REDIS_CLI`, else `redis-cli` on the PATH.
fn cli() -> PathBuf {
    std::env::var_os("REDIS_CLI")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("redis-cli"))
}

fn server() -> PathBuf {
    std::env::var_os("REDIS_SERVER")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("redis-server"))
}

/// A port `p` with `p` and `p + 10000` both free a moment ago.
fn port_pair() -> u16 {
    loop {
        let l = TcpListener::bind("127.0.0.1:0").expect("a free port");
        let p = l.local_addr().expect("address").port();
        if p < 55_000 && TcpListener::bind(("127.0.0.1", p + 10_000)).is_ok() {
            return p;
        }
    }
}

impl RedisCluster {
    /// Starts a cluster whose nodes declare a master failed after `node_timeout_ms` (the
    /// failover test wants it short; 2000 is a calm default). `cluster-require-full-coverage`
    /// is `no`, as production should set it: a shard without master stops only its own slots.
    pub fn start(node_timeout_ms: u64) -> RedisCluster {
        let mut failures = Vec::new();
        for _ in 0..3 {
            match RedisCluster::try_start(node_timeout_ms) {
                Ok(c) => return c,
                Err(e) => failures.push(e),
            }
        }
        panic!("the Redis Cluster did not start: {}", failures.join("; "))
    }

    fn try_start(node_timeout_ms: u64) -> Result<RedisCluster, String> {
        let dir = tempfile::tempdir().expect("tempdir");
        let mut c = RedisCluster {
            nodes: Vec::new(),
            node_timeout_ms,
            watchdog: None,
            _dir: tempfile::tempdir().expect("tempdir"),
        };
        for i in 0..NODES {
            let port = port_pair();
            let nd = dir.path().join(format!("n{i}"));
            std::fs::create_dir_all(&nd).map_err(|e| e.to_string())?;
            let log = nd.join("redis.log");
            let child = spawn_node(port, &nd, &log, node_timeout_ms)?;
            c.nodes.push(Node {
                port,
                child: Some(child),
                log,
                dir: nd,
            });
        }
        c._dir = dir;
        c.watch();
        for n in &mut c.nodes {
            wait_own(n)?;
        }
        let addrs: Vec<String> = c
            .nodes
            .iter()
            .map(|n| format!("127.0.0.1:{}", n.port))
            .collect();
        let out = Command::new(cli())
            .arg("--cluster")
            .arg("create")
            .args(&addrs)
            .args(["--cluster-replicas", "1", "--cluster-yes"])
            .output()
            .map_err(|e| format!("cannot run redis-cli ({e})"))?;
        if !out.status.success() {
            return Err(format!(
                "redis-cli --cluster create: {}",
                String::from_utf8_lossy(&out.stdout)
            ));
        }
        c.wait_ready(START_TIMEOUT * 3)?;
        Ok(c)
    }

    /// Starts the watchdog that kills the servers once this process is gone.
    fn watch(&mut self) {
        let pids: Vec<String> = self
            .nodes
            .iter()
            .filter_map(|n| n.child.as_ref().map(|c| c.id().to_string()))
            .collect();
        let script = format!(
            "while kill -0 {} 2>/dev/null; do sleep 1; done; kill -9 {} 2>/dev/null",
            std::process::id(),
            pids.join(" ")
        );
        self.watchdog = Command::new("sh")
            .arg("-c")
            .arg(script)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .ok();
    }

    /// Waits until every live node says `cluster_state:ok` and every master has its replica online (in sync).
    pub fn wait_ready(&self, within: Duration) -> Result<(), String> {
        let deadline = Instant::now() + within;
        loop {
            let ok = self.nodes.iter().filter(|n| n.child.is_some()).all(|n| {
                self.run(n.port, &["CLUSTER", "INFO"])
                    .contains("cluster_state:ok")
            }) && self.masters().iter().all(|&p| {
                self.run(p, &["INFO", "replication"])
                    .lines()
                    .any(|l| l.starts_with("slave0:") && l.contains("state=online"))
            });
            if ok && self.masters().len() == 3 {
                return Ok(());
            }
            if Instant::now() >= deadline {
                return Err(format!(
                    "not ready within {within:?}: {}",
                    self.run(self.nodes[0].port, &["CLUSTER", "NODES"])
                ));
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// Seed URLs (every node), for `--redis-cluster`.
    pub fn urls(&self) -> Vec<String> {
        self.nodes
            .iter()
            .map(|n| format!("redis://127.0.0.1:{}", n.port))
            .collect()
    }

    /// The ports of the live masters, as a live node sees them.
    pub fn masters(&self) -> Vec<u16> {
        self.node_lines()
            .into_iter()
            .filter(|l| l.flags.contains("master") && !l.flags.contains("fail"))
            .map(|l| l.port)
            .collect()
    }

    /// The port of the master serving `slot`.
    pub fn master_of_slot(&self, slot: u16) -> Option<u16> {
        self.node_lines()
            .into_iter()
            .filter(|l| l.flags.contains("master") && !l.flags.contains("fail"))
            .find(|l| l.slots.iter().any(|&(a, b)| a <= slot && slot <= b))
            .map(|l| l.port)
    }

    /// The cluster node id of the node on `port`.
    pub fn node_id(&self, port: u16) -> Option<String> {
        self.node_lines()
            .into_iter()
            .find(|l| l.port == port)
            .map(|l| l.id)
    }

    /// The lowest slot served by the master on `port`.
    pub fn first_slot(&self, port: u16) -> Option<u16> {
        self.node_lines()
            .into_iter()
            .find(|l| l.port == port)
            .and_then(|l| l.slots.iter().map(|&(a, _)| a).min())
    }

    fn node_lines(&self) -> Vec<NodeLine> {
        for n in self.nodes.iter().filter(|n| n.child.is_some()) {
            let text = self.run(n.port, &["CLUSTER", "NODES"]);
            let lines: Vec<NodeLine> = text.lines().filter_map(NodeLine::parse).collect();
            if !lines.is_empty() {
                return lines;
            }
        }
        Vec::new()
    }

    /// SIGKILLs the node on `port` (a crash).
    pub fn kill(&mut self, port: u16) {
        if let Some(n) = self.nodes.iter_mut().find(|n| n.port == port)
            && let Some(mut c) = n.child.take()
        {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// Starts a killed node again on its port and directory: it reads its cluster config and
    /// rejoins (a failed-over master comes back as a replica of its successor). Then waits
    /// until the cluster is ready again (every master with an online replica).
    pub fn restart(&mut self, port: u16) -> Result<(), String> {
        let timeout = self.node_timeout_ms;
        let n = self
            .nodes
            .iter_mut()
            .find(|n| n.port == port)
            .ok_or("unknown node")?;
        if n.child.is_none() {
            n.child = Some(spawn_node(n.port, &n.dir, &n.log, timeout)?);
            wait_own(n)?;
        }
        self.watch_again();
        self.wait_ready(START_TIMEOUT * 3)
    }

    fn watch_again(&mut self) {
        if let Some(mut w) = self.watchdog.take() {
            let _ = w.kill();
            let _ = w.wait();
        }
        self.watch();
    }

    /// Runs `redis-cli -p <port> <args...>` and returns its output (empty on failure).
    pub fn run(&self, port: u16, args: &[&str]) -> String {
        Command::new(cli())
            .arg("-p")
            .arg(port.to_string())
            .args(args)
            .output()
            .map(|o| String::from_utf8_lossy(&o.stdout).into_owned())
            .unwrap_or_default()
    }

    /// Moves `slots` slots from the master on `from` to the master on `to` with
    /// `redis-cli --cluster reshard` (the source's lowest slots go first); returns its output.
    pub fn reshard(&self, from: u16, to: u16, slots: u32) -> Result<String, String> {
        let (Some(from_id), Some(to_id)) = (self.node_id(from), self.node_id(to)) else {
            return Err("unknown node".into());
        };
        let out = Command::new(cli())
            .arg("--cluster")
            .arg("reshard")
            .arg(format!("127.0.0.1:{from}"))
            .args(["--cluster-from", &from_id, "--cluster-to", &to_id])
            .args(["--cluster-slots", &slots.to_string(), "--cluster-yes"])
            .output()
            .map_err(|e| e.to_string())?;
        let text = String::from_utf8_lossy(&out.stdout).into_owned();
        if out.status.success() {
            Ok(text)
        } else {
            Err(format!("{text}{}", String::from_utf8_lossy(&out.stderr)))
        }
    }

    /// The last lines of the node's log (for failure messages).
    pub fn log_tail(&self, port: u16) -> String {
        self.nodes
            .iter()
            .find(|n| n.port == port)
            .map(|n| log_tail(&n.log))
            .unwrap_or_default()
    }
}

/// Starts one cluster-mode `redis-server` on `port` in `dir`.
fn spawn_node(port: u16, dir: &Path, log: &Path, node_timeout_ms: u64) -> Result<Child, String> {
    Command::new(server())
        .arg("--port")
        .arg(port.to_string())
        .args(["--bind", "127.0.0.1", "--save", "", "--appendonly", "no"])
        .args(["--protected-mode", "no", "--daemonize", "no"])
        .args(["--cluster-enabled", "yes"])
        .args(["--cluster-require-full-coverage", "no"])
        .arg("--cluster-node-timeout")
        .arg(node_timeout_ms.to_string())
        .arg("--dir")
        .arg(dir)
        .arg("--logfile")
        .arg(log)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .map_err(|e| format!("cannot start redis-server ({e})"))
}

/// Waits until the node's port answers as our child.
fn wait_own(n: &mut Node) -> Result<(), String> {
    let deadline = Instant::now() + START_TIMEOUT;
    loop {
        let pid = crate::redis::answering_pid(n.port);
        if pid.is_some() && pid == n.child.as_ref().map(Child::id) {
            return Ok(());
        }
        if let Some(c) = n.child.as_mut()
            && let Ok(Some(status)) = c.try_wait()
        {
            return Err(format!("port {} ({status}): {}", n.port, log_tail(&n.log)));
        }
        if Instant::now() >= deadline {
            return Err(format!(
                "port {}: no answer within {START_TIMEOUT:?}",
                n.port
            ));
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// One line of `CLUSTER NODES`.
struct NodeLine {
    id: String,
    port: u16,
    flags: String,
    slots: Vec<(u16, u16)>,
}

impl NodeLine {
    fn parse(line: &str) -> Option<NodeLine> {
        let f: Vec<&str> = line.split_whitespace().collect();
        if f.len() < 8 {
            return None;
        }
        let port = f[1].split('@').next()?.rsplit(':').next()?.parse().ok()?;
        let slots = f[8..]
            .iter()
            .filter(|s| !s.starts_with('['))
            .filter_map(|s| match s.split_once('-') {
                Some((a, b)) => Some((a.parse().ok()?, b.parse().ok()?)),
                None => s.parse().ok().map(|a| (a, a)),
            })
            .collect();
        Some(NodeLine {
            id: f[0].to_owned(),
            port,
            flags: f[2].to_owned(),
            slots,
        })
    }
}

impl Drop for RedisCluster {
    fn drop(&mut self) {
        for n in &mut self.nodes {
            if let Some(mut c) = n.child.take() {
                let _ = c.kill();
                let _ = c.wait();
            }
        }
        if let Some(mut w) = self.watchdog.take() {
            let _ = w.kill();
            let _ = w.wait();
        }
    }
}
