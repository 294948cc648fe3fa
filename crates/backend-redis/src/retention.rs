//! Trimming history by age. (Trimming by count is done by the append itself: `XADD MAXLEN`.)
//!
//! A sorted set `Pconvs` lists the conversations that may hold messages older than the limit,
//! scored by (about) the time of their oldest message. Appends add their conversation (`ZADD NX`,
//! outside the append script since the set lives in another slot; at most once per conversation
//! per node every `min(60 s, max_age / 2)`). Every minute each node takes the conversations whose
//! score is past the cutoff, a batch at a time, and trims their streams with a script that reads
//! the `t` field of the oldest entries and `XTRIM MINID`s the old ones.
//!
//! A conversation is removed from the set before its stream is trimmed and added back with its
//! new oldest time if anything is left; so an append racing with the trim is never left out of
//! the set. (An appender skips the `ZADD` only if it added the conversation less than `max_age /
//! 2` ago, and then the stream holds that young message and is not emptied.)

use crate::batch::Batch;
use crate::{Shared, now_ms};
use parking_lot::Mutex;
use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};
use switchboard_core::backend::BackendError;
use switchboard_proto::Conv;

/// How often the trimming pass runs.
const INTERVAL: Duration = Duration::from_secs(60);
/// Conversations per batch.
const BATCH: usize = 100;
/// Batches per pass at most (the rest waits for the next pass).
const MAX_BATCHES: usize = 100;
/// Entries one trim script call may remove.
const TRIM_BUDGET: u32 = 1000;
/// Above this many noted conversations the memory of them is emptied (it refills).
const NOTED_MAX: usize = 100_000;

/// Which conversations this node added to the set recently.
pub(crate) struct Noted {
    /// 0 when there is no age limit (nothing to do).
    max_age_ms: u64,
    /// How long an addition is trusted.
    ttl: Duration,
    recent: Mutex<HashMap<Conv, Instant>>,
}

impl Noted {
    /// For an age limit of `max_age_ms` (0 = none).
    pub(crate) fn new(max_age_ms: u64) -> Noted {
        Noted {
            max_age_ms,
            ttl: Duration::from_millis(max_age_ms / 2).min(INTERVAL),
            recent: Mutex::new(HashMap::new()),
        }
    }
}

/// After an append of a message at `ts` to `conv`: makes sure `conv` is in the set. Failures are
/// logged, never returned: the message is stored; at worst it is trimmed late.
pub(crate) async fn note(s: &Shared, conv: &Conv, ts: u64) {
    let n = &s.retention;
    if n.max_age_ms == 0 {
        return;
    }
    {
        let mut recent = n.recent.lock();
        if recent.get(conv).is_some_and(|t| t.elapsed() < n.ttl) {
            return;
        }
        if recent.len() >= NOTED_MAX {
            recent.clear();
        }
        recent.insert(conv.clone(), Instant::now());
    }
    let mut c = redis::cmd("ZADD");
    c.arg(s.keys.convs()).arg("NX").arg(ts).arg(conv.as_str());
    if let Err(e) = s.redis.query::<i64>("noting a conversation", &c).await {
        n.recent.lock().remove(conv);
        tracing::debug!(%conv, error = %e, "noting a conversation for age trimming failed");
    }
}

/// The task: one pass a minute.
pub(crate) async fn task(s: Arc<Shared>) {
    let mut tick = tokio::time::interval_at(tokio::time::Instant::now() + INTERVAL, INTERVAL);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = s.cancel.cancelled() => return,
            _ = tick.tick() => {}
        }
        if let Err(e) = pass(&s).await {
            tracing::warn!(error = %e, "trimming history by age failed");
        }
    }
}

/// One pass: trims every conversation noted as holding messages older than the limit.
pub(crate) async fn pass(s: &Shared) -> Result<(), BackendError> {
    let max_age = s.retention.max_age_ms;
    if max_age == 0 {
        return Ok(());
    }
    let cutoff = now_ms().saturating_sub(max_age);
    let set = s.keys.convs();
    for _ in 0..MAX_BATCHES {
        let mut c = redis::cmd("ZRANGEBYSCORE");
        c.arg(&set)
            .arg("-inf")
            .arg(format!("({cutoff}"))
            .arg("LIMIT")
            .arg(0)
            .arg(BATCH);
        let names: Vec<String> = s.redis.query("listing conversations to trim", &c).await?;
        if names.is_empty() {
            return Ok(());
        }
        let mut p = Batch::new();
        p.cmd("ZREM").arg(&set).arg(&names).ignore();
        s.redis.batch::<()>("trimming by age", &p).await?;
        let mut back = Batch::new();
        for name in &names {
            let Some(conv) = Conv::parse(name) else {
                continue;
            };
            let left: i64 = s
                .redis
                .eval(
                    "trimming by age",
                    &s.scripts.trim_age,
                    &[s.keys.log(&conv)],
                    &[cutoff.to_string(), TRIM_BUDGET.to_string()],
                )
                .await?;
            // -1: empty; -2: more to trim (score 0: taken again first); else the oldest time left.
            let score = match left {
                -1 => continue,
                -2 => 0,
                t => t,
            };
            back.cmd("ZADD")
                .arg(&set)
                .arg("LT")
                .arg(score)
                .arg(name)
                .ignore();
        }
        if !back.is_empty() {
            s.redis.batch::<()>("trimming by age", &back).await?;
        }
        if names.len() < BATCH {
            return Ok(());
        }
    }
    Ok(())
}
