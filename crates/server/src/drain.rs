//! The drain sequence a node runs once, whoever asks for it (SIGTERM or the server API):
//! refuse new clients, move the connected ones away in paced batches, stop, close the backend.

use std::sync::Arc;
use std::time::{Duration, Instant};
use switchboard_core::Node;
use switchboard_gateway::poll::PollSessions;
use switchboard_gateway::socketio::serve::SioEndpoint;
use switchboard_proto::DisconnectReason;
use tokio_util::sync::CancellationToken;

/// What the drain sequence needs, owned by the task that runs it.
pub(crate) struct Lifecycle {
    pub(crate) node: Arc<Node>,
    pub(crate) stop_accepting: CancellationToken,
    pub(crate) server: tokio::task::JoinHandle<()>,
    pub(crate) polls: Option<Arc<PollSessions>>,
    pub(crate) sio: Option<Arc<SioEndpoint>>,
    pub(crate) drain_window: Duration,
    pub(crate) shutdown_timeout: Duration,
}

impl Lifecycle {
    /// The drain: refuse new clients (draining), tell every client to reconnect elsewhere in
    /// paced batches spread over the drain window, wait for them to leave and for long-poll
    /// clients to collect their last frames, then stop the listeners and close the backend.
    pub(crate) async fn drain(self) {
        let started = Instant::now();
        // Draining: new WebSocket upgrades, TCP clients, poll sessions and dispatches get 503,
        // and `/v1/node` says so, so dispatchers stop placing clients here.
        self.node.set_draining();
        let total = self.node.hub.open_connections();
        const TICK: Duration = Duration::from_millis(100);
        let batches = (self.drain_window.as_millis() / TICK.as_millis()).max(1) as usize;
        let per_batch = total.div_ceil(batches).max(1);
        tracing::info!(
            clients = total,
            per_batch,
            window_ms = self.drain_window.as_millis() as u64,
            "draining"
        );
        let deadline = started + self.drain_window + self.shutdown_timeout;
        // No session is admitted from now on (the transports check `draining` first); the
        // wait ends when the last session's permit is gone, sessions admitted just before the
        // drain began (and handshakes still deciding) included.
        let sessions = &self.node.admission;
        sessions.close();
        let all_ended = sessions.wait();
        tokio::pin!(all_ended);
        let mut ended = false;
        while !ended && Instant::now() < deadline {
            // Paced: a batch per tick; connections opened meanwhile are told too.
            self.node
                .hub
                .kill_some(per_batch, DisconnectReason::Shutdown);
            let tick = tokio::time::sleep_until((Instant::now() + TICK).min(deadline).into());
            ended = tokio::select! {
                _ = &mut all_ended => true,
                _ = tick => false,
            };
        }
        let left = self.node.hub.open_connections();
        if left > 0 {
            tracing::warn!(left, "drain deadline: closing with clients still connected");
        }
        // Long-poll clients fetch their final frames with one more GET; give them a moment.
        if let Some(polls) = &self.polls {
            let collect_by =
                (Instant::now() + Duration::from_secs(2)).min(deadline.max(Instant::now()));
            while polls.uncollected() > 0 && Instant::now() < collect_by {
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        }
        // Socket.IO clients got `switchboard:reconnect`; their transports close after its
        // `delay_ms` (below the reconnect jitter), polling ones once they collected it.
        if let Some(sio) = &self.sio {
            let close_by =
                (Instant::now() + Duration::from_secs(6)).min(deadline.max(Instant::now()));
            while sio.session_count() > 0 && Instant::now() < close_by {
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            sio.close_all();
            sio.records.flush().await;
        }
        self.stop_accepting.cancel();
        let _ = tokio::time::timeout(Duration::from_secs(5), self.server).await;
        self.node.backend.lifecycle.close().await;
        tracing::info!(
            elapsed_ms = started.elapsed().as_millis() as u64,
            "drained and stopped"
        );
    }
}
