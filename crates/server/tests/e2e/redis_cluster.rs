//! Cluster mode on a real Redis Cluster (3 masters, 3 replicas) with three real `switchboard`
//! processes: publishers on every node stream to two rooms and to one user's direct messages
//! while (1) `redis-cli --cluster reshard` moves the slot holding the direct messages to another
//! master, then (2) the master holding a room is SIGKILLed and its replica takes over. After
//! each, every acknowledged message is in history and reached every subscriber exactly once, in
//! order; a node with no interested connection received nothing of the rooms.

use crate::common;
use common::*;
use serde_json::json;
use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use switchboard_backend_redis::key_slot;
use switchboard_testkit::RedisCluster;

/// Messages per publisher per phase.
const PER: u64 = 40;
/// The longest a publish is retried (a failover takes about node timeout + election).
const RETRY_FOR: Duration = Duration::from_secs(30);

/// One acknowledged publish.
#[derive(Debug, Clone)]
struct Ack {
    conv: String,
    seq: u64,
    message_id: String,
    /// The slowest single answer (`published` or an error) while publishing it.
    slowest: Duration,
}

/// What one phase saw.
#[derive(Debug, Default)]
struct Counts {
    acknowledged: usize,
    lost: usize,
    repeated: usize,
    reordered: usize,
    missing_from_history: usize,
    /// The slowest single answer to a publish.
    slowest_answer: Duration,
}

async fn node(seeds: &str, dir: &tempfile::TempDir, id: &str) -> NodeProcess {
    NodeProcess::start(
        dir.path(),
        &[
            "--redis-cluster",
            seeds,
            "--node-id",
            id,
            "--lease-ms",
            "3000",
            "--publish-rate",
            "0",
        ],
    )
    .await
}

/// A token for a user id of our choosing (server API, bring-your-own-auth).
async fn token_for(http: &Http, user_id: &str) -> String {
    let (s, v) = http
        .server(&format!("/v1/server/users/{user_id}/tokens"), json!({}))
        .await;
    assert_eq!(s, 201, "{v}");
    v["token"].as_str().unwrap().to_owned()
}

async fn ws(node: &NodeProcess, token: &str) -> WsClient {
    let mut c = WsClient::connect(&node.ws_url()).await;
    c.send(json!({"type": "auth", "id": "auth", "token": token}))
        .await;
    c.expect("welcome").await;
    c
}

/// Publishes `PER` messages to `conv`, each retried with its `client_msg_id` until answered
/// `published`; returns the acknowledgements.
async fn publisher(
    mut c: WsClient,
    conv: String,
    tag: String,
    progress: Arc<Mutex<u64>>,
) -> Vec<Ack> {
    let mut acks = Vec::new();
    for k in 0..PER {
        let cmid = format!("{tag}-{k}");
        let deadline = Instant::now() + RETRY_FOR;
        let mut slowest = Duration::ZERO;
        loop {
            let asked = Instant::now();
            let r = c
                .request(
                    json!({"type": "publish", "conv": conv, "client_msg_id": cmid, "body": {"k": k}}),
                    k,
                )
                .await;
            slowest = slowest.max(asked.elapsed());
            if r["type"] == "published" {
                acks.push(Ack {
                    conv: conv.clone(),
                    seq: r["seq"].as_u64().unwrap(),
                    message_id: r["message_id"].as_str().unwrap().to_owned(),
                    slowest,
                });
                break;
            }
            assert_eq!(
                r["code"], "unavailable",
                "only `unavailable` is expected: {r}"
            );
            assert!(
                Instant::now() < deadline,
                "{conv} unavailable for {RETRY_FOR:?}"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        *progress.lock().unwrap() += 1;
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    acks
}

/// Reads `message` frames until every acknowledged seq of every conversation arrived (bounded);
/// returns the seqs per conversation in arrival order.
async fn collect(c: &mut WsClient, wanted: &HashMap<String, u64>) -> HashMap<String, Vec<u64>> {
    let mut got: HashMap<String, Vec<u64>> = HashMap::new();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    let done = |got: &HashMap<String, Vec<u64>>| {
        wanted
            .iter()
            .all(|(conv, last)| got.get(conv).is_some_and(|s| s.contains(last)))
    };
    while !done(&got) {
        let left = deadline.saturating_duration_since(tokio::time::Instant::now());
        match c.next_within(left).await {
            Ok(Some(v)) if v["type"] == "message" => {
                let conv = v["conv"].as_str().unwrap().to_owned();
                got.entry(conv)
                    .or_default()
                    .push(v["seq"].as_u64().unwrap());
            }
            Ok(Some(_)) => {}
            Ok(None) | Err(()) => break,
        }
    }
    got
}

/// Adds one subscriber's view to the counts: lost (acknowledged, never received), repeated,
/// reordered (a seq below one seen before).
fn count_view(counts: &mut Counts, acks: &[Ack], got: &HashMap<String, Vec<u64>>) {
    for a in acks {
        if !got.get(&a.conv).is_some_and(|s| s.contains(&a.seq)) {
            counts.lost += 1;
        }
    }
    for seqs in got.values() {
        let mut seen = std::collections::HashSet::new();
        let mut top = 0;
        for &s in seqs {
            if !seen.insert(s) {
                counts.repeated += 1;
            } else if s < top {
                counts.reordered += 1;
            }
            top = top.max(s);
        }
    }
}

/// Everything acknowledged is in history, with its message id.
async fn check_history(http: &Http, token: &str, acks: &[Ack], counts: &mut Counts) {
    let mut by_conv: BTreeMap<&str, Vec<&Ack>> = BTreeMap::new();
    for a in acks {
        by_conv.entry(&a.conv).or_default().push(a);
    }
    for (conv, acks) in by_conv {
        let first = acks.iter().map(|a| a.seq).min().unwrap_or(1);
        let path = match conv.strip_prefix("room:") {
            Some(room) => format!("/v1/rooms/{room}/messages?after={}&limit=500", first - 1),
            None => format!("/v1/users/me/messages?after={}&limit=500", first - 1),
        };
        let (s, v) = http.get(&path, token).await;
        assert_eq!(s, 200, "{v}");
        let stored: HashMap<u64, String> = v["messages"]
            .as_array()
            .unwrap()
            .iter()
            .map(|m| {
                (
                    m["seq"].as_u64().unwrap(),
                    m["message_id"].as_str().unwrap().to_owned(),
                )
            })
            .collect();
        for a in acks {
            if stored.get(&a.seq) != Some(&a.message_id) {
                counts.missing_from_history += 1;
            }
        }
    }
}

/// The fixture: three nodes and an idle fourth, two rooms, a DM recipient whose stream is in
/// the lowest slot of its master (so that a one-slot reshard moves it).
struct Fixture {
    nodes: Vec<NodeProcess>,
    idle: NodeProcess,
    rooms: Vec<String>,
    reader: String,
    reader_token: String,
    owner_token: String,
    _dirs: Vec<tempfile::TempDir>,
}

/// `switchboard_bus_shard_messages_total` of a node, by shard.
async fn shard_counts(node: &NodeProcess) -> HashMap<String, f64> {
    let url = format!("{}/metrics", node.http.base);
    let text = node.http.client.get(url).send().await.unwrap();
    text.text()
        .await
        .unwrap()
        .lines()
        .filter_map(|l| l.strip_prefix("switchboard_bus_shard_messages_total{shard=\""))
        .filter_map(|l| {
            let (shard, rest) = l.split_once("\"}")?;
            Some((shard.to_owned(), rest.trim().parse().ok()?))
        })
        .collect()
}

impl Fixture {
    /// What the idle node took from the bus so far.
    async fn idle_bus_count(&self) -> f64 {
        let url = format!("{}/metrics", self.idle.http.base);
        let text = self.idle.http.client.get(url).send().await.unwrap();
        metric(
            &text.text().await.unwrap(),
            "switchboard_bus_messages_received_total",
        )
    }

    /// `low`: the lowest slot of some master.
    async fn start(seeds: &str, low: u16) -> Fixture {
        let dirs: Vec<tempfile::TempDir> = (0..4).map(|_| tempfile::tempdir().unwrap()).collect();
        let mut nodes = Vec::new();
        for (i, d) in dirs.iter().take(3).enumerate() {
            nodes.push(node(seeds, d, &format!("n{i}")).await);
        }
        let idle = node(seeds, &dirs[3], "idle").await;
        let reader = (0..200_000)
            .map(|i| format!("reader{i}"))
            .find(|u| key_slot(&format!("sb:{{user:{u}}}:log")) == low)
            .expect("a user id in the lowest slot");
        let reader_token = token_for(&nodes[0].http, &reader).await;
        let owner_token = token_for(&nodes[0].http, "owner").await;
        let mut rooms = Vec::new();
        for name in ["r-one", "r-two"] {
            rooms.push(nodes[1].http.room(&owner_token, name, "public").await);
        }
        Fixture {
            nodes,
            idle,
            rooms,
            reader,
            reader_token,
            owner_token,
            _dirs: dirs,
        }
    }

    /// One phase: subscribers on every node, six publishers (a room and a DM stream per node),
    /// `disrupt` once a third of the messages are acknowledged. Returns the counts.
    async fn phase(&self, name: &str, disrupt: impl FnOnce() + Send + 'static) -> Counts {
        let room_convs: Vec<String> = self.rooms.iter().map(|r| format!("room:{r}")).collect();
        let dm_conv = format!("user:{}", self.reader);
        let mut subs = Vec::new();
        for n in &self.nodes {
            let mut c = ws(n, &self.owner_token).await;
            for conv in &room_convs {
                let r = c
                    .request(json!({"type": "subscribe", "conv": conv}), 1)
                    .await;
                assert_eq!(r["type"], "subscribed", "{r}");
            }
            subs.push(c);
            subs.push(ws(n, &self.reader_token).await);
        }
        let idle_token = token_for(&self.idle.http, "idler").await;
        let _idle_conn = ws(&self.idle, &idle_token).await;
        let idle_before = self.idle_bus_count().await;
        let busy_before: f64 = shard_counts(&self.nodes[0]).await.values().sum();

        let progress = Arc::new(Mutex::new(0u64));
        let mut pubs = Vec::new();
        for (i, n) in self.nodes.iter().enumerate() {
            let room_pub = ws(n, &token_for(&n.http, &format!("{name}-rp{i}")).await).await;
            let dm_pub = ws(n, &token_for(&n.http, &format!("{name}-dp{i}")).await).await;
            let room = room_convs[i % 2].clone();
            pubs.push(tokio::spawn(publisher(
                room_pub,
                room,
                format!("{name}-r{i}"),
                progress.clone(),
            )));
            pubs.push(tokio::spawn(publisher(
                dm_pub,
                dm_conv.clone(),
                format!("{name}-d{i}"),
                progress.clone(),
            )));
        }
        let total = PER * 6;
        while *progress.lock().unwrap() < total / 3 {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        tokio::task::spawn_blocking(disrupt).await.unwrap();
        let mut acks = Vec::new();
        for p in pubs {
            acks.extend(p.await.unwrap());
        }

        let mut counts = Counts {
            acknowledged: acks.len(),
            slowest_answer: acks.iter().map(|a| a.slowest).max().unwrap_or_default(),
            ..Counts::default()
        };
        for (i, c) in subs.iter_mut().enumerate() {
            // Even: the owner's room subscriptions; odd: the reader's DM stream.
            let mine: Vec<Ack> = acks
                .iter()
                .filter(|a| (i % 2 == 0) == a.conv.starts_with("room:"))
                .cloned()
                .collect();
            let mut last: HashMap<String, u64> = HashMap::new();
            for a in &mine {
                let l = last.entry(a.conv.clone()).or_default();
                *l = (*l).max(a.seq);
            }
            let got = collect(c, &last).await;
            count_view(&mut counts, &mine, &got);
        }
        let (rooms, dms): (Vec<Ack>, Vec<Ack>) =
            acks.into_iter().partition(|a| a.conv.starts_with("room:"));
        check_history(&self.nodes[2].http, &self.owner_token, &rooms, &mut counts).await;
        check_history(&self.nodes[2].http, &self.reader_token, &dms, &mut counts).await;
        let idle_after = self.idle_bus_count().await;
        assert_eq!(
            idle_after, idle_before,
            "{name}: the idle node received conversation traffic"
        );
        // Per shard: the idle node took nothing from any shard; a busy node's counts name the
        // shards of its conversations.
        let idle_shards = shard_counts(&self.idle).await;
        assert!(
            idle_shards.values().all(|&n| n == 0.0),
            "{name}: the idle node took messages from shards: {idle_shards:?}"
        );
        // Not one count per acknowledged message: the counter counts what shards push
        // (`SMESSAGE`), and what is published while a moved slot's subscription is repaired
        // reaches the node through the stream's catch-up instead (a full run once counted 239
        // of 240). Every message arriving, in order, is what the counts above check; this one
        // checks that the counter counted this phase's traffic (it never goes down).
        let busy = shard_counts(&self.nodes[0]).await;
        let counted = busy.values().sum::<f64>() - busy_before;
        assert!(
            counted > 0.0,
            "{name}: a busy node's shard counts did not move: {busy:?}"
        );
        eprintln!("redis cluster {name}: node n0 took from shards {busy:?}");
        eprintln!("redis cluster {name}: {counts:?}");
        counts
    }
}

fn assert_clean(name: &str, c: &Counts) {
    // A shard without a master answers `unavailable` promptly; nothing hangs.
    assert!(
        c.slowest_answer < Duration::from_secs(10),
        "{name}: a publish waited {:?} for its answer",
        c.slowest_answer
    );
    assert_eq!(
        c.acknowledged as u64,
        PER * 6,
        "{name}: every publish acknowledged: {c:?}"
    );
    assert_eq!(
        (c.lost, c.repeated, c.reordered, c.missing_from_history),
        (0, 0, 0, 0),
        "{name}: {c:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reshard_then_master_failover_under_traffic_lose_nothing() {
    let cluster = Arc::new(Mutex::new(RedisCluster::start(1000)));
    let (seeds, low) = {
        let c = cluster.lock().unwrap();
        let low = c
            .masters()
            .into_iter()
            .filter_map(|m| c.first_slot(m))
            .min()
            .unwrap();
        (c.urls().join(","), low)
    };
    let f = Fixture::start(&seeds, low).await;

    // 1. Move the slot holding the reader's direct messages to another master.
    let dm_slot = key_slot(&format!("sb:{{user:{}}}:log", f.reader));
    let (from, to) = {
        let c = cluster.lock().unwrap();
        let from = c.master_of_slot(dm_slot).unwrap();
        let to = c.masters().into_iter().find(|&m| m != from).unwrap();
        (from, to)
    };
    let c2 = cluster.clone();
    let counts = f
        .phase("reshard", move || {
            let c = c2.lock().unwrap();
            c.reshard(from, to, 1).expect("reshard");
        })
        .await;
    assert_eq!(
        cluster.lock().unwrap().master_of_slot(dm_slot),
        Some(to),
        "the slot moved"
    );
    assert_clean("reshard", &counts);

    // 2. SIGKILL the master of the first room; its replica takes over.
    let room_slot = key_slot(&format!("sb:{{room:{}}}:log", f.rooms[0]));
    let victim = cluster.lock().unwrap().master_of_slot(room_slot).unwrap();
    let c2 = cluster.clone();
    let counts = f
        .phase("failover", move || {
            let mut c = c2.lock().unwrap();
            c.kill(victim);
            // The replica takes over after the node timeout; then the crashed process is
            // started again (as an orchestrator would) and rejoins as its replica, so that the
            // shard can replicate (and acknowledge) again.
            let deadline = Instant::now() + Duration::from_secs(20);
            while c.master_of_slot(room_slot).is_none_or(|m| m == victim) {
                assert!(Instant::now() < deadline, "no failover within 20 s");
                std::thread::sleep(Duration::from_millis(50));
            }
            c.restart(victim).expect("the crashed master rejoins");
        })
        .await;
    let now = cluster.lock().unwrap().master_of_slot(room_slot);
    assert!(
        now.is_some() && now != Some(victim),
        "a replica took over: {now:?}"
    );
    assert_clean("failover", &counts);
}
