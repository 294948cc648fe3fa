//! The soak's traffic: at a steady total rate, a random client publishes to one of its rooms
//! or sends a direct message to another random client. A publish whose answer did not come
//! (timeout, dropped connection, Redis away) is sent again with the same `client_msg_id`, so
//! it is stored once; every acknowledged message is recorded with who must receive it.

use crate::clients::{SoakClient, lock};
use serde_json::json;
use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};
use switchboard_client::ClientError;
use tokio::sync::Semaphore;
use tokio::task::JoinSet;

/// Who must receive an acknowledged message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Target {
    /// Every member of this room (index into the plan's rooms).
    Room(usize),
    /// This client (a direct message).
    Client(usize),
}

/// An acknowledged message: where it was stored and who must get it.
#[derive(Debug, Clone)]
pub struct Acked {
    /// The conversation the receipt names (`room:<id>`, or `user:<to>` for a DM).
    pub conv: Arc<str>,
    /// Its seq there.
    pub seq: u64,
    /// Its recipients.
    pub target: Target,
}

/// Counters of the publishing side.
#[derive(Debug, Default)]
pub struct Tally {
    /// Acknowledged messages.
    pub acked: Mutex<Vec<Acked>>,
    /// Publishes that were sent again after a failed attempt.
    pub retries: AtomicU64,
    /// Publishes given up unacknowledged (not expected anywhere; reported).
    pub failed: AtomicU64,
}

/// A small xorshift generator: senders and recipients need to be spread, not secret.
pub struct Rng(u64);

impl Rng {
    /// Seeded from the clock.
    pub fn seeded() -> Rng {
        let t = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(1, |d| d.as_nanos() as u64);
        Rng(t | 1)
    }

    /// A number in `0..n` (`n` > 0).
    pub fn below(&mut self, n: usize) -> usize {
        let mut x = self.0;
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.0 = x;
        ((x.wrapping_mul(0x2545_F491_4F6C_DD1D) as u128 * n as u128) >> 64) as usize
    }
}

/// How the traffic is shaped.
#[derive(Debug, Clone, Copy)]
pub struct Shape {
    /// Messages per second over all clients.
    pub rate: f64,
    /// Percent of messages that are direct messages (the rest go to rooms).
    pub dm_percent: usize,
    /// How long to publish.
    pub duration: Duration,
    /// The last moment a failed publish is tried again.
    pub give_up_at: Instant,
}

/// Publishes for `shape.duration`, then waits for the publishes under way (until
/// `shape.give_up_at`).
pub async fn run(
    clients: Arc<Vec<SoakClient>>,
    room_index: Arc<HashMap<String, usize>>,
    shape: Shape,
    tally: Arc<Tally>,
) {
    let end = Instant::now() + shape.duration;
    let mut tick = tokio::time::interval(Duration::from_secs_f64(1.0 / shape.rate.max(0.1)));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let in_flight = Arc::new(Semaphore::new(2_000));
    let mut tasks = JoinSet::new();
    let mut rng = Rng::seeded();
    let mut k = 0u64;
    while Instant::now() < end {
        tick.tick().await;
        let Ok(permit) = in_flight.clone().acquire_owned().await else {
            break;
        };
        let i = rng.below(clients.len());
        let sender = &clients[i];
        let (conv, target) = if clients.len() > 1 && rng.below(100) < shape.dm_percent {
            let mut j = rng.below(clients.len() - 1);
            if j >= i {
                j += 1;
            }
            (
                format!("user:{}", clients[j].user.user_id),
                Target::Client(j),
            )
        } else {
            let room = sender.rooms[rng.below(sender.rooms.len())].clone();
            let r = room_index.get(&room).copied().unwrap_or(0);
            (room, Target::Room(r))
        };
        k += 1;
        let client = sender.client.clone();
        let tally = tally.clone();
        let id = format!("soak-{i}-{k}");
        tasks.spawn(async move {
            let _permit = permit;
            publish(
                &client,
                &conv,
                json!({"k": k, "from": i}),
                &id,
                target,
                shape.give_up_at,
                &tally,
            )
            .await;
        });
        while tasks.try_join_next().is_some() {}
    }
    while tokio::time::timeout_at(shape.give_up_at.into(), tasks.join_next())
        .await
        .is_ok_and(|t| t.is_some())
    {}
    tasks.abort_all();
}

/// One message: published until acknowledged (same id each time) or `give_up_at`.
async fn publish(
    client: &switchboard_client::Client,
    conv: &str,
    body: serde_json::Value,
    id: &str,
    target: Target,
    give_up_at: Instant,
    tally: &Tally,
) {
    loop {
        match client.publish_with_id(conv, body.clone(), id).await {
            Ok(r) => {
                lock(&tally.acked).push(Acked {
                    conv: r.conv.into(),
                    seq: r.seq,
                    target,
                });
                return;
            }
            Err(ClientError::Closed | ClientError::Config(_) | ClientError::Protocol(_)) => break,
            Err(e) if Instant::now() >= give_up_at => {
                eprintln!("soak: gave up publishing {id} to {conv}: {e}");
                break;
            }
            Err(_) => {
                tally.retries.fetch_add(1, Ordering::Relaxed);
                tokio::time::sleep(Duration::from_millis(500)).await;
            }
        }
    }
    tally.failed.fetch_add(1, Ordering::Relaxed);
}
