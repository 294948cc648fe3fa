//! The scenarios and what they share: checking bounds, creating users' tokens and rooms,
//! handing connections to workers, publishing at a fixed rate over HTTP, and finishing the
//! report.

pub mod cluster;
pub mod dispatch;
pub mod dm;
pub mod floor;
pub mod idle;
pub mod msg_floor;
pub mod msg_sender;
pub mod pipeline;
pub mod rooms;
pub mod storm;

use crate::cli::{
    Common, Format, MAX_CONNECTIONS, MAX_DURATION_S, MAX_PAYLOAD, MAX_RATE, MAX_WORKERS, Output,
};
use crate::coord::Workers;
use crate::error::{BenchError, Result};
use crate::http::HttpConn;
use crate::latency::{self, Encoded};
use crate::procfs::Probe;
use crate::proto::{self, Protocol};
use crate::report::{self, Report};
use crate::worker::{ConnSpec, Event, Plan, WorkerResult};
use std::net::{Ipv4Addr, SocketAddr};
use std::sync::Arc;
use std::time::{Duration, Instant};

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

/// Records the publisher's counts, first error and latency in `r`.
pub fn add_published(r: &mut Report, p: &Published) {
    r.published = p.ok;
    r.publish_errors = p.errors;
    if let Some(e) = &p.first_error {
        r.errors.push(format!("publish: {e}"));
    }
    let mut h = latency::histogram();
    latency::merge(&mut h, &p.latency);
    r.publish_latency_us = latency::percentiles(&h);
}

/// Sets the run's length and the delivery rate over it.
pub fn set_elapsed(r: &mut Report, elapsed_s: f64) {
    r.elapsed_s = elapsed_s;
    if r.elapsed_s > 0.0 {
        r.deliveries_per_s = r.deliveries as f64 / r.elapsed_s;
    }
}

/// The failures every scenario shares: no connection, and (if asked) no delivery.
pub fn basic_failures(r: &Report, deliveries_expected: bool) -> Vec<String> {
    let mut hard = Vec::new();
    if r.connections == 0 {
        hard.push("no connection opened".into());
    }
    if deliveries_expected && r.deliveries == 0 {
        hard.push("nothing was delivered".into());
    }
    hard
}

/// What the publisher did.
#[derive(Default)]
pub struct Published {
    /// Publishes answered 2xx.
    pub ok: u64,
    /// Publishes that failed.
    pub errors: u64,
    /// Successful publishes per conversation (same order as the list given).
    pub per_conv: Vec<u64>,
    /// HTTP publish latency, µs.
    pub latency: Encoded,
    /// The first failure.
    pub first_error: Option<String>,
    /// Seconds from the first to the last publish.
    pub elapsed_s: f64,
}

/// Publishes `rate` messages per second for `duration_s` seconds through the server's HTTP
/// publish endpoint, spread over `convs` in turn, from `publishers` keep-alive connections.
/// Each message is due at a fixed time (open loop); a late one is sent as soon as its
/// connection is free. The body's `bench_ts` is the moment it is sent.
pub async fn publish(
    ctx: &Ctx,
    addr: SocketAddr,
    convs: Arc<Vec<String>>,
    rate: f64,
    duration_s: f64,
    payload: usize,
    publishers: usize,
) -> Published {
    let total = (rate * duration_s).round() as u64;
    let k = (publishers.max(1) as u64).min(total.max(1));
    let start = tokio::time::Instant::now();
    let pad = Arc::new("x".repeat(payload));
    let mut set = tokio::task::JoinSet::new();
    for t in 0..k {
        let (convs, pad, proto, key) = (
            convs.clone(),
            pad.clone(),
            ctx.proto(),
            ctx.common.api_key.clone(),
        );
        let src = ctx.src(t as usize);
        set.spawn(async move {
            let mut http = HttpConn::new(addr, src);
            let mut h = latency::histogram();
            let mut per_conv = vec![0u64; convs.len()];
            let (mut ok, mut err, mut first) = (0u64, 0u64, None::<String>);
            let mut i = t;
            while i < total {
                tokio::time::sleep_until(start + Duration::from_secs_f64(i as f64 / rate)).await;
                let c = (i % convs.len() as u64) as usize;
                let body = proto::body(latency::now_us(), -1, &pad);
                let t0 = Instant::now();
                match proto.publish_http(&mut http, &key, &convs[c], &body).await {
                    Ok(()) => {
                        ok += 1;
                        per_conv[c] += 1;
                        latency::record(&mut h, t0.elapsed().as_micros() as u64);
                    }
                    Err(e) => {
                        err += 1;
                        first.get_or_insert_with(|| e.to_string());
                    }
                }
                i += k;
            }
            (ok, err, per_conv, latency::encode(&h), first)
        });
    }
    let mut out = Published {
        per_conv: vec![0; convs.len()],
        ..Default::default()
    };
    let mut h = latency::histogram();
    while let Some(r) = set.join_next().await {
        if let Ok((ok, err, per_conv, lat, first)) = r {
            out.ok += ok;
            out.errors += err;
            for (a, b) in out.per_conv.iter_mut().zip(per_conv) {
                *a += b;
            }
            latency::merge(&mut h, &lat);
            if out.first_error.is_none() {
                out.first_error = first;
            }
        }
    }
    out.latency = latency::encode(&h);
    out.elapsed_s = start.elapsed().as_secs_f64();
    out
}

/// Adds the workers' final figures to a report.
pub fn merge_results(report: &mut Report, results: &[WorkerResult]) {
    let mut lat = latency::histogram();
    let mut conn = latency::histogram();
    let mut req = latency::histogram();
    for r in results {
        report.deliveries += r.deliveries;
        report.echoes += r.echoes;
        report.acks += r.acks;
        report.error_frames += r.error_frames;
        report.out_of_order += r.out_of_order;
        report.server_disconnects += r.closed;
        latency::merge(&mut lat, &r.latency);
        latency::merge(&mut conn, &r.connect_latency);
        latency::merge(&mut req, &r.request_latency);
        if let Some(e) = &r.first_error_frame {
            report.errors.push(format!("error frame: {e}"));
        }
        if let Some(e) = &r.first_close {
            report.errors.push(format!("server ended a session: {e}"));
        }
    }
    report.latency_us = latency::percentiles(&lat);
    report.connect_latency_us = latency::percentiles(&conn);
    report.request_latency_us = latency::percentiles(&req);
}

/// Adds the `connect` phase's figures to a report.
pub fn add_connected(report: &mut Report, connected: &[(usize, usize, f64, Option<String>)]) {
    for (ok, failed, _, first) in connected {
        report.connections += *ok as u64;
        report.connect_failures += *failed as u64;
        if let Some(e) = first {
            report.errors.push(format!("connect: {e}"));
        }
    }
}

/// The standard checks: with `--strict` any of them fails the run.
pub fn strict_checks(r: &mut Report) {
    if r.connect_failures > 0 {
        r.failures
            .push(format!("{} connections failed", r.connect_failures));
    }
    if r.deliveries < r.expected_deliveries {
        r.failures.push(format!(
            "{} of {} deliveries missing",
            r.expected_deliveries - r.deliveries,
            r.expected_deliveries
        ));
    }
    if r.publish_errors > 0 {
        r.failures
            .push(format!("{} publishes failed", r.publish_errors));
    }
    if r.out_of_order > 0 {
        r.failures.push(format!(
            "{} deliveries repeated or out of seq order",
            r.out_of_order
        ));
    }
    if r.error_frames > 0 {
        r.failures.push(format!("{} error frames", r.error_frames));
    }
    if r.server_disconnects > 0 {
        r.failures.push(format!(
            "the server ended {} sessions",
            r.server_disconnects
        ));
    }
}

/// Prints the report, writes its JSON, and says whether the run passed: `hard` failures always
/// fail it, the standard checks only with `--strict`.
pub fn finish(output: &Output, mut r: Report, hard: Vec<String>) -> Result<bool> {
    // Failures a scenario noted itself count like the standard checks (`--strict` only).
    strict_checks(&mut r);
    let soft_failed = !r.failures.is_empty();
    r.failures.extend(hard.iter().cloned());
    let json = serde_json::to_string_pretty(&r).expect("reports serialize");
    if let Some(path) = &output.json {
        std::fs::write(path, format!("{json}\n"))
            .map_err(|e| BenchError::io(format!("writing {}", path.display()), e))?;
    }
    match output.format {
        Format::Json => println!("{json}"),
        Format::Markdown => print!("{}", report::markdown(std::slice::from_ref(&r))),
    }
    for e in &r.errors {
        eprintln!("note: {e}");
    }
    for f in &r.failures {
        eprintln!("FAILED: {f}");
    }
    Ok(hard.is_empty() && !(output.strict && soft_failed))
}
