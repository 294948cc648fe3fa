//! A measurement, not a check (ignored; run alone): Redis's own CPU per message on a cluster
//! shard, with replication confirmed (`WAIT 1`) as in production. Redis's cost does not depend
//! on how this client was built, so a debug run measures it too.
//!
//! `cargo test -p switchboard-backend-redis --test redis_cluster -- --ignored --nocapture measure`

use crate::common::{connect, req};
use std::sync::Arc;
use std::time::Instant;
use switchboard_conformance::RecordingSink;
use switchboard_core::backend::{AppendRequest, Broker};
use switchboard_proto::Conv;
use switchboard_testkit::RedisCluster;

/// Seconds of CPU (user + system) each master used so far, and its port.
fn cpu(cluster: &RedisCluster) -> Vec<(u16, f64)> {
    cluster
        .masters()
        .into_iter()
        .map(|p| {
            let info = cluster.run(p, &["INFO", "cpu"]);
            let field = |name: &str| {
                info.lines()
                    .find_map(|l| l.strip_prefix(name))
                    .and_then(|v| v.trim().parse::<f64>().ok())
                    .unwrap_or(0.0)
            };
            (p, field("used_cpu_user:") + field("used_cpu_sys:"))
        })
        .collect()
}

/// Commands every master ran so far.
fn calls(cluster: &RedisCluster) -> u64 {
    cluster
        .masters()
        .into_iter()
        .map(|p| {
            cluster
                .run(p, &["INFO", "commandstats"])
                .lines()
                .filter_map(|l| l.split("calls=").nth(1))
                .filter_map(|v| v.split(',').next()?.parse::<u64>().ok())
                .sum::<u64>()
        })
        .sum()
}

async fn run(label: &str, cluster: &RedisCluster, requests: Vec<AppendRequest>) {
    run_under(label, cluster, requests, "").await
}

/// [`run`] under `prefix` (empty: a fresh one).
async fn run_under(
    label: &str,
    cluster: &RedisCluster,
    requests: Vec<AppendRequest>,
    prefix: &str,
) {
    let mut config = crate::config(cluster);
    if !prefix.is_empty() {
        config.key_prefix = prefix.into();
    }
    let b = connect(config, RecordingSink::new().as_sink()).await;
    let n = requests.len();
    let (cpu0, calls0, t0) = (cpu(cluster), calls(cluster), Instant::now());
    let mut tasks = Vec::new();
    let per = requests.len().div_ceil(16);
    let requests: Vec<Vec<AppendRequest>> = requests.chunks(per).map(<[_]>::to_vec).collect();
    for chunk in requests {
        let b: Arc<_> = b.clone();
        tasks.push(tokio::spawn(async move {
            for r in chunk {
                b.append(r).await.expect("append");
            }
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
    let took = t0.elapsed();
    let (cpu1, calls1) = (cpu(cluster), calls(cluster));
    let used: f64 = cpu1
        .iter()
        .zip(&cpu0)
        .map(|((_, after), (_, before))| after - before)
        .sum();
    // The measuring itself (INFO, redis-cli) adds a few calls: negligible against thousands.
    println!(
        "{label}: {n} appends in {took:?} ({:.0}/s); Redis masters' CPU {:.1} µs per message, {:.1} commands per message",
        n as f64 / took.as_secs_f64(),
        used * 1e6 / n as f64,
        (calls1 - calls0) as f64 / n as f64
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "a measurement: run alone, see the module doc"]
async fn measure_redis_cost_per_message() {
    let cluster = crate::shared();
    let rooms: Vec<AppendRequest> = (0..4000)
        .map(|i| req(&Conv::room(&format!("m{}", i % 100)), i))
        .collect();
    run("rooms", cluster, rooms).await;
    let dms: Vec<AppendRequest> = (0..2000)
        .map(|i| AppendRequest {
            to: Some(format!("u{}", i % 200)),
            copy_to: Some(Conv::user("u_1")),
            ..req(&Conv::user(&format!("u{}", i % 200)), i)
        })
        .collect();
    run("direct messages", cluster, dms).await;
    // The same room traffic with 4 nodes subscribed to every room: what each receiving node
    // adds on the shard (one shard-channel write per message per node).
    let mut nodes = Vec::new();
    for _ in 0..4 {
        let mut c = crate::config(cluster);
        c.key_prefix = "sb:measured:".into();
        let b = connect(c, RecordingSink::new().as_sink()).await;
        for r in 0..100 {
            b.subscribe(&Conv::room(&format!("m{r}"))).await.unwrap();
        }
        nodes.push(b);
    }
    let rooms: Vec<AppendRequest> = (0..4000)
        .map(|i| req(&Conv::room(&format!("m{}", i % 100)), i))
        .collect();
    run_under("rooms, 4 nodes receiving", cluster, rooms, "sb:measured:").await;
}
