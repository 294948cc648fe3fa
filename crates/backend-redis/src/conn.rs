//! The command connection: one auto-reconnecting multiplexed connection
//! ([`ConnectionManager`]) shared by every request, or on Redis Cluster one cluster connection
//! (a multiplexed connection per node, routed by slot), and helpers that bound every command by
//! the response timeout and map its errors.
//!
//! The manager's own timeouts cover one network exchange; while it reconnects, a command waits
//! for the new connection. The outer timeout here bounds the whole wait, so that during an
//! outage a call fails with `Unavailable` after `response_timeout` instead of hanging.

use crate::batch::Batch;
use crate::error;
use parking_lot::RwLock;
use redis::aio::{ConnectionLike, ConnectionManager, ConnectionManagerConfig};
use redis::cluster::ClusterClientBuilder;
use redis::cluster_async::ClusterConnection;
use redis::{
    Client, Cmd, FromRedisValue, Pipeline, RedisFuture, RedisResult, Script, ToRedisArgs, Value,
};
use std::future::Future;
use std::time::Duration;
use switchboard_core::backend::BackendError;

/// How long one connection attempt may take.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(1);

/// How long `connect` tries before it reports the server unreachable.
const INITIAL_CONNECT_BUDGET: Duration = Duration::from_secs(4);

/// Where commands go: one server, or a Redis Cluster.
pub(crate) enum Target {
    /// One Redis server.
    Single {
        /// Its client (the pub/sub connection is opened from it too).
        client: Client,
        /// Settings of each (re)made connection manager.
        config: Box<ConnectionManagerConfig>,
    },
    /// A Redis Cluster, reached through its seed nodes.
    Cluster {
        /// The seed URLs, for the pub/sub client.
        seeds: Vec<String>,
    },
}

/// One command connection of either kind.
#[derive(Clone)]
pub(crate) enum Conn {
    /// To one server.
    Single(ConnectionManager),
    /// To a cluster: routes each command by its key's slot, follows MOVED/ASK.
    Cluster(ClusterConnection),
}

impl ConnectionLike for Conn {
    fn req_packed_command<'a>(&'a mut self, cmd: &'a Cmd) -> RedisFuture<'a, Value> {
        match self {
            Conn::Single(c) => c.req_packed_command(cmd),
            Conn::Cluster(c) => c.req_packed_command(cmd),
        }
    }

    fn req_packed_commands<'a>(
        &'a mut self,
        cmd: &'a Pipeline,
        offset: usize,
        count: usize,
    ) -> RedisFuture<'a, Vec<Value>> {
        match self {
            Conn::Single(c) => c.req_packed_commands(cmd, offset, count),
            Conn::Cluster(c) => c.req_packed_commands(cmd, offset, count),
        }
    }

    fn get_db(&self) -> i64 {
        match self {
            Conn::Single(c) => c.get_db(),
            Conn::Cluster(c) => c.get_db(),
        }
    }
}

/// The command connection and its settings.
pub(crate) struct Redis {
    target: Target,
    /// `None` once closed. A lock rather than a plain field so that a connection that stopped
    /// answering can be replaced by a fresh one (see [`Redis::refresh`]).
    manager: RwLock<Option<Conn>>,
    /// The most a command may take, including waiting for a reconnect.
    timeout: Duration,
    /// The server's URL without password, for messages.
    url: String,
}

impl Redis {
    /// Connects to `url` and checks that the server answers PING. Fails with `Unavailable`
    /// naming the URL within a few seconds when the server cannot be reached.
    pub(crate) async fn connect(url: &str, timeout: Duration) -> Result<Redis, BackendError> {
        let shown = error::redact_url(url);
        let client = Client::open(url)
            .map_err(|e| BackendError::Unavailable(format!("invalid Redis URL {shown}: {e}")))?;
        let manager_config = ConnectionManagerConfig::new()
            .set_connection_timeout(Some(CONNECT_TIMEOUT))
            .set_response_timeout(Some(timeout))
            .set_number_of_retries(4)
            .set_min_delay(Duration::from_millis(100))
            .set_max_delay(Duration::from_secs(1));
        let unreachable = |detail: String| {
            BackendError::Unavailable(format!("cannot reach Redis at {shown}: {detail}"))
        };
        let manager = tokio::time::timeout(
            INITIAL_CONNECT_BUDGET,
            ConnectionManager::new_with_config(client.clone(), manager_config.clone()),
        )
        .await
        .map_err(|_| unreachable(format!("no connection within {INITIAL_CONNECT_BUDGET:?}")))?
        .map_err(|e| unreachable(e.to_string()))?;
        let redis = Redis {
            target: Target::Single {
                client,
                config: Box::new(manager_config),
            },
            manager: RwLock::new(Some(Conn::Single(manager))),
            timeout,
            url: shown.clone(),
        };
        redis.ping(&unreachable).await?;
        Ok(redis)
    }

    /// Connects to a Redis Cluster through `seeds` (any of its nodes), learns its slots and
    /// checks that it answers. Fails with `Unavailable` naming the seeds within a few seconds.
    pub(crate) async fn connect_cluster(
        seeds: &[String],
        timeout: Duration,
    ) -> Result<Redis, BackendError> {
        let shown = seeds
            .iter()
            .map(|u| error::redact_url(u))
            .collect::<Vec<_>>()
            .join(",");
        let unreachable = |detail: String| {
            BackendError::Unavailable(format!("cannot reach Redis Cluster at {shown}: {detail}"))
        };
        let client = cluster_builder(seeds, timeout)
            .build()
            .map_err(|e| BackendError::Unavailable(format!("invalid Redis URL in {shown}: {e}")))?;
        let conn = tokio::time::timeout(INITIAL_CONNECT_BUDGET, client.get_async_connection())
            .await
            .map_err(|_| unreachable(format!("no connection within {INITIAL_CONNECT_BUDGET:?}")))?
            .map_err(|e| unreachable(e.to_string()))?;
        let redis = Redis {
            target: Target::Cluster {
                seeds: seeds.to_vec(),
            },
            manager: RwLock::new(Some(Conn::Cluster(conn))),
            timeout,
            url: shown.clone(),
        };
        redis.ping(&unreachable).await?;
        Ok(redis)
    }

    async fn ping(
        &self,
        unreachable: &(dyn Fn(String) -> BackendError + Sync),
    ) -> Result<(), BackendError> {
        let pong: String = self
            .query("PING", &redis::cmd("PING"))
            .await
            .map_err(|e| unreachable(e.to_string()))?;
        if pong != "PONG" {
            return Err(unreachable(format!("PING answered {pong:?}")));
        }
        Ok(())
    }

    /// Where commands go (the pub/sub task opens its own connection from it).
    pub(crate) fn target(&self) -> &Target {
        &self.target
    }

    /// The client of a single server (the pub/sub connection is opened from it).
    pub(crate) fn client(&self) -> Option<&Client> {
        match &self.target {
            Target::Single { client, .. } => Some(client),
            Target::Cluster { .. } => None,
        }
    }

    /// Whether this is a Redis Cluster.
    pub(crate) fn is_cluster(&self) -> bool {
        matches!(self.target, Target::Cluster { .. })
    }

    /// The URL without password.
    pub(crate) fn url(&self) -> &str {
        &self.url
    }

    /// The response timeout.
    pub(crate) fn timeout(&self) -> Duration {
        self.timeout
    }

    pub(crate) fn manager(&self) -> Result<Conn, BackendError> {
        self.manager.read().clone().ok_or_else(error::closed)
    }

    /// Awaits `fut` for at most the response timeout, mapping its error.
    pub(crate) async fn timed<T>(
        &self,
        what: &str,
        fut: impl Future<Output = RedisResult<T>>,
    ) -> Result<T, BackendError> {
        match tokio::time::timeout(self.timeout, fut).await {
            Ok(Ok(v)) => Ok(v),
            Ok(Err(e)) => Err(error::map(&self.url, what, e)),
            Err(_) => Err(error::timed_out(&self.url, what, self.timeout)),
        }
    }

    /// Runs one command.
    pub(crate) async fn query<T: FromRedisValue>(
        &self,
        what: &str,
        cmd: &Cmd,
    ) -> Result<T, BackendError> {
        let mut c = self.manager()?;
        self.timed(what, cmd.query_async(&mut c)).await
    }

    /// Runs a pipeline (one round trip).
    pub(crate) async fn pipe<T: FromRedisValue>(
        &self,
        what: &str,
        pipe: &Pipeline,
    ) -> Result<T, BackendError> {
        let mut c = self.manager()?;
        self.timed(what, pipe.query_async(&mut c)).await
    }

    /// Runs a [`Batch`]: one pipeline on one server; on a cluster one pipeline per slot, sent
    /// concurrently (a MULTI batch is then atomic per slot only), answers in the batch's order.
    pub(crate) async fn batch<T: FromRedisValue>(
        &self,
        what: &str,
        batch: &Batch,
    ) -> Result<T, BackendError> {
        let c = self.manager()?;
        let values = self.timed(what, batch.run(c)).await?;
        T::from_redis_value(Value::Array(values)).map_err(|e| error::bad_reply(what, e))
    }

    /// Runs a script by EVALSHA, loading it first if the server does not have it (after a
    /// restart, for instance).
    pub(crate) async fn eval<T: FromRedisValue>(
        &self,
        what: &str,
        script: &Script,
        keys: &[String],
        args: &[impl ToRedisArgs],
    ) -> Result<T, BackendError> {
        let mut c = self.manager()?;
        let mut inv = script.prepare_invoke();
        for k in keys {
            inv.key(k);
        }
        for a in args {
            inv.arg(a);
        }
        self.timed(what, inv.invoke_async(&mut c)).await
    }

    /// Loads a script into the server's cache (so that the first call does not pay for it).
    pub(crate) async fn load(&self, what: &str, script: &Script) -> Result<(), BackendError> {
        let mut c = self.manager()?;
        self.timed(what, script.load_async(&mut c)).await.map(drop)
    }

    /// Replaces the connection with a fresh one, connected lazily on the next command. Used when
    /// commands keep failing: a connection to a server that vanished without closing it (a
    /// network partition, a failover to another address) would otherwise only time out.
    pub(crate) fn refresh(&self) {
        let mut slot = self.manager.write();
        if slot.is_none() {
            return;
        }
        // A cluster connection repairs itself (it reconnects per node and refreshes its slots).
        let Target::Single { client, config } = &self.target else {
            return;
        };
        match ConnectionManager::new_lazy_with_config(client.clone(), (**config).clone()) {
            Ok(m) => *slot = Some(Conn::Single(m)),
            Err(e) => {
                tracing::warn!(url = %self.url, error = %e, "cannot renew the Redis connection")
            }
        }
    }

    /// Drops the connection; later commands fail with `Unavailable`.
    pub(crate) fn close(&self) {
        self.manager.write().take();
    }
}

/// The cluster client settings shared by the command and pub/sub connections: one connection
/// attempt per second at most, each exchange bounded by `timeout`, a few retries (they follow
/// MOVED and ASK, and wait out a failover in steps).
pub(crate) fn cluster_builder(seeds: &[String], timeout: Duration) -> ClusterClientBuilder {
    ClusterClientBuilder::new(seeds.to_vec())
        .connection_timeout(CONNECT_TIMEOUT)
        .response_timeout(timeout)
        .retries(3)
        .min_retry_wait(50)
        .max_retry_wait(500)
}
