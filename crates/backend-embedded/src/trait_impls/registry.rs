//! [`Registry`] for the embedded backend: connections, room subscribers and recovery records
//! kept in this process's memory.

use crate::EmbeddedBackend;
use async_trait::async_trait;
use switchboard_core::backend::{BackendError, ConnEntry, RecoveryGuard, RecoveryRecord, Registry};
use switchboard_proto::frame::PresenceEntry;

#[async_trait]
impl Registry for EmbeddedBackend {
    async fn add_connection(&self, conn: &ConnEntry) -> Result<(), BackendError> {
        self.check_open()?;
        self.connections.add_connection(conn);
        Ok(())
    }

    async fn remove_connection(&self, conn: &ConnEntry) -> Result<(), BackendError> {
        self.check_open()?;
        self.connections.remove_connection(conn);
        Ok(())
    }

    async fn add_room_subscriber(
        &self,
        room_id: &str,
        conn: &ConnEntry,
    ) -> Result<(), BackendError> {
        self.check_open()?;
        self.connections.add_room_subscriber(room_id, conn);
        Ok(())
    }

    async fn remove_room_subscriber(
        &self,
        room_id: &str,
        conn: &ConnEntry,
    ) -> Result<(), BackendError> {
        self.check_open()?;
        self.connections.remove_room_subscriber(room_id, conn);
        Ok(())
    }

    async fn user_connections(&self, user_ids: &[String]) -> Result<Vec<u32>, BackendError> {
        self.check_open()?;
        Ok(self.connections.user_connections(user_ids))
    }

    async fn room_presence(&self, room_id: &str) -> Result<Vec<PresenceEntry>, BackendError> {
        self.check_open()?;
        Ok(self.connections.room_presence(room_id))
    }

    async fn put_recovery(
        &self,
        key: &str,
        owner: &str,
        value: &str,
        ttl: std::time::Duration,
        guard: RecoveryGuard<'_>,
    ) -> Result<bool, BackendError> {
        self.check_open()?;
        Ok(self.recoveries.put(key, owner, value, ttl, guard))
    }

    async fn recovery(&self, key: &str) -> Result<Option<RecoveryRecord>, BackendError> {
        self.check_open()?;
        Ok(self.recoveries.get(key))
    }

    async fn touch_recoveries(
        &self,
        keys: &[String],
        ttl: std::time::Duration,
    ) -> Result<(), BackendError> {
        self.check_open()?;
        self.recoveries.touch(keys, ttl);
        Ok(())
    }

    async fn delete_recovery(&self, key: &str, owner: &str) -> Result<bool, BackendError> {
        self.check_open()?;
        Ok(self.recoveries.delete(key, owner))
    }

    /// The records are in this process's memory (`recovery.rs`): they die with it.
    fn recoveries_outlive_process(&self) -> bool {
        false
    }
}
