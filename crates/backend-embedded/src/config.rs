//! [`EmbeddedConfig`]: the embedded backend's settings and their defaults.

use crate::Durability;
use std::path::PathBuf;
use switchboard_core::metrics::CommitMetrics;

/// The default [`EmbeddedConfig::index_cycle`].
pub const DEFAULT_INDEX_CYCLE: std::time::Duration = std::time::Duration::from_secs(4);

/// Settings of the embedded backend.
#[derive(Debug, Clone)]
pub struct EmbeddedConfig {
    /// Directory of the database file (created if missing).
    pub data_dir: PathBuf,
    /// Messages kept per conversation; older ones are trimmed. 0 = unlimited.
    pub history_max_messages: u64,
    /// Messages older than this (ms) are deleted by a background pass every minute. 0 = unlimited.
    pub history_max_age_ms: u64,
    /// Most jobs (appends and other writes) committed in one transaction, e.g. 512.
    pub max_batch: usize,
    /// When a commit would carry two or more jobs (the writer is busy), how long it waits for
    /// more before committing (`--commit-delay-us`); zero commits at once.
    pub commit_delay: std::time::Duration,
    /// What an answered append promises: on disk (the default) or in the operating system's
    /// file cache (`--durability process`; see [`Durability`]).
    pub durability: Durability,
    /// Under load, how long the stream index takes to write every partition's waiting entries
    /// once (the tail and index modules); a longer cycle writes fewer pages per entry and holds
    /// more entries in memory.
    pub index_cycle: std::time::Duration,
    /// Where the writer records each group commit's time and messages (the node's
    /// `switchboard_commit_seconds` and `switchboard_commit_messages`); `None` records nothing.
    pub commit_metrics: Option<CommitMetrics>,
}

impl EmbeddedConfig {
    /// Defaults for `data_dir`: unlimited history, batches of up to 512 jobs.
    pub fn new(data_dir: impl Into<PathBuf>) -> EmbeddedConfig {
        EmbeddedConfig {
            data_dir: data_dir.into(),
            history_max_messages: 0,
            history_max_age_ms: 0,
            max_batch: 512,
            commit_delay: std::time::Duration::ZERO,
            index_cycle: DEFAULT_INDEX_CYCLE,
            durability: Durability::Disk,
            commit_metrics: None,
        }
    }
}
