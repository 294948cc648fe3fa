//! The coordinator's side of worker processes: spawning them (this same binary with `--worker`),
//! stepping them through phases, following their progress and collecting their results.

use crate::error::{BenchError, Result};
use crate::worker::{Event, Plan, WorkerResult};
use std::process::Stdio;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::time::Duration;
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::process::{Child, ChildStdin, Command};
use tokio::sync::mpsc;

/// Running worker processes.
pub struct Workers {
    children: Vec<Child>,
    stdins: Vec<ChildStdin>,
    events: mpsc::UnboundedReceiver<(usize, Option<Event>)>,
    progress: Arc<Vec<AtomicU64>>,
}

impl Workers {
    /// Starts one worker per plan and hands each its plan.
    pub async fn spawn(plans: Vec<Plan>) -> Result<Workers> {
        let exe = std::env::current_exe().map_err(|e| BenchError::io("current_exe", e))?;
        let (tx, events) = mpsc::unbounded_channel();
        let progress: Arc<Vec<AtomicU64>> =
            Arc::new((0..plans.len()).map(|_| AtomicU64::new(0)).collect());
        let mut children = Vec::new();
        let mut stdins = Vec::new();
        for (i, plan) in plans.iter().enumerate() {
            let mut child = Command::new(&exe)
                .arg("--worker")
                .stdin(Stdio::piped())
                .stdout(Stdio::piped())
                .stderr(Stdio::inherit())
                .kill_on_drop(true)
                .spawn()
                .map_err(|e| BenchError::io("spawning a worker", e))?;
            let mut stdin = child.stdin.take().expect("piped stdin");
            let stdout = child.stdout.take().expect("piped stdout");
            let mut line = serde_json::to_vec(plan).expect("plans serialize");
            line.push(b'\n');
            stdin
                .write_all(&line)
                .await
                .map_err(|e| BenchError::io("sending a worker its plan", e))?;
            let (tx, progress) = (tx.clone(), progress.clone());
            tokio::spawn(async move {
                let mut lines = BufReader::new(stdout).lines();
                while let Ok(Some(l)) = lines.next_line().await {
                    match serde_json::from_str::<Event>(&l) {
                        Ok(Event::Progress { deliveries }) => {
                            progress[i].store(deliveries, Relaxed)
                        }
                        Ok(ev) => {
                            let _ = tx.send((i, Some(ev)));
                        }
                        Err(_) => eprintln!("worker {i}: {l}"),
                    }
                }
                let _ = tx.send((i, None));
            });
            children.push(child);
            stdins.push(stdin);
        }
        Ok(Workers {
            children,
            stdins,
            events,
            progress,
        })
    }

    /// Number of workers.
    pub fn len(&self) -> usize {
        self.children.len()
    }

    /// Sends a phase command to every worker.
    pub async fn command(&mut self, cmd: &str) -> Result<()> {
        for (i, s) in self.stdins.iter_mut().enumerate() {
            s.write_all(format!("{cmd}\n").as_bytes())
                .await
                .map_err(|e| BenchError::io(format!("command to worker {i}"), e))?;
            s.flush()
                .await
                .map_err(|e| BenchError::io(format!("command to worker {i}"), e))?;
        }
        Ok(())
    }

    /// Waits until every worker has sent an event that `pick` accepts; returns them in worker
    /// order.
    pub async fn collect<T>(
        &mut self,
        what: &str,
        timeout: Duration,
        pick: impl Fn(Event) -> Option<T>,
    ) -> Result<Vec<T>> {
        let n = self.len();
        let mut got: Vec<Option<T>> = (0..n).map(|_| None).collect();
        let deadline = tokio::time::Instant::now() + timeout;
        while got.iter().any(Option::is_none) {
            let ev = tokio::time::timeout_at(deadline, self.events.recv())
                .await
                .map_err(|_| BenchError::Run(format!("workers: no {what} within {timeout:?}")))?;
            match ev {
                Some((i, Some(ev))) => {
                    if let Some(t) = pick(ev) {
                        got[i] = Some(t);
                    }
                }
                Some((i, None)) => {
                    if got[i].is_none() {
                        return Err(BenchError::Run(format!(
                            "worker {i} exited before {what} (see its messages above)"
                        )));
                    }
                }
                None => return Err(BenchError::Run("workers gone".into())),
            }
        }
        Ok(got.into_iter().map(|t| t.expect("all present")).collect())
    }

    /// Deliveries counted so far by all workers (updated every 100 ms during `run`).
    pub fn deliveries(&self) -> u64 {
        self.progress.iter().map(|p| p.load(Relaxed)).sum()
    }

    /// Tells the workers to stop and returns their final figures.
    pub async fn stop(mut self) -> Result<Vec<WorkerResult>> {
        self.command("stop").await?;
        let results = self
            .collect("results", Duration::from_secs(60), |ev| match ev {
                Event::Result(r) => Some(*r),
                _ => None,
            })
            .await?;
        for c in &mut self.children {
            let _ = tokio::time::timeout(Duration::from_secs(10), c.wait()).await;
        }
        Ok(results)
    }
}

/// How long `drain` waits with no new delivery before it gives up on the rest.
const DRAIN_QUIET: Duration = Duration::from_secs(2);
/// The longest `drain` waits in all.
const DRAIN_MAX: Duration = Duration::from_secs(30);

/// Waits until `expected` deliveries were counted, or none arrived for [`DRAIN_QUIET`], or
/// [`DRAIN_MAX`] passed. Returns the time from `since` to the last change seen (or to
/// completion).
pub async fn drain(workers: &Workers, expected: u64, since: tokio::time::Instant) -> Duration {
    let (quiet, max) = (DRAIN_QUIET, DRAIN_MAX);
    let start = tokio::time::Instant::now();
    let mut last = workers.deliveries();
    let mut last_change = start;
    loop {
        let d = workers.deliveries();
        let now = tokio::time::Instant::now();
        if d != last {
            last = d;
            last_change = now;
        }
        if d >= expected {
            return now.duration_since(since);
        }
        if now.duration_since(last_change) >= quiet || now.duration_since(start) >= max {
            return last_change.duration_since(since);
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}
