//! `msg-floor`: the least any server pays for one direct message (or one small-room message)
//! on this machine, measured the way the `dm` and `rooms` scenarios measure a server. No real
//! server: this process accepts N loopback connections from a sender child process and runs
//! the thinnest event loop there is (one thread, `epoll` through mio, no parsing beyond a
//! fixed-size frame, no allocation per message). For every frame a sender writes, it reads the
//! frame, writes it to `--recipients` connections (a random user for a DM, the rest of the
//! sender's group for a room) and writes a short answer back to the sender: the socket work of
//! one message, what Switchboard and Socket.IO both do at the least.
//!
//! With `--durable-dir`, every loop turn also appends its messages to a file there and
//! `fdatasync`s it before writing anything out: the one sync per group commit that a server
//! answering "published" only once the message is on disk cannot avoid. Whatever arrived in one
//! turn shares one sync; with `--commit-window-us`, messages also wait up to that long for
//! later ones to share it (as Switchboard's `--commit-delay-us` does when the writer is busy).
//!
//! Its CPU per delivery is a floor under a server's in the same run: 3x Socket.IO's deliveries
//! per CPU-second cannot be met by a server whose socket work alone costs more than a third of
//! what Socket.IO spends in all.

use crate::cli::{MAX_CONNECTIONS, MAX_DURATION_S, MsgFloorArgs};
use crate::error::{BenchError, Result};
use crate::procfs::Probe;
use crate::report::Report;
use mio::net::TcpStream;
use mio::{Events, Interest, Poll, Token};
use std::io::{ErrorKind, Read, Write};
use std::net::{Ipv4Addr, SocketAddr};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// Bytes of the answer to each message (Switchboard's `published` frame is about this size).
pub(crate) const ANSWER_BYTES: usize = 96;

/// How long the loop waits, after the last message was due, for the sender child to finish.
pub(crate) const GRACE: Duration = Duration::from_secs(10);

/// Runs the scenario; true when it passed.
pub fn run(a: MsgFloorArgs) -> Result<bool> {
    check(&a)?;
    let srcs = crate::target::parse_source_ips(&a.source_ips)?;
    let addr: SocketAddr = (Ipv4Addr::LOCALHOST, 0).into();
    let listener = std::net::TcpListener::bind(addr).map_err(|e| BenchError::io("binding", e))?;
    let addr = listener
        .local_addr()
        .map_err(|e| BenchError::io("binding", e))?;
    let exe = std::env::current_exe().map_err(|e| BenchError::io("finding myself", e))?;
    let mut child = Command::new(exe)
        .arg("--msg-floor-sender")
        .arg(format!(
            "{addr}/{}/{}/{}/{}/{}/{}",
            a.connections, a.rate, a.duration, a.frame_bytes, a.recipients, a.source_ips
        ))
        .stdout(Stdio::piped())
        .spawn()
        .map_err(|e| BenchError::io("starting the sender", e))?;
    eprintln!(
        "msg-floor: {} connections from {} source addresses, {} recipient(s) per message{}",
        a.connections,
        srcs.len(),
        a.recipients,
        if a.durable_dir.is_some() {
            ", each turn synced to disk"
        } else {
            ""
        }
    );
    let mut socks: Vec<TcpStream> = super::floor::accept(&listener, a.connections, &mut child)?
        .into_iter()
        .map(TcpStream::from_std)
        .collect();
    let mut log = match &a.durable_dir {
        Some(dir) => {
            let path = dir.join(format!("msg-floor-{}.log", std::process::id()));
            let f = std::fs::File::create(&path)
                .map_err(|e| BenchError::io(format!("creating {}", path.display()), e))?;
            Some((f, path))
        }
        None => None,
    };
    super::floor::wait_ready(&mut child, "sender")?;
    let expected = (a.rate * a.duration).round() as u64;
    let mut server = Loop::new(&mut socks, a.frame_bytes, a.recipients)?;
    // Counted from here (the connections open and registered) to the last answer written, as
    // the server scenarios count from the first message to the drain.
    let probe = Probe {
        pid: Some(std::process::id()),
    };
    let before = probe.sample();
    let start = Instant::now();
    let deadline = start + Duration::from_secs_f64(a.duration) + GRACE;
    let window = Duration::from_micros(a.commit_window_us);
    let counts = server.run(log.as_mut().map(|(f, _)| f), window, expected, deadline)?;
    let elapsed = start.elapsed().as_secs_f64();
    let usage = probe.usage_since(&before);
    drop(socks);
    let _ = child.wait();
    if let Some((_, path)) = &log {
        let _ = std::fs::remove_file(path);
    }

    let mut r = Report {
        scenario: "msg_floor".into(),
        protocol: "kernel".into(),
        label: Some(
            if a.durable_dir.is_some() {
                "kernel-floor-durable"
            } else {
                "kernel-floor"
            }
            .into(),
        ),
        target: format!("{addr}"),
        params: serde_json::json!({"connections": a.connections, "rate": a.rate,
            "duration_s": a.duration, "frame_bytes": a.frame_bytes, "recipients": a.recipients,
            "durable": a.durable_dir.is_some(), "commit_window_us": a.commit_window_us,
            "syncs": counts.syncs,
            "source_ips": srcs.len()}),
        connections: a.connections as u64,
        published: counts.messages,
        deliveries: counts.deliveries,
        acks: counts.answers,
        expected_deliveries: expected * a.recipients as u64,
        ..Default::default()
    };
    r.elapsed_s = elapsed;
    r.deliveries_per_s = counts.deliveries as f64 / elapsed.max(1e-9);
    r.server = usage.map(|u| u.per_op(counts.deliveries));
    let mut hard = Vec::new();
    if counts.messages < expected {
        hard.push(format!(
            "{} of {expected} messages arrived",
            counts.messages
        ));
    }
    if counts.dropped > 0 {
        hard.push(format!("{} writes found a full socket", counts.dropped));
    }
    super::finish(&a.output, r, hard)
}

fn check(a: &MsgFloorArgs) -> Result<()> {
    let in_range = |x: f64, max: f64| x > 0.0 && x <= max;
    if a.connections < 2 || a.connections > MAX_CONNECTIONS {
        return Err(BenchError::Config(format!(
            "--connections must be 2 to {MAX_CONNECTIONS}"
        )));
    }
    if !in_range(a.duration, MAX_DURATION_S) || !in_range(a.rate, 100_000.0) {
        return Err(BenchError::Config(
            "--duration must be above 0 and at most 600 s, --rate above 0 and at most 100,000/s"
                .into(),
        ));
    }
    if a.frame_bytes < 8 || a.frame_bytes > 16_384 {
        return Err(BenchError::Config(
            "--frame-bytes must be 8 to 16384".into(),
        ));
    }
    if a.recipients == 0 || a.recipients >= a.connections || a.recipients > 1_000 {
        return Err(BenchError::Config(
            "--recipients must be 1 to 1000 and below --connections".into(),
        ));
    }
    if a.recipients > 1
        && (!a.connections.is_multiple_of(a.recipients) || a.connections < 2 * a.recipients)
    {
        return Err(BenchError::Config(
            "--connections must be a multiple of the room size (--recipients), two rooms at least"
                .into(),
        ));
    }
    if (a.rate * a.duration).round() < 1.0 {
        return Err(BenchError::Config(
            "--rate times --duration must be at least one message".into(),
        ));
    }
    if a.commit_window_us > 1_000_000 {
        return Err(BenchError::Config(
            "--commit-window-us must be at most 1,000,000".into(),
        ));
    }
    if a.commit_window_us > 0 && a.durable_dir.is_none() {
        return Err(BenchError::Config(
            "--commit-window-us needs --durable-dir".into(),
        ));
    }
    if let Some(dir) = &a.durable_dir
        && !dir.is_dir()
    {
        return Err(BenchError::Config(format!(
            "--durable-dir {} is not a directory",
            dir.display()
        )));
    }
    Ok(())
}

/// What the loop did.
#[derive(Default)]
struct Counts {
    messages: u64,
    deliveries: u64,
    answers: u64,
    dropped: u64,
    syncs: u64,
}

/// The server side's loop over the accepted connections.
struct Loop<'a> {
    socks: &'a mut [TcpStream],
    poll: Poll,
    frame: usize,
    recipients: usize,
    /// Bytes of an unfinished frame per connection.
    partial: Vec<Vec<u8>>,
    /// This turn's messages: (sender, the frame).
    turn: Vec<(usize, Vec<u8>)>,
    /// Emptied frame buffers to reuse.
    spare: Vec<Vec<u8>>,
    answer: [u8; ANSWER_BYTES],
    open: usize,
}

impl<'a> Loop<'a> {
    fn new(socks: &'a mut [TcpStream], frame: usize, recipients: usize) -> Result<Loop<'a>> {
        let poll = Poll::new().map_err(|e| BenchError::io("epoll", e))?;
        for (i, s) in socks.iter_mut().enumerate() {
            poll.registry()
                .register(s, Token(i), Interest::READABLE)
                .map_err(|e| BenchError::io("registering", e))?;
        }
        let open = socks.len();
        Ok(Loop {
            partial: vec![Vec::new(); open],
            socks,
            poll,
            frame,
            recipients,
            turn: Vec::new(),
            spare: Vec::new(),
            answer: [b'a'; ANSWER_BYTES],
            open,
        })
    }

    fn run(
        &mut self,
        mut log: Option<&mut std::fs::File>,
        window: Duration,
        expected: u64,
        deadline: Instant,
    ) -> Result<Counts> {
        let mut counts = Counts::default();
        let mut events = Events::with_capacity(1024);
        let mut buf = vec![0u8; 64 * 1024];
        // When the oldest message waiting for the next sync arrived.
        let mut oldest: Option<Instant> = None;
        while self.open > 0 && counts.messages < expected && Instant::now() < deadline {
            let timeout = match oldest {
                Some(t) => window.saturating_sub(t.elapsed()),
                None => Duration::from_millis(100),
            };
            match self.poll.poll(&mut events, Some(timeout)) {
                Ok(()) => {}
                Err(e) if e.kind() == ErrorKind::Interrupted => continue,
                Err(e) => return Err(BenchError::io("epoll_wait", e)),
            }
            for ev in &events {
                self.read(ev.token().0, ev.is_read_closed(), &mut buf);
            }
            if self.turn.is_empty() {
                continue;
            }
            if let Some(f) = log.as_deref_mut() {
                let first = *oldest.get_or_insert_with(Instant::now);
                if first.elapsed() < window
                    && self.open > 0
                    && counts.messages + (self.turn.len() as u64) < expected
                {
                    continue;
                }
                oldest = None;
                for (_, m) in &self.turn {
                    f.write_all(m).map_err(|e| BenchError::io("appending", e))?;
                }
                f.sync_data().map_err(|e| BenchError::io("fdatasync", e))?;
                counts.syncs += 1;
            }
            let turn = std::mem::take(&mut self.turn);
            for (from, m) in &turn {
                counts.messages += 1;
                for to in self.recipients_of(*from, m) {
                    if send(&self.socks[to], m) {
                        counts.deliveries += 1;
                    } else {
                        counts.dropped += 1;
                    }
                }
                if send(&self.socks[*from], &self.answer) {
                    counts.answers += 1;
                } else {
                    counts.dropped += 1;
                }
            }
            self.spare.extend(turn.into_iter().map(|(_, mut m)| {
                m.clear();
                m
            }));
        }
        Ok(counts)
    }

    /// Reads what connection `i` has; complete frames join this turn. `closed`: the event also
    /// said the peer closed (then read on to the end).
    fn read(&mut self, i: usize, closed: bool, buf: &mut [u8]) {
        loop {
            match self.socks[i].read(buf) {
                Ok(0) => {
                    let _ = self.poll.registry().deregister(&mut self.socks[i]);
                    self.open -= 1;
                    return;
                }
                Ok(n) => {
                    let mut bytes = &buf[..n];
                    while !bytes.is_empty() {
                        let p = &mut self.partial[i];
                        let take = (self.frame - p.len()).min(bytes.len());
                        p.extend_from_slice(&bytes[..take]);
                        bytes = &bytes[take..];
                        if p.len() == self.frame {
                            // The whole frame joins the turn as it is; a spare buffer (cleared
                            // when it was taken back) collects the next one.
                            let next = self.spare.pop().unwrap_or_default();
                            self.turn.push((i, std::mem::replace(p, next)));
                        }
                    }
                    // A short read emptied the socket: with edge-triggered readiness, more data
                    // (or the peer's close) raises a new event, so the read that would only
                    // say `EAGAIN` is saved (libuv, level-triggered, does not make it either).
                    // A close already reported with this event raises none: read on to it.
                    if n < buf.len() && !closed {
                        return;
                    }
                }
                Err(e) if e.kind() == ErrorKind::WouldBlock => return,
                Err(e) if e.kind() == ErrorKind::Interrupted => continue,
                Err(_) => {
                    let _ = self.poll.registry().deregister(&mut self.socks[i]);
                    self.open -= 1;
                    return;
                }
            }
        }
    }

    fn recipients_of(&self, from: usize, m: &[u8]) -> impl Iterator<Item = usize> + use<> {
        recipients(self.socks.len(), self.recipients, from, m)
    }
}

/// Who gets a message from connection `from` of `n`: for a DM (`count` 1) the connection named
/// in the frame's first four bytes; for a room, the `count` members of the group after the
/// sender's (the connections in groups of `count`): a message published into a room the
/// publisher is not in, as the `rooms` scenario's HTTP publishes are.
fn recipients(
    n: usize,
    count: usize,
    from: usize,
    frame: &[u8],
) -> impl Iterator<Item = usize> + use<> {
    let (first, len) = if count == 1 {
        let to = u32::from_le_bytes([frame[0], frame[1], frame[2], frame[3]]) as usize % n;
        (to, 1)
    } else {
        let groups = (n / count).max(1);
        ((from / count + 1) % groups * count, count)
    };
    (first..first + len).filter(move |&c| c < n)
}

/// One `sendmsg` of `bytes` (as Switchboard writes); false if the socket took less.
fn send(s: &TcpStream, bytes: &[u8]) -> bool {
    matches!(socket2::SockRef::from(s).send_vectored(&[std::io::IoSlice::new(bytes)]),
        Ok(n) if n == bytes.len())
}

#[cfg(test)]
mod tests {
    use super::recipients;

    #[test]
    fn a_dm_goes_to_the_named_connection_and_a_room_message_to_a_group_without_its_sender() {
        let frame = 7u32.to_le_bytes();
        assert_eq!(recipients(10, 1, 3, &frame).collect::<Vec<_>>(), [7]);
        assert_eq!(
            recipients(20, 4, 7, &frame).collect::<Vec<_>>(),
            [8, 9, 10, 11]
        );
        // The last group's messages go to the first group.
        assert_eq!(
            recipients(20, 4, 17, &frame).collect::<Vec<_>>(),
            [0, 1, 2, 3]
        );
    }
}
