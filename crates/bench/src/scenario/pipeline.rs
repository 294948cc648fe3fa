//! `pipeline`: ONE publishing connection keeps `--in-flight` publishes outstanding (the next is
//! sent as each answer arrives), to one room of `--room-size` (`--to room`: the publisher, also
//! subscribed, and `--room-size` - 1 subscribers) or as direct messages to random users among
//! `--connections` (`--to dm`, each recipient connected). Without `--rate` it publishes as fast
//! as the answers come back and reports acknowledged publishes/s and the server's CPU per
//! publish; at `--rate` it keeps that pace (still at most `--in-flight` outstanding) and the
//! publish-to-delivery latency is the figure.
//!
//! The publisher runs in this process (it is one connection); the subscribers are worker
//! connections like every other scenario's. With `--strict` the run fails unless the answers came
//! back in the order the publishes were sent, the seqs of each conversation grew in send order
//! (Switchboard: the `published` answers carry them), and every acknowledged publish reached
//! every subscriber exactly once (no delivery missing, none extra, none out of seq order).
//! Socket.IO speaks the same through `pub`/`dm` events with acknowledgements (no seqs there).

use super::{
    Ctx, add_connected, basic_failures, check_bounds, connect_all, finish, merge_results,
    set_elapsed,
};
use crate::cli::{PipelineArgs, PipelineTo};
use crate::coord::{Workers, drain};
use crate::error::{BenchError, Result};
use crate::latency;
use crate::proto::{self, Incoming, Protocol};
use crate::rng::Rng;
use crate::worker::ConnSpec;
use crate::ws::{self, Ws};
use futures_util::{SinkExt, StreamExt};
use serde_json::json;
use std::collections::{HashMap, VecDeque};
use std::time::Duration;
use tokio::time::Instant;
use tokio_tungstenite::tungstenite::Message;

/// Most publishes outstanding at once.
const MAX_IN_FLIGHT: usize = 10_000;
/// How long the answers of the last publishes are waited for after the sending window.
const ANSWER_WAIT: Duration = Duration::from_secs(30);
/// The publisher's request ids start here (lower ones are its subscribe's).
const FIRST_ID: u64 = 100;

/// Runs the scenario; true when it passed.
pub async fn run(a: PipelineArgs) -> Result<bool> {
    let subscribers = match a.to {
        PipelineTo::Room => a.room_size.saturating_sub(1),
        PipelineTo::Dm => a.connections,
    };
    check_bounds(
        subscribers + 1,
        a.duration,
        a.rate.unwrap_or(0.0),
        a.payload,
    )?;
    if subscribers == 0 {
        return Err(BenchError::Config(
            "pipeline needs a subscriber: --room-size of at least 2, --connections of at least 1"
                .into(),
        ));
    }
    if a.in_flight == 0 || a.in_flight > MAX_IN_FLIGHT {
        return Err(BenchError::Config(format!(
            "--in-flight must be 1 to {MAX_IN_FLIGHT}"
        )));
    }
    if a.rate.is_some_and(|r| r <= 0.0) {
        return Err(BenchError::Config("--rate must be above 0".into()));
    }
    let ctx = Ctx::new(&a.common)?;
    let proto = ctx.proto();
    let to = a.to.name();
    eprintln!("pipeline ({to}): {} tokens", subscribers + 1);
    // User 0 publishes; users 1..=subscribers receive.
    let mut tokens = ctx.tokens(ctx.addr, 0, subscribers as u64 + 1).await?;
    let publisher_token = tokens.remove(0);
    let room = match a.to {
        PipelineTo::Room => Some(ctx.rooms(ctx.addr, 1).await?.remove(0)),
        PipelineTo::Dm => None,
    };
    let conns = tokens
        .into_iter()
        .enumerate()
        .map(|(i, token)| ConnSpec {
            addr: ctx.addr,
            src: ctx.src(i + 1),
            token,
            user: i as u64 + 1,
            convs: room.iter().cloned().collect(),
        })
        .collect();
    let mut w = Workers::spawn(ctx.plans(conns)).await?;
    eprintln!("pipeline ({to}): connecting {subscribers} subscribers and the publisher");
    let connected = connect_all(&mut w, subscribers).await?;
    let mut ws = ws::connect(ctx.addr, ctx.src(0), &proto.ws_path(&publisher_token)).await?;
    proto.handshake(&mut ws, &publisher_token).await?;
    if let Some(room) = &room {
        proto.subscribe(&mut ws, room, 1).await?;
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    match a.rate {
        Some(r) => eprintln!(
            "pipeline ({to}): {r}/s for {} s, at most {} in flight",
            a.duration, a.in_flight
        ),
        None => eprintln!(
            "pipeline ({to}): as fast as answered for {} s, {} in flight",
            a.duration, a.in_flight
        ),
    }
    let before = ctx.probe.sample();
    let since = Instant::now();
    w.command("run").await?;
    let target = match &room {
        Some(r) => Target::Room(r.clone()),
        None => Target::Dm {
            prefix: ctx.user_prefix(),
            users: subscribers as u64,
        },
    };
    let p = publish(proto, &mut ws, &a, &target).await;
    // Room: every subscriber gets every message; DM: its one recipient does.
    let expected = match a.to {
        PipelineTo::Room => p.acked * subscribers as u64,
        PipelineTo::Dm => p.acked,
    };
    let elapsed = drain(&w, expected, since).await;
    let usage = ctx.probe.usage_since(&before);
    let _ = tokio::time::timeout(Duration::from_secs(2), ws.close(None)).await;
    let results = w.stop().await?;

    let mut r = ctx.report(
        "pipeline",
        json!({"to": to, "in_flight": a.in_flight, "room_size": a.room_size,
               "subscribers": subscribers, "rate": a.rate, "duration_s": a.duration,
               "payload": a.payload, "workers": a.common.workers,
               "source_ips": ctx.srcs.len()}),
    );
    add_connected(&mut r, &connected);
    if !p.connected_lost {
        r.connections += 1;
    }
    merge_results(&mut r, &results);
    r.published = p.acked;
    r.publish_errors = p.errors + p.unanswered;
    r.acks += p.acked;
    r.echoes += p.echoes;
    r.error_frames += p.errors;
    r.publish_latency_us = latency::percentiles(&p.latency);
    r.expected_deliveries = expected;
    set_elapsed(&mut r, elapsed.as_secs_f64().max(p.elapsed_s));
    if p.elapsed_s > 0.0 {
        r.publishes_per_s = Some(p.acked as f64 / p.elapsed_s);
    }
    // CPU per acknowledged publish (each is stored once and delivered to every subscriber).
    r.server = usage.map(|u| u.per_op(p.acked));
    if let Some(e) = &p.first_error {
        r.errors.push(format!("publish: {e}"));
    }
    if let Some(e) = &p.closed {
        r.errors.push(format!("publisher: {e}"));
    }
    if p.answers_out_of_order > 0 {
        r.failures.push(format!(
            "{} answers came back out of the order the publishes were sent",
            p.answers_out_of_order
        ));
    }
    if p.seqs_out_of_order > 0 {
        r.failures.push(format!(
            "{} answers carried a seq not above the one before in their conversation",
            p.seqs_out_of_order
        ));
    }
    if p.unanswered > 0 {
        r.failures
            .push(format!("{} publishes were never answered", p.unanswered));
    }
    if r.deliveries > r.expected_deliveries {
        r.failures.push(format!(
            "{} deliveries more than acknowledged publishes x subscribers",
            r.deliveries - r.expected_deliveries
        ));
    }
    let mut hard = basic_failures(&r, true);
    if p.acked == 0 {
        hard.push("no publish was acknowledged".into());
    }
    finish(&a.common.output, r, hard)
}

/// Where the publishes go.
enum Target {
    /// One room (its conversation name).
    Room(String),
    /// Users `prefix` + 1..=`users`, at random.
    Dm { prefix: String, users: u64 },
}

/// What the publisher saw.
struct Pipelined {
    /// Publishes answered `published` (acknowledged).
    acked: u64,
    /// Publishes answered with an error.
    errors: u64,
    /// Publishes still without an answer at the end.
    unanswered: u64,
    /// Answers for another publish than the oldest outstanding one.
    answers_out_of_order: u64,
    /// Answers whose seq was not above the previous one of their conversation.
    seqs_out_of_order: u64,
    /// Copies of its own messages the publisher got (room member, DM sender copy).
    echoes: u64,
    /// Publish-to-answer time, µs.
    latency: hdrhistogram::Histogram<u64>,
    /// Seconds from the first publish to the last answer.
    elapsed_s: f64,
    /// The first error answer.
    first_error: Option<String>,
    /// Why the connection ended early, if it did.
    closed: Option<String>,
    /// The connection ended early.
    connected_lost: bool,
}

/// Publishes over `ws` for `--duration` seconds with at most `--in-flight` outstanding, then
/// waits for the last answers.
async fn publish(proto: Protocol, ws: &mut Ws, a: &PipelineArgs, target: &Target) -> Pipelined {
    let pad = "x".repeat(a.payload);
    let mut rng = Rng::seeded(0x5eed);
    let mut out = Pipelined {
        acked: 0,
        errors: 0,
        unanswered: 0,
        answers_out_of_order: 0,
        seqs_out_of_order: 0,
        echoes: 0,
        latency: latency::histogram(),
        elapsed_s: 0.0,
        first_error: None,
        closed: None,
        connected_lost: false,
    };
    // Outstanding publishes, oldest first: (request id, send time).
    let mut window: VecDeque<(u64, Instant)> = VecDeque::with_capacity(a.in_flight);
    // The last acknowledged seq per conversation.
    let mut heads: HashMap<String, u64> = HashMap::new();
    let start = Instant::now();
    let end = start + Duration::from_secs_f64(a.duration);
    let mut next_id = FIRST_ID;
    let mut sent: u64 = 0;
    let mut last_answer = start;
    'run: loop {
        let now = Instant::now();
        let sending = now < end;
        let mut due = None;
        if sending {
            let mut fed = false;
            while window.len() < a.in_flight {
                if let Some(rate) = a.rate {
                    let d = start + Duration::from_secs_f64(sent as f64 / rate);
                    if d > now {
                        due = Some(d);
                        break;
                    }
                }
                let body = proto::body(latency::now_us(), 0, &pad);
                let frame = match target {
                    Target::Room(conv) => proto.pub_frame(conv, &body, next_id),
                    Target::Dm { prefix, users } => {
                        let to = format!("{prefix}{}", 1 + rng.below(*users));
                        proto.dm_frame(&to, &body, next_id)
                    }
                };
                if let Err(e) = ws.feed(Message::text(frame)).await {
                    out.closed = Some(format!("write failed: {e}"));
                    break 'run;
                }
                window.push_back((next_id, Instant::now()));
                next_id += 1;
                sent += 1;
                fed = true;
            }
            if fed && let Err(e) = ws.flush().await {
                out.closed = Some(format!("write failed: {e}"));
                break 'run;
            }
        } else if window.is_empty() || now >= end + ANSWER_WAIT {
            break;
        }
        let wake = if sending {
            due.map_or(end, |d| d.min(end))
        } else {
            end + ANSWER_WAIT
        };
        let text = tokio::select! {
            msg = ws.next() => match msg {
                Some(Ok(Message::Text(t))) => t.as_str().to_owned(),
                Some(Ok(Message::Binary(b))) => String::from_utf8_lossy(&b).into_owned(),
                Some(Ok(Message::Close(c))) => {
                    out.closed = Some(format!("close frame {c:?}"));
                    break 'run;
                }
                Some(Ok(_)) => continue,
                Some(Err(e)) => {
                    out.closed = Some(format!("read error: {e}"));
                    break 'run;
                }
                None => {
                    out.closed = Some("connection ended".into());
                    break 'run;
                }
            },
            _ = tokio::time::sleep_until(wake) => continue,
        };
        if let Some(ans) = proto.answer(&text) {
            let at = Instant::now();
            match window.front() {
                Some(&(id, t0)) if id == ans.id => {
                    window.pop_front();
                    latency::record(&mut out.latency, (at - t0).as_micros() as u64);
                }
                _ => {
                    out.answers_out_of_order += 1;
                    if let Some(i) = window.iter().position(|(id, _)| *id == ans.id) {
                        let (_, t0) = window.remove(i).expect("present");
                        latency::record(&mut out.latency, (at - t0).as_micros() as u64);
                    }
                }
            }
            last_answer = at;
            if ans.ok {
                out.acked += 1;
                if let (Some(conv), Some(seq)) = (ans.conv, ans.seq) {
                    let last = heads.entry(conv).or_insert(0);
                    if seq <= *last {
                        out.seqs_out_of_order += 1;
                    }
                    *last = seq;
                }
            } else {
                out.errors += 1;
                out.first_error.get_or_insert(text);
            }
            continue;
        }
        match proto.classify(&text) {
            Incoming::Delivery { .. } => out.echoes += 1,
            Incoming::Ping => {
                if let Err(e) = ws.send(Message::text("3")).await {
                    out.closed = Some(format!("write failed: {e}"));
                    break 'run;
                }
            }
            Incoming::Error(t) => {
                out.errors += 1;
                out.first_error.get_or_insert(t);
            }
            Incoming::Closed(t) => {
                out.closed = Some(t);
                break 'run;
            }
            Incoming::Ack | Incoming::Other => {}
        }
    }
    out.connected_lost = out.closed.is_some();
    out.unanswered = window.len() as u64;
    out.elapsed_s = last_answer.duration_since(start).as_secs_f64();
    out
}
