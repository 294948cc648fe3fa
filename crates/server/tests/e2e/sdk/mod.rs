//! End-to-end tests of the Rust client SDK (`switchboard-client`) against real in-process nodes
//! over real sockets: every transport, restarts, `reconnect` frames, lost history, the
//! WebSocket-to-long-polling fallback behind a proxy that refuses upgrades, and logout.
//!
//! This file holds the shared fixtures (the client config, the `Watch` over the event stream,
//! the per-transport test generator); the scenarios live in the files below, by concern.

use crate::common;
use common::*;
use serde_json::{Value, json};
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::Duration;
use switchboard_client::{
    Client, ClientConfig, ClientError, Event, Events, Message, Transport, TransportChoice,
};
use tokio::time::Instant;

mod delivery;
mod endings;
mod network;
mod proxies;
mod reconnect;
use delivery::publish_and_receive_each_message_once_in_order;
use endings::{a_refused_token_fails_connect, logout_ends_the_stream_without_reconnecting};
use network::heartbeats_are_answered_and_the_connection_lasts;
use proxies::{behind_proxies, start_proxy};
use reconnect::restart_resumes_without_gap_and_a_publish_made_while_down_lands_once;

/// Longest wait for one expected event (restarts include a drain and a dispatcher 503 with
/// `Retry-After` of up to 5 s).
const LONG: Duration = Duration::from_secs(30);
/// Every test ends within this.
const DEADLINE: Duration = Duration::from_secs(90);

async fn with_deadline<F: std::future::Future<Output = ()>>(f: F) {
    tokio::time::timeout(DEADLINE, f)
        .await
        .expect("test deadline passed");
}

fn choice(kind: Kind) -> TransportChoice {
    match kind {
        Kind::Ws => TransportChoice::WebSocket,
        Kind::Tcp => TransportChoice::Tcp,
        Kind::Poll => TransportChoice::LongPoll,
    }
}

fn transport(kind: Kind) -> Transport {
    match kind {
        Kind::Ws => Transport::WebSocket,
        Kind::Tcp => Transport::Tcp,
        Kind::Poll => Transport::LongPoll,
    }
}

fn config(dispatcher: String, token: &str, transport: TransportChoice) -> ClientConfig {
    let mut c = ClientConfig::new(dispatcher, token);
    c.transport = transport;
    c.backoff_base = Duration::from_millis(50);
    c.backoff_max = Duration::from_millis(500);
    c.request_timeout = Duration::from_secs(10);
    c
}

fn at(addr: SocketAddr) -> String {
    format!("http://{addr}")
}

/// The event stream, with everything seen kept for later assertions.
struct Watch {
    events: Events,
    seen: Vec<Event>,
}

impl Watch {
    fn new(events: Events) -> Watch {
        Watch {
            events,
            seen: Vec::new(),
        }
    }

    /// Waits for an event matching `pred`; every event seen meanwhile is kept.
    async fn until<T>(&mut self, what: &str, mut pred: impl FnMut(&Event) -> Option<T>) -> T {
        let deadline = Instant::now() + LONG;
        loop {
            let e = tokio::time::timeout_at(deadline, self.events.next())
                .await
                .unwrap_or_else(|_| panic!("timed out waiting for {what}; seen {:#?}", self.seen))
                .unwrap_or_else(|| panic!("events ended while waiting for {what}"));
            self.seen.push(e.clone());
            if let Some(t) = pred(&e) {
                return t;
            }
        }
    }

    fn messages(&self, conv: &str) -> Vec<Message> {
        self.seen
            .iter()
            .filter_map(|e| match e {
                Event::Message(m) if m.conv == conv => Some(m.clone()),
                _ => None,
            })
            .collect()
    }

    /// Waits until `n` messages of `conv` were seen in all; returns them.
    async fn messages_until(&mut self, conv: &str, n: usize) -> Vec<Message> {
        while self.messages(conv).len() < n {
            let c = conv.to_owned();
            self.until(&format!("message {} of {conv}", n), |e| {
                matches!(e, Event::Message(m) if m.conv == c).then_some(())
            })
            .await;
        }
        self.messages(conv)
    }

    /// Collects whatever arrives within `d` (to show nothing more comes).
    async fn settle(&mut self, d: Duration) {
        let deadline = Instant::now() + d;
        while let Ok(Some(e)) = tokio::time::timeout_at(deadline, self.events.next()).await {
            self.seen.push(e);
        }
    }

    async fn connected(&mut self) -> (String, Transport) {
        self.until("Connected", |e| match e {
            Event::Connected { node_id, transport } => Some((node_id.clone(), *transport)),
            _ => None,
        })
        .await
    }

    async fn disconnected(&mut self) -> String {
        self.until("Disconnected", |e| match e {
            Event::Disconnected { reason } => Some(reason.clone()),
            _ => None,
        })
        .await
    }
}

fn seqs(ms: &[Message]) -> Vec<u64> {
    ms.iter().map(|m| m.seq).collect()
}

/// Asserts `ms` is exactly `from..=to`, each once, in order.
fn assert_exactly(ms: &[Message], from: u64, to: u64) {
    assert_eq!(seqs(ms), (from..=to).collect::<Vec<_>>(), "{ms:#?}");
}

async fn metrics(node: &TestNode) -> String {
    node.http
        .client
        .get(format!("{}/metrics", node.http.base))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap()
}

/// Generates one test per transport for each scenario.
macro_rules! over_every_transport {
    ($($scenario:ident),* $(,)?) => {
        mod ws {
            $( #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
               async fn $scenario() { super::with_deadline(super::$scenario(super::Kind::Ws)).await } )*
        }
        mod tcp {
            $( #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
               async fn $scenario() { super::with_deadline(super::$scenario(super::Kind::Tcp)).await } )*
        }
        mod poll {
            $( #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
               async fn $scenario() { super::with_deadline(super::$scenario(super::Kind::Poll)).await } )*
        }
    };
}

over_every_transport!(
    publish_and_receive_each_message_once_in_order,
    restart_resumes_without_gap_and_a_publish_made_while_down_lands_once,
    logout_ends_the_stream_without_reconnecting,
    a_refused_token_fails_connect,
    heartbeats_are_answered_and_the_connection_lasts,
);

/// The conversation id of a room.
fn conv_of(room: &str) -> String {
    format!("room:{room}")
}
