//! The `msg-floor` scenario's sender child process: N connections to the floor's loop, a
//! message a second from random connections at the given rate, and everything it is sent read
//! and discarded (see [`super::msg_floor`]).

use super::msg_floor::{ANSWER_BYTES, GRACE};
use crate::error::{BenchError, Result};
use mio::net::TcpStream;
use mio::{Events, Interest, Poll, Token};
use std::io::{ErrorKind, Read, Write};
use std::net::{Ipv4Addr, SocketAddr};
use std::time::{Duration, Instant};

/// The sender child: `ADDR/N/RATE/DURATION/FRAME/RECIPIENTS/IPS`. Opens N connections to ADDR from
/// IPS in turn, says `ready`, then writes RATE frames a second for DURATION seconds, each from
/// a random connection (naming a random other connection as its recipient when RECIPIENTS is 1),
/// reads and discards everything it is sent, and closes all once the answers are in.
pub fn run(spec: &str) -> Result<()> {
    let parts: Vec<&str> = spec.splitn(7, '/').collect();
    let [addr, n, rate, duration, frame, recipients, ips] = parts[..] else {
        return Err(BenchError::Config(format!("bad sender spec {spec:?}")));
    };
    let bad = |what: &str| BenchError::Config(format!("bad {what} in {spec:?}"));
    let addr: SocketAddr = addr.parse().map_err(|_| bad("address"))?;
    let n: usize = n.parse().map_err(|_| bad("count"))?;
    let rate: f64 = rate.parse().map_err(|_| bad("rate"))?;
    let duration: f64 = duration.parse().map_err(|_| bad("duration"))?;
    let frame: usize = frame.parse().map_err(|_| bad("frame size"))?;
    let recipients: u64 = recipients.parse().map_err(|_| bad("recipients"))?;
    let srcs: Vec<Ipv4Addr> = crate::target::parse_source_ips(ips)?;
    crate::target::check_addr(addr)?;
    // The parent checked these; a hand-written spec gets an error, not a panic.
    if n < 2 || frame < 4 || !(rate > 0.0 && duration > 0.0) {
        return Err(bad(
            "connection count (2 or more), frame size (4 or more) or rate",
        ));
    }
    let mut socks = Vec::with_capacity(n);
    let mut poll = Poll::new().map_err(|e| BenchError::io("epoll", e))?;
    for i in 0..n {
        let s = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None)
            .map_err(|e| BenchError::io("socket", e))?;
        s.bind(&SocketAddr::new(srcs[i % srcs.len()].into(), 0).into())
            .map_err(|e| BenchError::io("binding a source address", e))?;
        s.connect(&addr.into())
            .map_err(|e| BenchError::io("connecting", e))?;
        s.set_tcp_nodelay(true)
            .map_err(|e| BenchError::io("TCP_NODELAY", e))?;
        s.set_nonblocking(true)
            .map_err(|e| BenchError::io("non-blocking", e))?;
        let mut s = TcpStream::from_std(s.into());
        poll.registry()
            .register(&mut s, Token(i), Interest::READABLE)
            .map_err(|e| BenchError::io("registering", e))?;
        socks.push(s);
    }
    println!("ready");
    let _ = std::io::stdout().flush();
    let total = (rate * duration).round() as u64;
    let expect_bytes = total * (recipients * frame as u64 + ANSWER_BYTES as u64);
    let mut got = 0u64;
    let mut rng = crate::rng::Rng::seeded(u64::from(std::process::id()));
    let mut msg = vec![b'm'; frame];
    let mut events = Events::with_capacity(1024);
    let mut buf = vec![0u8; 64 * 1024];
    let start = Instant::now();
    let end = start + Duration::from_secs_f64(duration) + GRACE;
    let mut sent = 0u64;
    while Instant::now() < end && (sent < total || got < expect_bytes) {
        let due = ((start.elapsed().as_secs_f64() * rate) as u64).min(total);
        while sent < due {
            let from = rng.below(n as u64) as usize;
            let mut to = rng.below(n as u64 - 1) as usize;
            if to >= from {
                to += 1;
            }
            msg[..4].copy_from_slice(&(to as u32).to_le_bytes());
            // A full socket would need a buffer per connection; at these rates it never is, and
            // a partial frame would garble the loop's stream, so a short write ends the run.
            match socks[from].write(&msg) {
                Ok(k) if k == msg.len() => sent += 1,
                Ok(k) => return Err(short_write(k, msg.len())),
                Err(e) if e.kind() == ErrorKind::WouldBlock => {
                    return Err(short_write(0, msg.len()));
                }
                Err(e) => return Err(BenchError::io("writing a message", e)),
            }
        }
        let wait = if sent < total {
            Duration::from_micros(200)
        } else {
            Duration::from_millis(10)
        };
        if poll.poll(&mut events, Some(wait)).is_err() {
            continue;
        }
        for ev in &events {
            let s = &mut socks[ev.token().0];
            loop {
                match s.read(&mut buf) {
                    Ok(0) => break,
                    Ok(k) => got += k as u64,
                    Err(e) if e.kind() == ErrorKind::Interrupted => continue,
                    Err(_) => break,
                }
            }
        }
    }
    Ok(())
}

/// The error for a message frame the socket took only `k` bytes of.
fn short_write(k: usize, len: usize) -> BenchError {
    BenchError::Config(format!(
        "a connection took {k} of a {len}-byte message: the floor's loop fell behind the rate \
         (its socket buffers are full); lower --rate"
    ))
}
