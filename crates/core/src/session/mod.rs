//! One client connection, whatever its transport: authentication, subscriptions, publishing,
//! and the ordering rules of delivery. One task per connection runs [`run_session`].
//!
//! The files, one concern each:
//! - `mod.rs` (here): starting a session, its state, how it ends;
//! - `serve`: the loop (requests, hand-overs, writability, timers and heartbeats);
//! - `output`: the session's own writes and waiting for room (the bound on its replies);
//! - `request`: one client frame: parse, rate limits, and the requests that need no
//!   subscription (publish, history, presence);
//! - `subscribe`: authentication, resume and `subscribe`;
//! - `pipeline`: publishes in flight, answered in order; `line`: the same as their
//!   completions see them (an answer is written where its commit completed when it can be);
//! - `delivery`: what the fan-out hands over, gap fills and history replays;
//! - `resume`: where a resume starts (a pure function);
//! - `teardown`: the last frames and the release of everything the connection held.
//!
//! Ordering and resume: a subscription is added to the hub (and the bus) *before* its position
//! and history are read, so every message is either in that history read or arrives live
//! afterwards. The connection remembers the last seq sent per conversation and drops anything
//! at or below it (no duplicates); a live message that skips ahead makes the session fetch the
//! missing ones from history first (no gaps). The fan-out writes a message itself only when it
//! is exactly the next one and nothing else waits; the check and the write are one step under
//! the connection's lock, so it and the session never reorder each other. The rules the
//! session relies on are kept by [`crate::conn`] (its module comment lists them); what the
//! connection holds outside itself is owned by `crate::subscriptions`.

mod delivery;
mod line;
mod output;
mod pipeline;
mod request;
mod resume;
mod serve;
mod subscribe;
mod teardown;

use crate::auth::Principal;
use crate::conn::{Broken, Conn};
use crate::error::Error;
use crate::moment::Moment;
use crate::node::Node;
use crate::ratelimit::TokenBucket;
use crate::subscriptions::Subscriptions;
use crate::transport::{Transport, Wire};
use std::collections::BTreeMap;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;
use switchboard_proto::frame::ResumePosition;
use switchboard_proto::{Conv, DisconnectReason};
use tokio::time::Instant;

/// Invalid frames tolerated per [`BAD_FRAME_WINDOW`] before the connection is closed.
pub const MAX_BAD_FRAMES: u32 = 20;
/// Window for [`MAX_BAD_FRAMES`].
pub const BAD_FRAME_WINDOW: Duration = Duration::from_secs(10);
pub use pipeline::PIPELINE_DEPTH;
/// Where a resume starts (PROTOCOL.md 6.6), for transports that decide before the session runs.
pub use resume::decide as decide_resume;

/// How a session ends.
#[derive(Debug)]
enum End {
    /// The peer went away or the socket failed: nothing more to write.
    Gone,
    /// The server ends it: a `disconnect` frame (preceded by `reconnect` on shutdown).
    Disconnect(DisconnectReason),
    /// The last reply was already written (e.g. an auth error): just close.
    Close,
}

/// A request that failed: either an error reply (the connection goes on) or the end.
enum Fail {
    Reply(Error),
    End(End),
}

impl From<Error> for Fail {
    fn from(e: Error) -> Fail {
        Fail::Reply(e)
    }
}
impl From<End> for Fail {
    fn from(e: End) -> Fail {
        Fail::End(e)
    }
}
impl From<Broken> for End {
    fn from(_: Broken) -> End {
        End::Gone
    }
}
impl From<Broken> for Fail {
    fn from(_: Broken) -> Fail {
        Fail::End(End::Gone)
    }
}

/// A client the transport already authenticated (a token on the WebSocket upgrade request, or a
/// long-poll session opened with a bearer token), with the conversations it resumes.
#[derive(Debug, Clone)]
pub struct PreAuth {
    /// Who.
    pub principal: Principal,
    /// Conversations to resume (and subscribe to), as in the `auth` frame.
    pub resume: BTreeMap<Conv, ResumePosition>,
}

impl From<Principal> for PreAuth {
    fn from(principal: Principal) -> PreAuth {
        PreAuth {
            principal,
            resume: BTreeMap::new(),
        }
    }
}

/// Runs one connection to its end: reads through `transport`, writes through `wire`. With
/// `pre_auth`, `welcome` is sent unasked first. The connection is known to the node (counted,
/// reachable by shutdown) from this call on, before the returned future first runs. If the
/// future is dropped before it completes (a panic in its task), everything the connection held
/// is released all the same (see `crate::subscriptions`).
pub fn run_session<T: Transport>(
    node: Arc<Node>,
    transport: T,
    wire: Arc<dyn Wire>,
    pre_auth: Option<PreAuth>,
) -> impl Future<Output = ()> + Send {
    let conn = Conn::new(
        wire,
        node.limits.outbound_queue,
        node.limits.outbound_queue_bytes,
    );
    let now = Moment::now();
    let mut session = Session {
        publish_bucket: TokenBucket::new(node.limits.publish_rate, node.limits.publish_burst),
        frame_bucket: TokenBucket::new(
            node.limits.frame_rate,
            node.limits.frame_rate.saturating_mul(2),
        ),
        next_ping: now + transport.heartbeat().unwrap_or(node.limits.heartbeat),
        deadline: now + node.limits.auth_timeout,
        t: transport,
        subs: Subscriptions::open(node, conn),
        authenticated: false,
        pipeline: None,
        bad_frames: None,
        pinged: false,
        heard: false,
        missed_pings: 0,
    };
    let pre_auth = pre_auth.map(Box::new);
    // The future every connection holds for its life: only the session and what its loop
    // needs. (An async fn would keep its arguments twice in its future, hence the block.)
    async move {
        let end = session.serve(pre_auth).await;
        // Cold paths are boxed: their state is allocated only while they run, which keeps the
        // per-connection future small (it is what every idle connection holds).
        Box::pin(session.finish(end)).await;
    }
}

/// Invalid frames a connection sent in the current [`BAD_FRAME_WINDOW`].
struct BadFrames {
    count: u32,
    window: Instant,
}

/// One connection's session: the task's state.
struct Session<T: Transport> {
    t: T,
    /// Everything the connection holds outside itself: hub key, registry entry (the user, once
    /// authenticated), subscriptions; and the node and the connection's shared half (subscriptions
    /// with their last seq, unsent frames, handed-over work), read as `subs.node` and `subs.conn`
    /// (one copy of each in every connection's future).
    subs: Subscriptions,
    /// Until it authenticated, when the auth timeout ends; then when its token expires. (A
    /// [`Moment`], 8 bytes where an `Instant` takes 16, as the next heartbeat is.)
    deadline: Moment,
    /// It authenticated (`deadline` is the token's expiry).
    authenticated: bool,
    /// Publishes in flight (boxed: most connections never have one).
    pipeline: Option<Box<pipeline::Pipeline>>,
    publish_bucket: TokenBucket,
    frame_bucket: TokenBucket,
    /// Invalid frames in the current window (boxed: most connections never send one).
    bad_frames: Option<Box<BadFrames>>,
    next_ping: Moment,
    /// A heartbeat was sent; anything at all came from the peer since the last one; how many
    /// heartbeats in a row went unanswered. (Flags, not instants: every connection's future
    /// holds them, and a frame then costs no clock read.)
    pinged: bool,
    heard: bool,
    missed_pings: u8,
}

#[cfg(test)]
mod size_tests {
    use super::*;
    use crate::transport::Inbound;

    /// The size of the future `f` returns (never called).
    fn returned_size<F: FnOnce() -> Fut, Fut>(_: F) -> usize {
        std::mem::size_of::<Fut>()
    }

    struct Nothing;
    impl Transport for Nothing {
        async fn recv(&mut self) -> Option<Inbound> {
            None
        }
    }

    /// The session's future is allocated once per connection: keep an eye on its size.
    #[test]
    fn the_session_future_stays_small() {
        #[allow(unreachable_code)]
        let size = returned_size(|| run_session(unreachable!(), Nothing, unreachable!(), None));
        println!(
            "run_session future: {size} bytes; Session: {} bytes",
            std::mem::size_of::<Session<Nothing>>()
        );
        // Every idle connection holds this future: a regression here is memory per connection.
        // Tokio allocates a task as its future plus 104 bytes (header, scheduler, id, stage
        // tag, trailer), rounded up to 128; the session's task also holds its admission permit
        // (8). 624 bytes made the Socket.IO session's task 768 bytes; 528 made it 640 (the
        // ids shared, one node and one `Conn` in the future instead of two, the bad-frame
        // window boxed, a one-pointer permit; massif); 400 makes it 512 (`serve` keeps its
        // arguments once and no `select!` output across a step; the heartbeat, the deadline
        // and the rate limits' refills in 8-byte `Moment`s instead of 16-byte `Instant`s).
        assert!(size <= 400, "the session future grew to {size} bytes");
    }

    /// Every frame a client sends boxes `on_frame`'s future, and every publish `publish`'s:
    /// above 1,032 bytes glibc's `malloc` leaves its per-thread cache for a slow path (about
    /// 1,000 instructions a call under callgrind, when `on_frame` held every request's handling
    /// and was 2,360 bytes).
    #[test]
    #[allow(unreachable_code, unused_variables, clippy::diverging_sub_expression)]
    fn a_frames_futures_stay_in_the_allocators_thread_cache() {
        let on_frame = returned_size(|| {
            let s: &mut Session<Nothing> = unreachable!();
            s.on_frame(unreachable!())
        });
        let publish = returned_size(|| {
            let s: &mut Session<Nothing> = unreachable!();
            s.publish(
                unreachable!(),
                unreachable!(),
                unreachable!(),
                unreachable!(),
                unreachable!(),
            )
        });
        println!("on_frame future: {on_frame} bytes; publish: {publish} bytes");
        assert!(
            on_frame <= 1032,
            "on_frame's future grew to {on_frame} bytes"
        );
        assert!(publish <= 1032, "publish's future grew to {publish} bytes");
    }
}
