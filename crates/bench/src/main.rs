//! `switchboard-bench`: the load generator of the Switchboard benchmark suite.
//!
//! Each subcommand is one scenario (idle connections, fan-out, many rooms, direct messages, one
//! connection's pipelined publishes, a connection storm, cluster routing cost, dispatch), bounded in connections, rate and time,
//! aimed only at 127.0.0.0/8. Client connections live in worker processes (this binary
//! re-executed with `--worker`) so that runs can exceed the per-process open-file limit; the
//! coordinator sets up users and rooms, publishes, reads the server's CPU and RSS from /proc,
//! and merges the workers' HDR histograms into one report (Markdown and JSON). `--protocol
//! socketio` runs the same scenarios against the Socket.IO peer in `bench/socketio/`.

mod cli;
mod cluster_table;
mod compare;
mod coord;
mod error;
mod floor_table;
mod http;
mod latency;
mod procfs;
mod proto;
mod report;
mod rng;
mod scenario;
mod side_by_side_table;
mod target;
mod targets_table;
mod worker;
mod ws;

use clap::Parser;
use cli::{Cli, Command};
use std::process::ExitCode;

fn main() -> ExitCode {
    let cli = Cli::parse();
    if cli.worker {
        return worker::main();
    }
    if let Some(spec) = &cli.floor_reader {
        return match scenario::floor::reader(spec) {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("switchboard-bench floor reader: {e}");
                ExitCode::from(1)
            }
        };
    }
    if let Some(spec) = &cli.msg_floor_sender {
        return match scenario::msg_sender::run(spec) {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("switchboard-bench msg-floor sender: {e}");
                ExitCode::from(1)
            }
        };
    }
    let Some(command) = cli.command else {
        eprintln!("switchboard-bench: name a scenario (see --help)");
        return ExitCode::from(2);
    };
    match command {
        Command::Report(a) => {
            return match compare::render(&a.dir) {
                Ok(s) => {
                    print!("{s}");
                    ExitCode::SUCCESS
                }
                Err(e) => {
                    eprintln!("switchboard-bench: {e}");
                    ExitCode::from(1)
                }
            };
        }
        Command::Floor(a) => {
            return match scenario::floor::run(a) {
                Ok(true) => ExitCode::SUCCESS,
                Ok(false) => ExitCode::from(1),
                Err(e) => {
                    eprintln!("switchboard-bench: {e}");
                    ExitCode::from(1)
                }
            };
        }
        Command::MsgFloor(a) => {
            return match scenario::msg_floor::run(a) {
                Ok(true) => ExitCode::SUCCESS,
                Ok(false) => ExitCode::from(1),
                Err(e) => {
                    eprintln!("switchboard-bench: {e}");
                    ExitCode::from(1)
                }
            };
        }
        Command::FreePort => {
            return match std::net::TcpListener::bind("127.0.0.1:0").and_then(|l| l.local_addr()) {
                Ok(a) => {
                    println!("{}", a.port());
                    ExitCode::SUCCESS
                }
                Err(e) => {
                    eprintln!("switchboard-bench: {e}");
                    ExitCode::from(1)
                }
            };
        }
        _ => {}
    }
    let rt = match tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("switchboard-bench: runtime: {e}");
            return ExitCode::from(1);
        }
    };
    let result = rt.block_on(async move {
        match command {
            Command::Idle(a) => scenario::idle::run(a).await,
            Command::Fanout(a) => scenario::rooms::fanout(a).await,
            Command::Rooms(a) => scenario::rooms::rooms(a).await,
            Command::Dm(a) => scenario::dm::run(a).await,
            Command::Pipeline(a) => scenario::pipeline::run(a).await,
            Command::Storm(a) => scenario::storm::run(a).await,
            Command::Cluster(a) => scenario::cluster::run(a).await,
            Command::Dispatch(a) => scenario::dispatch::run(a).await,
            Command::Report(_) | Command::FreePort | Command::Floor(_) | Command::MsgFloor(_) => {
                unreachable!("handled above")
            }
        }
    });
    match result {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => ExitCode::from(1),
        Err(e) => {
            eprintln!("switchboard-bench: {e}");
            ExitCode::from(if matches!(e, error::BenchError::Config(_)) {
                2
            } else {
                1
            })
        }
    }
}
