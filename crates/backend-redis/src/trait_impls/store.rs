//! [`Store`] for the Redis backend: each call checks the backend is open, then runs in the
//! store module (users, sessions), the rooms module (rooms, members) or the accounts module
//! (revocation, passwords).

use crate::RedisBackend;
use crate::{accounts, rooms, store};
use async_trait::async_trait;
use switchboard_core::backend::{
    AuthSession, BackendError, Room, Store, TokenHash, User, UserCredentials, Visibility,
};

#[async_trait]
impl Store for RedisBackend {
    async fn create_user(&self, username: &str, password_hash: &str) -> Result<User, BackendError> {
        self.shared.check_open()?;
        store::create_user(&self.shared, username, password_hash).await
    }

    async fn user_by_username(
        &self,
        username: &str,
    ) -> Result<Option<UserCredentials>, BackendError> {
        self.shared.check_open()?;
        store::user_by_username(&self.shared, username).await
    }

    async fn user(&self, user_id: &str) -> Result<Option<User>, BackendError> {
        self.shared.check_open()?;
        store::user(&self.shared, user_id).await
    }

    async fn ensure_user(&self, user_id: &str) -> Result<User, BackendError> {
        self.shared.check_open()?;
        store::ensure_user(&self.shared, user_id).await
    }

    async fn create_session(
        &self,
        token_hash: TokenHash,
        session: &AuthSession,
    ) -> Result<(), BackendError> {
        self.shared.check_open()?;
        store::create_session(&self.shared, &token_hash, session).await
    }

    async fn session(&self, token_hash: TokenHash) -> Result<Option<AuthSession>, BackendError> {
        self.shared.check_open()?;
        store::session(&self.shared, &token_hash).await
    }

    async fn delete_session(
        &self,
        token_hash: TokenHash,
    ) -> Result<Option<AuthSession>, BackendError> {
        self.shared.check_open()?;
        store::delete_session(&self.shared, &token_hash).await
    }

    async fn delete_user_sessions(
        &self,
        user_id: &str,
        except: Option<&str>,
    ) -> Result<Vec<String>, BackendError> {
        self.shared.check_open()?;
        accounts::delete_user_sessions(&self.shared, user_id, except).await
    }

    async fn set_password(&self, user_id: &str, password_hash: &str) -> Result<(), BackendError> {
        self.shared.check_open()?;
        accounts::set_password(&self.shared, user_id, password_hash).await
    }

    async fn create_room(
        &self,
        name: &str,
        visibility: Visibility,
        owner: &str,
    ) -> Result<Room, BackendError> {
        self.shared.check_open()?;
        rooms::create_room(&self.shared, name, visibility, owner).await
    }

    async fn room(&self, room_id: &str) -> Result<Option<Room>, BackendError> {
        self.shared.check_open()?;
        rooms::room(&self.shared, room_id).await
    }

    async fn rooms_visible_to(&self, user_id: &str) -> Result<Vec<Room>, BackendError> {
        self.shared.check_open()?;
        rooms::rooms_visible_to(&self.shared, user_id).await
    }

    async fn add_member(&self, room_id: &str, user_id: &str) -> Result<(), BackendError> {
        self.shared.check_open()?;
        rooms::add_member(&self.shared, room_id, user_id).await
    }

    async fn remove_member(&self, room_id: &str, user_id: &str) -> Result<(), BackendError> {
        self.shared.check_open()?;
        rooms::remove_member(&self.shared, room_id, user_id).await
    }

    async fn is_member(&self, room_id: &str, user_id: &str) -> Result<bool, BackendError> {
        self.shared.check_open()?;
        rooms::is_member(&self.shared, room_id, user_id).await
    }

    async fn members(&self, room_id: &str) -> Result<Vec<String>, BackendError> {
        self.shared.check_open()?;
        rooms::members(&self.shared, room_id).await
    }
}
