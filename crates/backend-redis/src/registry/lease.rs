//! This node's lease: taken at start, renewed every `lease / 3` (written again with every entry
//! from the mirror if it was gone), released at close.

use super::sweep::sweep_node;
use super::{BATCH, Mirror, apply};
use crate::Shared;
use crate::batch::Batch;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;
use switchboard_core::backend::BackendError;

/// Writes the lease (and adds the node to the node set).
async fn write_lease(s: &Shared) -> Result<(), BackendError> {
    let me = &s.config.node_id;
    let mut p = Batch::new();
    p.atomic()
        .cmd("SET")
        .arg(s.keys.node(me))
        .arg(announcement(s))
        .arg("PX")
        .arg(lease_ms(s))
        .ignore()
        .cmd("SADD")
        .arg(s.keys.nodes())
        .arg(me)
        .ignore();
    s.redis.batch::<()>("taking the node lease", &p).await
}

fn lease_ms(s: &Shared) -> u64 {
    u64::try_from(s.config.lease.as_millis())
        .unwrap_or(u64::MAX)
        .max(1)
}

/// At start: clears what an earlier run with this node id left behind (its connections died
/// with it), then takes the lease.
pub(crate) async fn take_lease(s: &Shared) -> Result<(), BackendError> {
    let me = &s.config.node_id;
    let mut c = redis::cmd("EXISTS");
    c.arg(s.keys.node(me));
    let held: bool = s.redis.query("checking the node lease", &c).await?;
    if held {
        tracing::warn!(
            node = %me,
            "this node id already holds a lease: an earlier run that did not close, or another \
             process with the same id (node ids must be unique); taking it over"
        );
    }
    sweep_node(s, me, true).await?;
    write_lease(s).await?;
    s.health.lease_ok.store(true, Ordering::SeqCst);
    Ok(())
}

/// Renews the lease; if it was gone, takes it again and writes every entry from the mirror.
async fn renew(s: &Shared) -> Result<(), BackendError> {
    let mut c = redis::cmd("SET");
    c.arg(s.keys.node(&s.config.node_id))
        .arg(announcement(s))
        .arg("PX")
        .arg(lease_ms(s))
        .arg("XX");
    let renewed: Option<String> = s.redis.query("renewing the node lease", &c).await?;
    if renewed.is_some() {
        return Ok(());
    }
    tracing::warn!(
        node = %s.config.node_id,
        "the node lease was gone (Redis restarted or was unreachable for a whole lease); \
         registering this node's connections again"
    );
    write_lease(s).await?;
    let entries = s.mirror.lock().entries();
    for chunk in entries.chunks(BATCH) {
        apply(s, chunk, true).await?;
    }
    Ok(())
}

/// Retries removals that failed earlier.
async fn flush_pending(s: &Shared) {
    let pending = std::mem::take(&mut s.mirror.lock().pending);
    if pending.is_empty() {
        return;
    }
    if apply(s, &pending, false).await.is_err() {
        s.mirror.lock().pending.extend(pending);
    }
}

/// Renews the lease every `lease / 3` and keeps the health flag. After repeated failures it also
/// replaces the command connection, in case that one is stuck.
pub(crate) async fn lease_task(s: Arc<Shared>) {
    let period = (s.config.lease / 3).max(Duration::from_millis(50));
    let mut tick = tokio::time::interval_at(tokio::time::Instant::now() + period, period);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    // Failures in a row, and since the command connection was last replaced.
    let (mut failures, mut since_refresh) = (0u32, 0u32);
    loop {
        tokio::select! {
            _ = s.cancel.cancelled() => return,
            _ = tick.tick() => {}
        }
        if s.renewing_stopped.load(Ordering::SeqCst) {
            continue;
        }
        match renew(&s).await {
            Ok(()) => {
                if failures > 0 {
                    tracing::info!(url = %s.redis.url(), "Redis reachable again");
                }
                (failures, since_refresh) = (0, 0);
                s.health.lease_ok.store(true, Ordering::SeqCst);
                flush_pending(&s).await;
            }
            Err(e) => {
                if failures == 0 {
                    tracing::warn!(error = %e, "renewing the node lease failed");
                }
                failures += 1;
                since_refresh += 1;
                s.health.lease_ok.store(false, Ordering::SeqCst);
                if since_refresh >= 3 {
                    since_refresh = 0;
                    s.redis.refresh();
                }
            }
        }
    }
}

/// This node's lease value: its announcement's JSON.
fn announcement(s: &Shared) -> String {
    serde_json::to_string(&s.config.announce).expect("a node announcement serializes")
}

/// At close: removes this node's entries and lease, so that its connections stop counting at
/// once instead of after the lease.
pub(crate) async fn release_lease(s: &Shared) {
    let me = &s.config.node_id;
    let result = async {
        sweep_node(s, me, true).await?;
        let mut p = Batch::new();
        p.atomic()
            .cmd("DEL")
            .arg(s.keys.node(me))
            .ignore()
            .cmd("SREM")
            .arg(s.keys.nodes())
            .arg(me)
            .ignore();
        s.redis.batch::<()>("releasing the node lease", &p).await
    }
    .await;
    if let Err(e) = result {
        tracing::warn!(error = %e, "releasing the node lease failed; it expires on its own");
    }
    *s.mirror.lock() = Mirror::default();
}
