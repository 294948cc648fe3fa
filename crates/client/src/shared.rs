//! The state the background task shares with the [`Client`](crate::Client) handles: the
//! tracked positions, the node and user of the current connection, the last connection error.

use crate::tracker;
use std::sync::{Arc, Mutex};

/// State the background task shares with the handles.
#[derive(Debug, Default)]
pub(crate) struct SharedState {
    pub tracker: tracker::Tracker,
    pub node_id: Option<String>,
    pub user_id: Option<String>,
    pub last_error: Option<String>,
}

pub(crate) type Shared = Arc<Mutex<SharedState>>;

pub(crate) fn lock(shared: &Shared) -> std::sync::MutexGuard<'_, SharedState> {
    shared.lock().unwrap_or_else(|e| e.into_inner())
}
