//! [`Registry`] for the Redis backend: connections, room subscribers and live nodes in the
//! registry module (under this node's lease), recovery records in the recovery module.

use crate::RedisBackend;
use crate::{recovery, registry};
use async_trait::async_trait;
use std::time::Duration;
use switchboard_core::backend::{
    BackendError, ConnEntry, NodeAnnouncement, RecoveryGuard, RecoveryRecord, Registry,
};
use switchboard_proto::frame::PresenceEntry;

#[async_trait]
impl Registry for RedisBackend {
    async fn add_connection(&self, conn: &ConnEntry) -> Result<(), BackendError> {
        self.shared.check_open()?;
        registry::add_connection(&self.shared, conn).await
    }

    async fn remove_connection(&self, conn: &ConnEntry) -> Result<(), BackendError> {
        self.shared.check_open()?;
        registry::remove_connection(&self.shared, conn).await
    }

    async fn add_room_subscriber(
        &self,
        room_id: &str,
        conn: &ConnEntry,
    ) -> Result<(), BackendError> {
        self.shared.check_open()?;
        registry::add_room_subscriber(&self.shared, room_id, conn).await
    }

    async fn remove_room_subscriber(
        &self,
        room_id: &str,
        conn: &ConnEntry,
    ) -> Result<(), BackendError> {
        self.shared.check_open()?;
        registry::remove_room_subscriber(&self.shared, room_id, conn).await
    }

    async fn user_connections(&self, user_ids: &[String]) -> Result<Vec<u32>, BackendError> {
        self.shared.check_open()?;
        registry::user_connections(&self.shared, user_ids).await
    }

    async fn room_presence(&self, room_id: &str) -> Result<Vec<PresenceEntry>, BackendError> {
        self.shared.check_open()?;
        registry::room_presence(&self.shared, room_id).await
    }

    async fn live_nodes(&self) -> Result<Vec<NodeAnnouncement>, BackendError> {
        RedisBackend::live_nodes(self).await
    }

    async fn put_recovery(
        &self,
        key: &str,
        owner: &str,
        value: &str,
        ttl: Duration,
        guard: RecoveryGuard<'_>,
    ) -> Result<bool, BackendError> {
        self.shared.check_open()?;
        recovery::put(&self.shared, key, owner, value, ttl, guard).await
    }

    async fn recovery(&self, key: &str) -> Result<Option<RecoveryRecord>, BackendError> {
        self.shared.check_open()?;
        recovery::get(&self.shared, key).await
    }

    async fn touch_recoveries(&self, keys: &[String], ttl: Duration) -> Result<(), BackendError> {
        self.shared.check_open()?;
        recovery::touch(&self.shared, keys, ttl).await
    }

    async fn delete_recovery(&self, key: &str, owner: &str) -> Result<bool, BackendError> {
        self.shared.check_open()?;
        recovery::delete(&self.shared, key, owner).await
    }
}
