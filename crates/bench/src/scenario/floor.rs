//! `floor`: what the kernel alone charges for one delivery on this machine. No server: this
//! process accepts N loopback connections from a reader child process, then writes one frame
//! of `--frame-bytes` to each of them, round after round at `--rate` rounds per second, and
//! counts its own CPU per write. Every Switchboard delivery is (at least) one such write, so
//! this is the floor under its server CPU per delivery, measured the same way and side by side;
//! the difference is what the server itself adds. On loopback the figure includes the
//! receiving socket's TCP processing, which the kernel runs in the writer's context.

use crate::cli::{FloorArgs, MAX_CONNECTIONS, MAX_DURATION_S};
use crate::error::{BenchError, Result};
use crate::procfs::Probe;
use crate::report::Report;
use std::io::{BufRead, BufReader, Write};
use std::net::{Ipv4Addr, SocketAddr, TcpListener};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// The longest the client process may take to open its connections.
const ACCEPT_WITHIN: Duration = Duration::from_secs(120);

/// Runs the scenario; true when it passed.
pub fn run(a: FloorArgs) -> Result<bool> {
    if a.connections == 0 || a.connections > MAX_CONNECTIONS {
        return Err(BenchError::Config(format!(
            "--connections must be 1 to {MAX_CONNECTIONS}"
        )));
    }
    let in_range = |x: f64, max: f64| x > 0.0 && x <= max;
    if !in_range(a.duration, MAX_DURATION_S) || !in_range(a.rate, 1000.0) {
        return Err(BenchError::Config(
            "--duration must be above 0 and at most 600 s, --rate 0 to 1000 rounds/s".into(),
        ));
    }
    if a.frame_bytes == 0 || a.frame_bytes > 65_536 {
        return Err(BenchError::Config(
            "--frame-bytes must be 1 to 65536".into(),
        ));
    }
    let srcs = crate::target::parse_source_ips(&a.source_ips)?;
    let listener = TcpListener::bind("127.0.0.1:0").map_err(|e| BenchError::io("binding", e))?;
    let addr = listener
        .local_addr()
        .map_err(|e| BenchError::io("binding", e))?;
    let exe = std::env::current_exe().map_err(|e| BenchError::io("finding myself", e))?;
    let mut child = Command::new(exe)
        .arg("--floor-reader")
        .arg(format!("{addr}/{}/{}", a.connections, a.source_ips))
        .stdout(Stdio::piped())
        .spawn()
        .map_err(|e| BenchError::io("starting the reader", e))?;
    eprintln!(
        "floor: {} connections from {} source addresses",
        a.connections,
        srcs.len()
    );
    let socks = accept(&listener, a.connections, &mut child)?;
    // The reader says when every connection is open and being read.
    wait_ready(&mut child, "reader")?;
    let frame = vec![b'x'; a.frame_bytes];
    let rounds = (a.rate * a.duration).round().max(1.0) as u64;
    let gap = Duration::from_secs_f64(1.0 / a.rate);
    eprintln!("floor: {rounds} rounds of {} writes", socks.len());
    let probe = Probe {
        pid: Some(std::process::id()),
    };
    let before = probe.sample();
    let start = Instant::now();
    let mut writes = 0u64;
    for round in 0..rounds {
        for s in &socks {
            // `sendmsg`, as the server's fan-out writes (cheaper in the kernel than `write`).
            match socket2::SockRef::from(s).send_vectored(&[std::io::IoSlice::new(&frame)]) {
                Ok(n) if n == frame.len() => writes += 1,
                // A full socket (the reader fell behind): counted as a missing delivery.
                _ => {}
            }
        }
        let next = start + gap * (round as u32 + 1);
        std::thread::sleep(next.saturating_duration_since(Instant::now()));
    }
    let elapsed = start.elapsed().as_secs_f64();
    let usage = probe.usage_since(&before);
    drop(socks);
    let _ = child.wait();

    let mut r = Report {
        scenario: "floor".into(),
        protocol: "kernel".into(),
        label: Some("kernel-floor".into()),
        target: format!("{addr}"),
        params: serde_json::json!({"connections": a.connections, "rate": a.rate,
            "duration_s": a.duration, "frame_bytes": a.frame_bytes, "source_ips": srcs.len()}),
        connections: a.connections as u64,
        deliveries: writes,
        expected_deliveries: rounds * a.connections as u64,
        ..Default::default()
    };
    r.elapsed_s = elapsed;
    r.deliveries_per_s = writes as f64 / elapsed.max(1e-9);
    r.server = usage.map(|u| u.per_op(writes));
    let hard = if writes == 0 {
        vec!["nothing was written".to_owned()]
    } else {
        Vec::new()
    };
    super::finish(&a.output, r, hard)
}

/// Accepts `n` connections from `child`, each with `TCP_NODELAY` and non-blocking (as a server's
/// are). Fails if the child ends first (it could not open them all: out of ports or files) or
/// if they take longer than [`ACCEPT_WITHIN`].
pub(crate) fn accept(
    listener: &TcpListener,
    n: usize,
    child: &mut std::process::Child,
) -> Result<Vec<std::net::TcpStream>> {
    listener
        .set_nonblocking(true)
        .map_err(|e| BenchError::io("non-blocking", e))?;
    let deadline = Instant::now() + ACCEPT_WITHIN;
    let mut socks = Vec::with_capacity(n);
    while socks.len() < n {
        match listener.accept() {
            Ok((s, _)) => {
                s.set_nodelay(true)
                    .map_err(|e| BenchError::io("TCP_NODELAY", e))?;
                s.set_nonblocking(true)
                    .map_err(|e| BenchError::io("non-blocking", e))?;
                socks.push(s);
            }
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                let ended = child.try_wait().ok().flatten();
                if ended.is_some() || Instant::now() > deadline {
                    let _ = child.kill();
                    let _ = child.wait();
                    return Err(BenchError::Run(format!(
                        "{} of {n} connections opened before the client process {}",
                        socks.len(),
                        if ended.is_some() {
                            "ended"
                        } else {
                            "timed out"
                        }
                    )));
                }
                std::thread::sleep(Duration::from_millis(1));
            }
            Err(e) => return Err(BenchError::io("accepting", e)),
        }
    }
    Ok(socks)
}

/// Waits for the child's `ready` line (every connection open); kills it if it says otherwise.
pub(crate) fn wait_ready(child: &mut std::process::Child, what: &str) -> Result<()> {
    let mut ready = String::new();
    let mut out = BufReader::new(child.stdout.take().expect("piped"));
    out.read_line(&mut ready)
        .map_err(|e| BenchError::io(format!("waiting for the {what}"), e))?;
    if ready.trim() != "ready" {
        let _ = child.kill();
        return Err(BenchError::Run(format!("the {what} failed: {ready:?}")));
    }
    Ok(())
}

/// The reader child: `ADDR/N/IPS`. Opens N connections to ADDR from IPS in turn, says
/// `ready`, then reads and discards until every connection is closed.
pub fn reader(spec: &str) -> Result<()> {
    let mut parts = spec.splitn(3, '/');
    let (Some(addr), Some(n), Some(ips)) = (parts.next(), parts.next(), parts.next()) else {
        return Err(BenchError::Config(format!("bad reader spec {spec:?}")));
    };
    let addr: SocketAddr = addr
        .parse()
        .map_err(|_| BenchError::Config(format!("bad address {addr:?}")))?;
    let n: usize = n
        .parse()
        .map_err(|_| BenchError::Config(format!("bad count {n:?}")))?;
    let srcs: Vec<Ipv4Addr> = crate::target::parse_source_ips(ips)?;
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| BenchError::io("runtime", e))?;
    rt.block_on(async move {
        let mut tasks = tokio::task::JoinSet::new();
        for i in 0..n {
            let socket =
                tokio::net::TcpSocket::new_v4().map_err(|e| BenchError::io("socket", e))?;
            socket
                .bind(SocketAddr::new(srcs[i % srcs.len()].into(), 0))
                .map_err(|e| BenchError::io("binding a source address", e))?;
            let mut s = socket
                .connect(addr)
                .await
                .map_err(|e| BenchError::io("connecting", e))?;
            tasks.spawn(async move {
                use tokio::io::AsyncReadExt;
                let mut buf = [0u8; 4096];
                while let Ok(n) = s.read(&mut buf).await {
                    if n == 0 {
                        break;
                    }
                }
            });
        }
        println!("ready");
        let _ = std::io::stdout().flush();
        while tasks.join_next().await.is_some() {}
        Ok::<_, BenchError>(())
    })
}
