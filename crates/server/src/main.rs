//! The `switchboard` command: `serve` runs a node, `chat` is a terminal chat client.

use clap::{Parser, Subcommand};
use switchboard_server::{ServeArgs, chat};

/// Switchboard: real-time messaging infrastructure.
#[derive(Parser)]
#[command(name = "switchboard", version, about = "Switchboard: real-time messaging infrastructure (server and demo client)", long_about = None)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run a node (gateway, api and dispatcher roles by default) on the embedded backend.
    Serve(Box<ServeArgs>),
    /// Chat in a room from the terminal: registers or logs in, joins, prints, sends lines.
    Chat(chat::ChatArgs),
}

fn main() -> std::process::ExitCode {
    let cli = Cli::parse();
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(r) => r,
        Err(e) => {
            eprintln!("switchboard: cannot start the runtime: {e}");
            return std::process::ExitCode::from(1);
        }
    };
    match cli.command {
        Command::Serve(args) => runtime.block_on(serve(*args)),
        Command::Chat(args) => runtime.block_on(chat::run(args)),
    }
}

async fn serve(args: ServeArgs) -> std::process::ExitCode {
    let config = match args.resolve() {
        Ok(c) => c,
        Err(e) => {
            eprintln!("switchboard: {e}");
            return std::process::ExitCode::from(2);
        }
    };
    init_logging(config.json_logs);
    // Before any socket: every connection, and every refusal being written, is a descriptor.
    switchboard_server::raise_open_files_limit();
    // `resolve` refused `--durability process` with Redis: only the embedded backend gets here.
    let relaxed = config.durability != switchboard_backend_embedded::Durability::Disk;
    let server = match switchboard_server::start(config).await {
        Ok(s) => s,
        Err(e) => {
            eprintln!("switchboard: {e}");
            return std::process::ExitCode::from(1);
        }
    };
    if relaxed {
        println!(
            "switchboard: --durability process: published messages are answered before they are \
             fsynced (within a second); they survive the node process dying, and a crash of the \
             machine can lose about the last second of them"
        );
    }
    // The line operators and tests wait for.
    let id = &server.node.id;
    match server.tcp_addr {
        Some(tcp) => println!(
            "switchboard node {id} listening on {} (tcp {tcp})",
            server.addr
        ),
        None => println!("switchboard node {id} listening on {}", server.addr),
    }
    // Either a signal, or a drain asked through the server API (which stops the node itself).
    let node = server.node.clone();
    tokio::select! {
        _ = wait_for_signal() => {}
        _ = node.drain_requested() => {}
    }
    server.shutdown().await;
    std::process::ExitCode::SUCCESS
}

fn init_logging(json: bool) {
    let mut filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    // The Redis client logs every reconnect attempt to a dead cluster node as a warning, many a
    // second during a failover; the backend reports what matters. `RUST_LOG=redis=...` wins.
    if !std::env::var("RUST_LOG").is_ok_and(|v| v.contains("redis="))
        && let Ok(quiet) = "redis=error".parse()
    {
        filter = filter.add_directive(quiet);
    }
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    if json {
        builder.json().init();
    } else {
        builder.init();
    }
}

async fn wait_for_signal() {
    use tokio::signal::unix::{SignalKind, signal};
    let mut term = signal(SignalKind::terminate()).expect("SIGTERM handler");
    let mut int = signal(SignalKind::interrupt()).expect("SIGINT handler");
    tokio::select! {
        _ = term.recv() => tracing::info!("SIGTERM received"),
        _ = int.recv() => tracing::info!("SIGINT received"),
    }
}
