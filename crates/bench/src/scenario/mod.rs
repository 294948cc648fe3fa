//! The scenarios and what they share: checking bounds, creating users' tokens and rooms, and
//! handing connections to workers (here); publishing at a fixed rate over HTTP (`publisher`);
//! finishing the report (`outcome`).

pub mod cluster;
pub mod dispatch;
pub mod dm;
pub mod floor;
pub mod idle;
pub mod msg_floor;
pub mod msg_sender;
mod outcome;
pub mod pipeline;
mod publisher;
pub mod rooms;
pub mod storm;

pub use outcome::{add_connected, basic_failures, finish, merge_results, set_elapsed};
pub use publisher::{add_published, publish};

use crate::cli::{Common, MAX_CONNECTIONS, MAX_DURATION_S, MAX_PAYLOAD, MAX_RATE, MAX_WORKERS};
use crate::coord::Workers;
use crate::error::{BenchError, Result};
use crate::http::HttpConn;
use crate::latency;
use crate::procfs::Probe;
use crate::proto::Protocol;
use crate::report::Report;
use crate::worker::{ConnSpec, Event, Plan};
use std::net::{Ipv4Addr, SocketAddr};
use std::time::Duration;

/// What every scenario run knows.
pub struct Ctx {
    /// The common options.
    pub common: Common,
    /// The server's address.
    pub addr: SocketAddr,
    /// Client source addresses.
    pub srcs: Vec<Ipv4Addr>,
    /// A short tag making this run's user and room names unique.
    pub tag: String,
    /// The server process, if named.
    pub probe: Probe,
}

impl Ctx {
    /// Checks the common options.
    pub fn new(common: &Common) -> Result<Ctx> {
        let addr = crate::target::parse_target(&common.target)?;
        let srcs = crate::target::parse_source_ips(&common.source_ips)?;
        if common.workers == 0 || common.workers > MAX_WORKERS {
            return Err(BenchError::Config(format!(
                "--workers must be 1 to {MAX_WORKERS}"
            )));
        }
        if common.client_threads == 0 || common.client_threads > 64 {
            return Err(BenchError::Config(
                "--client-threads must be 1 to 64".into(),
            ));
        }
        if common.connect_concurrency == 0 || common.setup_concurrency == 0 {
            return Err(BenchError::Config("concurrency must be at least 1".into()));
        }
        let tag = format!(
            "{:x}",
            (latency::now_us() ^ (std::process::id() as u64) << 20) & 0xff_ffff
        );
        Ok(Ctx {
            common: common.clone(),
            addr,
            srcs,
            tag,
            probe: Probe {
                pid: common.server_pid,
            },
        })
    }

    /// The protocol.
    pub fn proto(&self) -> Protocol {
        self.common.protocol
    }

    /// User ids of this run are this prefix followed by an index.
    pub fn user_prefix(&self) -> String {
        format!("b{}-", self.tag)
    }

    /// The source address of the `i`-th connection.
    pub fn src(&self, i: usize) -> Option<Ipv4Addr> {
        Some(self.srcs[i % self.srcs.len()])
    }

    /// Gets tokens for users `first..first + n` from the server at `addr`.
    pub async fn tokens(&self, addr: SocketAddr, first: u64, n: u64) -> Result<Vec<String>> {
        let k = self.common.setup_concurrency.min(n.max(1) as usize);
        let mut set = tokio::task::JoinSet::new();
        for t in 0..k {
            let (proto, key, prefix) = (
                self.proto(),
                self.common.api_key.clone(),
                self.user_prefix(),
            );
            let src = self.src(t);
            set.spawn(async move {
                let mut http = HttpConn::new(addr, src);
                let mut out = Vec::new();
                let mut i = t as u64;
                while i < n {
                    let user = format!("{prefix}{}", first + i);
                    out.push((i, proto.issue_token(&mut http, &key, &user).await?));
                    i += k as u64;
                }
                Ok::<_, BenchError>(out)
            });
        }
        let mut tokens = vec![String::new(); n as usize];
        while let Some(r) = set.join_next().await {
            let part = r.map_err(|e| BenchError::Run(format!("token task: {e}")))??;
            for (i, t) in part {
                tokens[i as usize] = t;
            }
        }
        Ok(tokens)
    }

    /// Creates `n` public rooms on the server at `addr`; returns their conversation names.
    pub async fn rooms(&self, addr: SocketAddr, n: usize) -> Result<Vec<String>> {
        let owner = match self.proto() {
            Protocol::Switchboard | Protocol::SwitchboardSocketio => {
                let mut http = HttpConn::new(addr, self.src(0));
                let user = format!("{}owner", self.user_prefix());
                self.proto()
                    .issue_token(&mut http, &self.common.api_key, &user)
                    .await?
            }
            Protocol::Socketio => String::new(),
        };
        let k = self.common.setup_concurrency.min(n.max(1));
        let mut set = tokio::task::JoinSet::new();
        for t in 0..k {
            let (proto, owner, tag, src) =
                (self.proto(), owner.clone(), self.tag.clone(), self.src(t));
            set.spawn(async move {
                let mut http = HttpConn::new(addr, src);
                let mut out = Vec::new();
                let mut i = t;
                while i < n {
                    out.push((i, proto.create_room(&mut http, &owner, &tag, i).await?));
                    i += k;
                }
                Ok::<_, BenchError>(out)
            });
        }
        let mut rooms = vec![String::new(); n];
        while let Some(r) = set.join_next().await {
            let part = r.map_err(|e| BenchError::Run(format!("room task: {e}")))??;
            for (i, c) in part {
                rooms[i] = c;
            }
        }
        Ok(rooms)
    }

    /// Splits connections over `--workers` plans (connection `i` to worker `i % workers`).
    pub fn plans(&self, conns: Vec<ConnSpec>) -> Vec<Plan> {
        let w = self.common.workers;
        let mut plans: Vec<Plan> = (0..w)
            .map(|i| Plan {
                protocol: self.proto(),
                worker: i,
                threads: self.common.client_threads,
                connect_concurrency: self.common.connect_concurrency,
                conns: Vec::new(),
                dm: None,
                http_load: None,
            })
            .collect();
        for (i, c) in conns.into_iter().enumerate() {
            plans[i % w].conns.push(c);
        }
        plans
    }

    /// A report with the run's identity filled in.
    pub fn report(&self, scenario: &str, params: serde_json::Value) -> Report {
        Report {
            scenario: scenario.into(),
            protocol: self.proto().name().into(),
            label: self.common.label.clone(),
            target: self.common.target.clone(),
            params,
            ..Default::default()
        }
    }
}

/// Refuses counts and durations beyond the bench's bounds.
pub fn check_bounds(connections: usize, duration_s: f64, rate: f64, payload: usize) -> Result<()> {
    if connections > MAX_CONNECTIONS {
        return Err(BenchError::Config(format!(
            "at most {MAX_CONNECTIONS} connections"
        )));
    }
    if !(duration_s > 0.0 && duration_s <= MAX_DURATION_S) {
        return Err(BenchError::Config(format!(
            "--duration must be above 0 and at most {MAX_DURATION_S} s"
        )));
    }
    if !(rate.is_finite() && (0.0..=MAX_RATE).contains(&rate)) {
        return Err(BenchError::Config(format!(
            "--rate must be 0 to {MAX_RATE}"
        )));
    }
    if payload > MAX_PAYLOAD {
        return Err(BenchError::Config(format!(
            "--payload is at most {MAX_PAYLOAD} bytes"
        )));
    }
    Ok(())
}

/// How long to wait for a worker phase that opens `n` connections.
pub fn connect_timeout(n: usize) -> Duration {
    Duration::from_secs(60 + (n as u64) / 200)
}

/// Per worker after `connect`: connections made, failed, seconds taken, the first error.
pub type Connected = Vec<(usize, usize, f64, Option<String>)>;

/// Tells the workers to open their connections and waits for all `n` to be made or to fail.
pub async fn connect_all(w: &mut Workers, n: usize) -> Result<Connected> {
    w.command("connect").await?;
    w.collect("connections", connect_timeout(n), |ev| match ev {
        Event::Connected {
            ok,
            failed,
            elapsed_s,
            first_error,
        } => Some((ok, failed, elapsed_s, first_error)),
        _ => None,
    })
    .await
}

/// One connection per token (user `i` for token `i`), subscribed to nothing.
pub fn plain_conns(ctx: &Ctx, tokens: Vec<String>) -> Vec<ConnSpec> {
    conns_at(ctx, ctx.addr, tokens, 0)
}

/// Connections to `addr` with no subscriptions, one per token, for users numbered from
/// `first` (source addresses follow the user number).
pub fn conns_at(
    ctx: &Ctx,
    addr: std::net::SocketAddr,
    tokens: Vec<String>,
    first: usize,
) -> Vec<ConnSpec> {
    tokens
        .into_iter()
        .enumerate()
        .map(|(i, token)| ConnSpec {
            addr,
            src: ctx.src(first + i),
            token,
            user: (first + i) as u64,
            convs: Vec::new(),
        })
        .collect()
}
