//! Prometheus metrics of one node. Each node owns its own registry (no global recorder), so
//! several nodes can run in one test process and be measured apart.

use prometheus_client::encoding::text::encode;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;
use switchboard_proto::{DisconnectReason, ErrorCode};

type Labels = Vec<(&'static str, &'static str)>;

/// The node's metrics. Cheap to update from any task (atomics).
pub struct Metrics {
    registry: Registry,
    /// Open client connections (WebSocket, TCP, long-poll sessions).
    pub connections: Gauge,
    /// Connections accepted since start.
    pub connections_opened: Counter,
    /// Messages this node stored and published.
    pub messages_published: Counter,
    /// Message frames handed to local connections' queues.
    pub messages_delivered: Counter,
    /// Messages this node received from the bus (cluster or in-process).
    pub bus_messages_received: Counter,
    /// Active subscriptions on this node (connection × conversation).
    pub subscriptions: Gauge,
    /// Time from a publish request to its durable, published answer.
    pub publish_latency: Histogram,
    /// The embedded backend's group commits (see [`CommitMetrics`]).
    pub commits: CommitMetrics,
    /// Error replies by code.
    errors: Family<Labels, Counter>,
    /// Server-initiated disconnects by reason.
    disconnects: Family<Labels, Counter>,
    /// Offline webhook attempts by result (`ok`, `retry`, `failed`).
    webhook: Family<Labels, Counter>,
    /// Messages taken from each Redis Cluster shard, by its master's address.
    bus_shards: Family<Vec<(&'static str, String)>, Counter>,
}

impl Metrics {
    /// Registers every metric in a fresh registry.
    pub fn new() -> Metrics {
        let mut registry = Registry::default();
        let m = Metrics {
            connections: Gauge::default(),
            connections_opened: Counter::default(),
            messages_published: Counter::default(),
            messages_delivered: Counter::default(),
            bus_messages_received: Counter::default(),
            subscriptions: Gauge::default(),
            publish_latency: Histogram::new(exponential_buckets(0.000_05, 2.0, 18)),
            commits: CommitMetrics {
                seconds: Histogram::new(exponential_buckets(0.000_05, 2.0, 18)),
                messages: Histogram::new(exponential_buckets(1.0, 2.0, 12)),
                checkpoint_seconds: Histogram::new(exponential_buckets(0.000_05, 2.0, 18)),
                index_step_seconds: Histogram::new(exponential_buckets(0.000_05, 2.0, 18)),
                index_pending: Gauge::default(),
                delay_waits: Counter::default(),
                delay_passes: Counter::default(),
            },
            errors: Family::default(),
            disconnects: Family::default(),
            webhook: Family::default(),
            bus_shards: Family::default(),
            registry: Registry::default(),
        };
        registry.register(
            "switchboard_connections",
            "Open client connections",
            m.connections.clone(),
        );
        registry.register(
            "switchboard_connections_opened",
            "Client connections accepted",
            m.connections_opened.clone(),
        );
        registry.register(
            "switchboard_messages_published",
            "Messages stored and published by this node",
            m.messages_published.clone(),
        );
        registry.register(
            "switchboard_messages_delivered",
            "Message frames queued to local connections",
            m.messages_delivered.clone(),
        );
        registry.register(
            "switchboard_bus_messages_received",
            "Messages this node took from the bus",
            m.bus_messages_received.clone(),
        );
        registry.register(
            "switchboard_subscriptions",
            "Active subscriptions (connection x conversation)",
            m.subscriptions.clone(),
        );
        registry.register(
            "switchboard_publish_latency_seconds",
            "Publish request to durable answer",
            m.publish_latency.clone(),
        );
        registry.register(
            "switchboard_commit_seconds",
            "Embedded backend: one group commit, from BEGIN to COMMIT done (fsync included)",
            m.commits.seconds.clone(),
        );
        registry.register(
            "switchboard_commit_messages",
            "Embedded backend: messages stored by one group commit (a DM counts its two copies)",
            m.commits.messages.clone(),
        );
        registry.register(
            "switchboard_checkpoint_seconds",
            "Embedded backend: one checkpoint step (the thread's pass, or the writer finishing it)",
            m.commits.checkpoint_seconds.clone(),
        );
        registry.register(
            "switchboard_index_step_seconds",
            "Embedded backend: one step of the stream index (a partition's entries written)",
            m.commits.index_step_seconds.clone(),
        );
        registry.register(
            "switchboard_index_pending",
            "Embedded backend: stream entries committed and not yet written to the index",
            m.commits.index_pending.clone(),
        );
        registry.register(
            "switchboard_commit_delay_waits",
            "Embedded backend, with --commit-delay-us: batches the commit delay held",
            m.commits.delay_waits.clone(),
        );
        registry.register(
            "switchboard_commit_delay_passes",
            "Embedded backend, with --commit-delay-us: busy batches not held (their senders \
             wait for the last commit's answers)",
            m.commits.delay_passes.clone(),
        );
        registry.register(
            "switchboard_errors",
            "Error replies by code",
            m.errors.clone(),
        );
        registry.register(
            "switchboard_disconnects",
            "Server-initiated disconnects by reason",
            m.disconnects.clone(),
        );
        registry.register(
            "switchboard_webhook_attempts",
            "Offline webhook attempts by result",
            m.webhook.clone(),
        );
        registry.register(
            "switchboard_bus_shard_messages",
            "Messages this node took from each Redis Cluster shard, by the shard master's address",
            m.bus_shards.clone(),
        );
        // Pre-create the labelled series so they show up (at 0) before the first event.
        for c in ErrorCode::ALL {
            drop(m.errors.get_or_create(&vec![("code", c.as_str())]));
        }
        Metrics { registry, ..m }
    }

    /// Counts an error reply.
    pub fn error(&self, code: ErrorCode) {
        self.errors
            .get_or_create(&vec![("code", code.as_str())])
            .inc();
    }

    /// Counts a server-initiated disconnect.
    pub fn disconnect(&self, reason: DisconnectReason) {
        self.disconnects
            .get_or_create(&vec![("reason", reason.as_str())])
            .inc();
    }

    /// Counts a message taken from the Redis Cluster shard whose master is `shard`.
    pub fn bus_shard_message(&self, shard: &str) {
        self.bus_shards
            .get_or_create(&vec![("shard", shard.to_owned())])
            .inc();
    }

    /// Counts a webhook attempt.
    pub fn webhook(&self, result: &'static str) {
        self.webhook.get_or_create(&vec![("result", result)]).inc();
    }

    /// The text exposition format (OpenMetrics), for `GET /metrics`.
    pub fn render(&self) -> String {
        let mut out = String::with_capacity(4096);
        encode(&mut out, &self.registry).expect("writing to a String cannot fail");
        out
    }
}

/// What the embedded backend's writer records of each group commit: handles on two of the
/// node's histograms, cheap to clone and to update from the writer thread.
#[derive(Debug, Clone)]
pub struct CommitMetrics {
    /// Seconds from the batch's `BEGIN` to its `COMMIT` returning (fsync included).
    pub seconds: Histogram,
    /// Messages stored by the commit (a DM's two copies count two).
    pub messages: Histogram,
    /// Seconds of each checkpoint pass, on the checkpoint thread or the writer's finishing step.
    pub checkpoint_seconds: Histogram,
    /// Seconds of each step of the stream index, `BEGIN` to `COMMIT` returning.
    pub index_step_seconds: Histogram,
    /// Stream entries waiting in the tail, as of the writer's last step.
    pub index_pending: Gauge,
    /// Batches the commit delay held (at least one slice slept).
    pub delay_waits: Counter,
    /// Batches of two or more jobs the commit delay let through at once, because fewer than two
    /// came from senders the last commit did not answer (a pipelining connection's next ones).
    pub delay_passes: Counter,
}

impl Default for Metrics {
    fn default() -> Self {
        Metrics::new()
    }
}
