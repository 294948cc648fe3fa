//! Fixtures shared by test suites. [`RedisServer`] starts the real `redis-server` binary on a
//! free 127.0.0.1 port with its own temporary directory, and stops it when dropped. Cluster
//! tests use it instead of any mock: they need Redis's real scripting, streams and pub/sub.
//! [`Nginx`] does the same for a real nginx. [`TestCa`] makes a CA and certificates at test time.
//!
//! A child cannot be handed a bound socket, so its port is picked first and may be taken by
//! another process before the child binds it. Each fixture therefore checks that the server
//! answering is its own child (Redis: the `process_id` in `INFO server`; nginx: its pid file,
//! written only once its sockets are bound), and when its child failed to bind it starts over on
//! another port.

mod nginx;
mod redis;
mod redis_cluster;
mod tls;

pub use nginx::Nginx;
pub use redis::RedisServer;
pub use redis_cluster::RedisCluster;
pub use tls::{CertFiles, TestCa};

use std::net::{SocketAddr, TcpListener};
use std::time::Duration;

/// How many ports a fixture tries before giving up.
const START_ATTEMPTS: usize = 5;

/// How long a started server may take to answer.
const START_TIMEOUT: Duration = Duration::from_secs(10);

/// A TCP port on 127.0.0.1 that was free a moment ago (bound, then released). Racy: another
/// process may take it before it is used, so a server started on it must check that it bound
/// it, as the fixtures here do. For a port where nothing listens, use [`closed_port`]; for a
/// server of the test's own, bind port 0 and pass the listener or its address on.
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free port")
}

/// A 127.0.0.1 port held, but not listened on, for as long as this value lives: connecting to
/// it is refused, and no other process can take it meanwhile.
pub struct ClosedPort {
    socket: socket2::Socket,
}

/// Reserves a port on which connections are refused (see [`ClosedPort`]).
pub fn closed_port() -> ClosedPort {
    let socket = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None)
        .expect("a TCP socket");
    let any: SocketAddr = "127.0.0.1:0".parse().expect("address");
    socket.bind(&any.into()).expect("bind a port");
    ClosedPort { socket }
}

impl ClosedPort {
    /// The port.
    pub fn port(&self) -> u16 {
        self.socket
            .local_addr()
            .ok()
            .and_then(|a| a.as_socket())
            .map(|a| a.port())
            .expect("a bound port")
    }
}

/// The last lines of a server's log file, for a panic message.
fn log_tail(path: &std::path::Path) -> String {
    let log = std::fs::read_to_string(path).unwrap_or_default();
    let lines: Vec<&str> = log.lines().collect();
    lines[lines.len().saturating_sub(10)..].join("\n")
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::TcpStream;

    #[test]
    fn a_closed_port_refuses_connections_while_held() {
        let closed = closed_port();
        let err = TcpStream::connect(("127.0.0.1", closed.port())).expect_err("refused");
        assert_eq!(err.kind(), std::io::ErrorKind::ConnectionRefused);
        assert!(
            TcpListener::bind(("127.0.0.1", closed.port())).is_err(),
            "nobody else can take it"
        );
    }
}
