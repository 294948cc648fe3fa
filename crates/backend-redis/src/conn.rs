//! The command connection: one auto-reconnecting multiplexed connection
//! ([`ConnectionManager`]) shared by every request, and helpers that bound every command by the
//! response timeout and map its errors.
//!
//! The manager's own timeouts cover one network exchange; while it reconnects, a command waits
//! for the new connection. The outer timeout here bounds the whole wait, so that during an
//! outage a call fails with `Unavailable` after `response_timeout` instead of hanging.

use crate::error;
use parking_lot::RwLock;
use redis::aio::{ConnectionManager, ConnectionManagerConfig};
use redis::{Client, Cmd, FromRedisValue, Pipeline, RedisResult, Script, ToRedisArgs};
use std::future::Future;
use std::time::Duration;
use switchboard_core::backend::BackendError;

/// How long one connection attempt may take.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(1);

/// How long `connect` tries before it reports the server unreachable.
const INITIAL_CONNECT_BUDGET: Duration = Duration::from_secs(4);

/// The command connection and its settings.
pub(crate) struct Redis {
    client: Client,
    /// `None` once closed. A lock rather than a plain field so that a connection that stopped
    /// answering can be replaced by a fresh one (see [`Redis::refresh`]).
    manager: RwLock<Option<ConnectionManager>>,
    manager_config: ConnectionManagerConfig,
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
            client,
            manager: RwLock::new(Some(manager)),
            manager_config,
            timeout,
            url: shown.clone(),
        };
        let pong: String = redis
            .query("PING", &redis::cmd("PING"))
            .await
            .map_err(|e| unreachable(e.to_string()))?;
        if pong != "PONG" {
            return Err(unreachable(format!("PING answered {pong:?}")));
        }
        Ok(redis)
    }

    /// The client, to open the pub/sub connection.
    pub(crate) fn client(&self) -> &Client {
        &self.client
    }

    /// The URL without password.
    pub(crate) fn url(&self) -> &str {
        &self.url
    }

    /// The response timeout.
    pub(crate) fn timeout(&self) -> Duration {
        self.timeout
    }

    fn manager(&self) -> Result<ConnectionManager, BackendError> {
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
        match ConnectionManager::new_lazy_with_config(
            self.client.clone(),
            self.manager_config.clone(),
        ) {
            Ok(m) => *slot = Some(m),
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
