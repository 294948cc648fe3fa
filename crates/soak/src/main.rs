//! `switchboard-soak`: the client side of the chaos soak (`scripts/soak.sh`). It makes its
//! users and rooms through the server API, connects many Rust SDK clients (WebSocket,
//! long-poll and TCP in turn) spread over the nodes' dispatchers, publishes room messages and
//! direct messages at a steady rate for the given time, then stops publishing and waits for
//! every acknowledged message to reach every recipient (or the settle timeout), and prints
//! its figures as `name: value` lines. It exits 1 when a message was lost, duplicated or out
//! of order. The chaos itself (kills, drains, Redis restarts) is the script's.
//!
//! `switchboard-soak ports N` prints N free 127.0.0.1 ports, for the script.

mod clients;
mod ledger;
mod publish;
mod report;
mod setup;

use clap::{Parser, Subcommand};
use clients::{SoakClient, lock};
use publish::{Shape, Tally};
use setup::{Api, Plan};
use std::collections::HashMap;
use std::process::ExitCode;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};
use tokio::task::JoinSet;

/// Command line.
#[derive(Parser, Debug)]
#[command(
    name = "switchboard-soak",
    about = "Chaos soak clients (see scripts/soak.sh)"
)]
struct Cli {
    #[command(subcommand)]
    cmd: Cmd,
}

/// What to do.
#[derive(Subcommand, Debug)]
enum Cmd {
    /// Run the clients against running nodes and print the figures.
    Run(RunArgs),
    /// Print N free 127.0.0.1 ports, one a line.
    Ports {
        /// How many.
        n: usize,
    },
}

/// Options of `run`.
#[derive(clap::Args, Debug)]
struct RunArgs {
    /// Base URLs of the nodes (dispatchers and APIs), comma separated.
    #[arg(long, value_delimiter = ',', required = true)]
    nodes: Vec<String>,
    /// The server API key.
    #[arg(long)]
    api_key: String,
    /// SDK clients.
    #[arg(long, default_value_t = 1000)]
    clients: usize,
    /// Rooms each client is in.
    #[arg(long, default_value_t = 2)]
    rooms_per_client: usize,
    /// Members per room (about).
    #[arg(long, default_value_t = 20)]
    room_size: usize,
    /// Messages per second over all clients.
    #[arg(long, default_value_t = 50.0)]
    rate: f64,
    /// Percent of messages that are direct messages.
    #[arg(long, default_value_t = 30)]
    dm_percent: usize,
    /// Seconds of publishing.
    #[arg(long, default_value_t = 600)]
    seconds: u64,
    /// Longest wait, after publishing stopped, for every message to arrive everywhere.
    #[arg(long, default_value_t = 90)]
    settle_seconds: u64,
    /// Clients connecting at once during the start.
    #[arg(long, default_value_t = 50)]
    connect_concurrency: usize,
}

#[tokio::main]
async fn main() -> ExitCode {
    match Cli::parse().cmd {
        Cmd::Ports { n } => {
            // Held together, so the N ports are distinct.
            let held: Vec<_> = (0..n)
                .filter_map(|_| std::net::TcpListener::bind("127.0.0.1:0").ok())
                .collect();
            for l in &held {
                if let Ok(a) = l.local_addr() {
                    println!("{}", a.port());
                }
            }
            ExitCode::SUCCESS
        }
        Cmd::Run(args) => match run(args).await {
            Ok(true) => ExitCode::SUCCESS,
            Ok(false) => ExitCode::from(1),
            Err(e) => {
                eprintln!("soak: {e}");
                ExitCode::from(2)
            }
        },
    }
}

/// Users, rooms and clients: the clients started, the room members, `room:<id>` → index.
async fn prepare(
    args: &RunArgs,
) -> Result<(Vec<SoakClient>, Vec<Vec<usize>>, HashMap<String, usize>), String> {
    let api = Arc::new(Api::new(&args.api_key));
    let nodes = &args.nodes;
    let run_id = std::process::id();
    let mut users = Vec::with_capacity(args.clients);
    for i in 0..args.clients {
        users.push(
            api.user(&nodes[i % nodes.len()], &format!("soak-{run_id}-{i}"))
                .await?,
        );
    }
    let count = Plan::room_count(args.clients, args.rooms_per_client, args.room_size);
    let mut rooms = Vec::with_capacity(count);
    for r in 0..count {
        let owner = &users[r % users.len()];
        rooms.push(
            api.room(&nodes[r % nodes.len()], owner, &format!("soak-{r}"))
                .await?,
        );
    }
    let plan = Plan {
        rooms,
        rooms_per_client: args.rooms_per_client,
    };
    let members: Vec<Vec<usize>> = (0..count)
        .map(|r| plan.members_of(r, args.clients))
        .collect();
    let index: HashMap<String, usize> = plan
        .rooms
        .iter()
        .enumerate()
        .map(|(r, c)| (c.clone(), r))
        .collect();
    eprintln!(
        "soak: {} users, {count} rooms; connecting {} clients",
        users.len(),
        args.clients
    );
    let mut started: Vec<Option<SoakClient>> = (0..args.clients).map(|_| None).collect();
    let mut tasks = JoinSet::new();
    for (i, user) in users.into_iter().enumerate() {
        if tasks.len() >= args.connect_concurrency.max(1)
            && let Some(done) = tasks.join_next().await
        {
            let (j, c) = done.map_err(|e| e.to_string())?;
            started[j] = Some(c?);
        }
        // Not i % 3: that is the transport, and each transport should meet every dispatcher.
        let dispatcher = nodes[(i / 3) % nodes.len()].clone();
        let rooms: Vec<String> = plan
            .rooms_of(i)
            .into_iter()
            .map(|r| plan.rooms[r].clone())
            .collect();
        tasks.spawn(async move { (i, clients::start(i, &dispatcher, user, rooms).await) });
    }
    while let Some(done) = tasks.join_next().await {
        let (j, c) = done.map_err(|e| e.to_string())?;
        started[j] = Some(c?);
    }
    let clients = started.into_iter().flatten().collect();
    Ok((clients, members, index))
}

/// The whole run; `Ok(false)` when a delivery promise was broken.
async fn run(args: RunArgs) -> Result<bool, String> {
    // Each client holds a few sockets (its transport, its dispatcher connection pool).
    let _ = rlimit::increase_nofile_limit(20_000);
    let t0 = Instant::now();
    let (clients, members, index) = prepare(&args).await?;
    let clients = Arc::new(clients);
    eprintln!(
        "soak: {} clients up in {:.1} s",
        clients.len(),
        t0.elapsed().as_secs_f64()
    );
    let tally = Arc::new(Tally::default());
    let settle = Duration::from_secs(args.settle_seconds);
    let duration = Duration::from_secs(args.seconds);
    let shape = Shape {
        rate: args.rate,
        dm_percent: args.dm_percent.min(100),
        duration,
        give_up_at: Instant::now() + duration + settle / 2,
    };
    // The script starts its chaos on this line.
    eprintln!("soak: publishing for {} s", args.seconds);
    let progress = tokio::spawn(progress(clients.clone(), tally.clone()));
    publish::run(clients.clone(), Arc::new(index), shape, tally.clone()).await;
    eprintln!("soak: publishing stopped; settling");
    let settle_from = Instant::now();
    let deadline = settle_from + settle;
    let figures = loop {
        let acked = lock(&tally.acked).clone();
        let f = report::count(&clients, &acked, &members);
        if f.lost == 0 || Instant::now() >= deadline {
            break f;
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
    };
    progress.abort();
    for ((c, conv), (n, first)) in figures.lost_by.iter().take(20) {
        let client = &clients[*c];
        let s = lock(&client.seen);
        eprintln!(
            "soak: client {c} ({:?}) missed {n} of {conv} from seq {first}; SDK position {:?}, \
             on {:?} (last connected to {:?}), {} reconnects, last reason {:?}, ended {:?}",
            clients::transport_of(*c),
            client.client.position(conv),
            client.client.node_id(),
            s.last_node,
            s.reconnects_ms.len(),
            s.last_reason,
            s.ended
        );
    }
    print!(
        "{}",
        report::lines(
            &figures,
            tally.retries.load(Ordering::Relaxed),
            tally.failed.load(Ordering::Relaxed),
            settle_from.elapsed().as_millis() as u64,
        )
    );
    let ok = !figures.failed();
    // The script reads the nodes' memory once the figures are out, with the clients still
    // connected: give it a moment before closing them.
    use std::io::Write as _;
    let _ = std::io::stdout().flush();
    eprintln!("soak: figures printed; closing the clients in 3 s");
    tokio::time::sleep(Duration::from_secs(3)).await;
    let closing: Vec<_> = clients.iter().map(|c| c.client.clone()).collect();
    let _ = tokio::time::timeout(Duration::from_secs(10), async {
        let mut t = JoinSet::new();
        for c in closing {
            t.spawn(c.close());
        }
        while t.join_next().await.is_some() {}
    })
    .await;
    Ok(ok)
}

/// A line every 30 s: acknowledged so far, reconnects, clients connected.
async fn progress(clients: Arc<Vec<SoakClient>>, tally: Arc<Tally>) {
    let start = Instant::now();
    loop {
        tokio::time::sleep(Duration::from_secs(30)).await;
        let acked = lock(&tally.acked).len();
        let reconnects: usize = clients
            .iter()
            .map(|c| lock(&c.seen).reconnects_ms.len())
            .sum();
        let connected = clients
            .iter()
            .filter(|c| c.client.node_id().is_some())
            .count();
        eprintln!(
            "soak: {:>5} s acknowledged {acked} reconnects {reconnects} connected {connected}/{} retries {}",
            start.elapsed().as_secs(),
            clients.len(),
            tally.retries.load(Ordering::Relaxed)
        );
    }
}
