//! The session's timers on tokio's paused clock: the auth deadline, heartbeats and a dead
//! peer, token expiry. The clock only moves when every task waits, so these run in no real
//! time and cannot be flaky about it; the end-to-end suites check the same over real sockets.

use crate::common::{Reads, embedded_node};
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;
use switchboard_core::config::Limits;
use switchboard_core::session::{PreAuth, run_session};
use switchboard_core::transport::{Inbound, Transport};
use tokio::time::Instant;

/// A peer that never says anything, or says it is alive every `every`.
struct Peer {
    every: Option<Duration>,
}

impl Transport for Peer {
    fn recv(&mut self) -> impl Future<Output = Option<Inbound>> + Send {
        let every = self.every;
        async move {
            match every {
                Some(d) => {
                    tokio::time::sleep(d).await;
                    Some(Inbound::Alive)
                }
                None => std::future::pending().await,
            }
        }
    }
}

fn limits(heartbeat_ms: u64, auth_timeout_ms: u64) -> Limits {
    Limits {
        heartbeat: Duration::from_millis(heartbeat_ms),
        auth_timeout: Duration::from_millis(auth_timeout_ms),
        ..Limits::default()
    }
}

/// Runs a session to its end (or gives up at `within`); returns how long it lasted, in paused
/// time, and what it wrote.
async fn lasts(
    node: Arc<switchboard_core::Node>,
    peer: Peer,
    pre_auth: Option<PreAuth>,
    within: Duration,
) -> (Option<Duration>, Vec<String>) {
    let wire = Arc::new(Reads::default());
    let start = Instant::now();
    let task = tokio::spawn(run_session(node, peer, wire.clone(), pre_auth));
    let ended = tokio::time::timeout(within, task).await.is_ok();
    (ended.then(|| start.elapsed()), wire.frames())
}

#[tokio::test(start_paused = true)]
async fn a_connection_that_never_authenticates_is_closed_at_the_auth_deadline() {
    let (node, _dir) = embedded_node(limits(60_000, 3_000));
    let (lasted, frames) = lasts(
        node.clone(),
        Peer { every: None },
        None,
        Duration::from_secs(10),
    )
    .await;
    let lasted = lasted.expect("closed");
    assert!(
        lasted >= Duration::from_secs(3) && lasted < Duration::from_millis(3_100),
        "closed after {lasted:?}"
    );
    assert_eq!(frames.len(), 2, "{frames:?}");
    assert!(frames[0].contains(r#""code":"unauthorized""#), "{frames:?}");
    assert!(
        frames[0].contains("no auth frame within 3000 ms"),
        "{frames:?}"
    );
    assert_eq!(frames[1], "CLOSE 1000");
    assert_eq!(node.hub.open_connections(), 0);
}

#[tokio::test(start_paused = true)]
async fn a_silent_peer_is_dropped_at_the_third_heartbeat_and_a_live_one_stays() {
    // Heartbeats every second; nothing at all comes back: two pings go unanswered, and at the
    // third the peer is taken for dead (no disconnect frame: nobody would read it).
    let (node, _dir) = embedded_node(limits(1_000, 60_000));
    let (lasted, frames) = lasts(
        node.clone(),
        Peer { every: None },
        None,
        Duration::from_secs(30),
    )
    .await;
    let lasted = lasted.expect("dropped");
    assert!(
        lasted >= Duration::from_secs(3) && lasted < Duration::from_millis(3_100),
        "dropped after {lasted:?}"
    );
    assert_eq!(frames, ["PING", "PING", "CLOSE 1000"]);

    // A peer that shows it is alive twice a second is pinged and kept.
    let alive = Peer {
        every: Some(Duration::from_millis(500)),
    };
    let (lasted, frames) = lasts(node, alive, None, Duration::from_secs(20)).await;
    assert_eq!(lasted, None, "a live peer is kept");
    let pings = frames.iter().filter(|f| *f == "PING").count();
    assert!(
        (19..=20).contains(&pings),
        "{pings} pings in 20 s: {frames:?}"
    );
}

#[tokio::test(start_paused = true)]
async fn a_session_ends_when_its_token_expires() {
    let (node, _dir) = embedded_node(limits(60_000, 60_000));
    let token = node
        .issue_server_token("ext-1", Some(Duration::from_secs(5)))
        .await
        .unwrap();
    let principal = node.authenticate(&token.token).await.unwrap();
    let (lasted, frames) = lasts(
        node.clone(),
        Peer { every: None },
        Some(PreAuth::from(principal)),
        Duration::from_secs(30),
    )
    .await;
    let lasted = lasted.expect("ended at expiry");
    assert!(
        lasted >= Duration::from_millis(4_000) && lasted < Duration::from_millis(5_100),
        "ended after {lasted:?}"
    );
    assert!(frames[0].contains(r#""type":"welcome""#), "{frames:?}");
    assert!(
        frames
            .iter()
            .any(|f| f.contains(r#""type":"disconnect""#) && f.contains("auth_expired")),
        "{frames:?}"
    );
    assert_eq!(frames.last().map(String::as_str), Some("CLOSE 1000"));
}

/// A session opened after the paused clock moved on still gets its whole auth timeout: its
/// deadline is set by the clock its timer checks (found in review: set by the system's clock,
/// it had already passed on the paused one).
#[tokio::test(start_paused = true)]
async fn the_auth_deadline_is_set_by_the_timers_clock() {
    let (node, _dir) = embedded_node(limits(60_000, 3_000));
    tokio::time::sleep(Duration::from_secs(60)).await;
    let (lasted, _) = lasts(node, Peer { every: None }, None, Duration::from_secs(10)).await;
    let lasted = lasted.expect("closed");
    assert!(lasted >= Duration::from_secs(3), "closed after {lasted:?}");
}

/// Real time spent before the session starts does not lengthen its deadline on the paused
/// clock (found in review, as above).
#[tokio::test(start_paused = true)]
async fn real_time_before_the_session_does_not_move_its_deadline() {
    let (node, _dir) = embedded_node(limits(60_000, 3_000));
    std::thread::sleep(Duration::from_millis(300));
    let (lasted, _) = lasts(node, Peer { every: None }, None, Duration::from_secs(10)).await;
    let lasted = lasted.expect("closed");
    assert!(
        lasted < Duration::from_millis(3_100),
        "closed after {lasted:?}"
    );
}
