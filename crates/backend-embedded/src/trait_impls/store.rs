//! [`Store`] for the embedded backend: writes go through the writer thread's group commit;
//! reads run on the read pool, with users, rooms and auth sessions answered from the caches
//! once known.

use crate::EmbeddedBackend;
use crate::error::closed;
use crate::writer::{Job, TypedJob};
use crate::{reads, writes};
use async_trait::async_trait;
use switchboard_core::backend::{
    AuthSession, BackendError, Room, Store, TokenHash, User, UserCredentials, Visibility,
};
use tokio::sync::oneshot;

#[async_trait]
impl Store for EmbeddedBackend {
    async fn create_user(&self, username: &str, password_hash: &str) -> Result<User, BackendError> {
        let (username, hash) = (username.to_owned(), password_hash.to_owned());
        let user = self
            .write(move |c| writes::create_user(c, &username, &hash))
            .await?;
        self.users.put(&user.user_id, user.clone());
        Ok(user)
    }

    async fn user_by_username(
        &self,
        username: &str,
    ) -> Result<Option<UserCredentials>, BackendError> {
        let username = username.to_owned();
        self.read(move |c| reads::user_by_username(c, &username))
            .await
    }

    async fn user(&self, user_id: &str) -> Result<Option<User>, BackendError> {
        self.read_through(&self.users, user_id, reads::user).await
    }

    async fn ensure_user(&self, user_id: &str) -> Result<User, BackendError> {
        // Usually the user exists: answer from a read without waiting for a commit.
        if let Some(user) = self.user(user_id).await? {
            return Ok(user);
        }
        let id = user_id.to_owned();
        let user = self.write(move |c| writes::ensure_user(c, &id)).await?;
        self.users.put(user_id, user.clone());
        Ok(user)
    }

    async fn create_session(
        &self,
        token_hash: TokenHash,
        session: &AuthSession,
    ) -> Result<(), BackendError> {
        let stored = session.clone();
        self.write(move |c| writes::create_session(c, &token_hash, &stored))
            .await?;
        self.sessions.created(token_hash, session.clone());
        Ok(())
    }

    async fn session(&self, token_hash: TokenHash) -> Result<Option<AuthSession>, BackendError> {
        if let Some(s) = self.sessions.get(&token_hash) {
            self.check_open()?;
            return Ok(Some(s));
        }
        let generation = self.sessions.generation();
        let found = self.read(move |c| reads::session(c, &token_hash)).await?;
        if let Some(s) = &found {
            self.sessions.fill(token_hash, s.clone(), generation);
        }
        Ok(found)
    }

    async fn delete_session(
        &self,
        token_hash: TokenHash,
    ) -> Result<Option<AuthSession>, BackendError> {
        // The job is queued now, and the cache entry is dropped after its commit by a task of its
        // own: a caller that goes away mid-logout (a client closing its HTTP connection) must not
        // leave the token authenticating from the cache after its row is gone.
        let (tx, rx) = oneshot::channel();
        self.send(Job::Write(TypedJob::boxed(
            move |c| writes::delete_session(c, &token_hash),
            tx,
        )))?;
        let sessions = self.sessions.clone();
        let forget = tokio::spawn(async move {
            let deleted = rx.await.map_err(|_| closed());
            // Also on failure: a cached session must never outlive its row.
            sessions.deleted(&token_hash);
            deleted
        });
        forget
            .await
            .map_err(|e| BackendError::Internal(format!("logout task failed: {e}")))??
    }

    async fn delete_user_sessions(
        &self,
        user_id: &str,
        except: Option<&str>,
    ) -> Result<Vec<String>, BackendError> {
        // As for `delete_session`: the cache is cleared by a task of its own after the commit.
        let (tx, rx) = oneshot::channel();
        let (user, keep) = (user_id.to_owned(), except.map(str::to_owned));
        self.send(Job::Write(TypedJob::boxed(
            move |c| writes::delete_user_sessions(c, &user, keep.as_deref()),
            tx,
        )))?;
        let sessions = self.sessions.clone();
        let (user, keep) = (user_id.to_owned(), except.map(str::to_owned));
        let forget = tokio::spawn(async move {
            let deleted = rx.await.map_err(|_| closed());
            sessions.deleted_user(&user, keep.as_deref());
            deleted
        });
        forget
            .await
            .map_err(|e| BackendError::Internal(format!("revocation task failed: {e}")))??
    }

    async fn set_password(&self, user_id: &str, password_hash: &str) -> Result<(), BackendError> {
        let (user_id, hash) = (user_id.to_owned(), password_hash.to_owned());
        self.write(move |c| writes::set_password(c, &user_id, &hash))
            .await
    }

    async fn create_room(
        &self,
        name: &str,
        visibility: Visibility,
        owner: &str,
    ) -> Result<Room, BackendError> {
        let (name, owner) = (name.to_owned(), owner.to_owned());
        let room = self
            .write(move |c| writes::create_room(c, &name, visibility, &owner))
            .await?;
        self.rooms.put(&room.room_id, room.clone());
        Ok(room)
    }

    async fn room(&self, room_id: &str) -> Result<Option<Room>, BackendError> {
        self.read_through(&self.rooms, room_id, reads::room).await
    }

    async fn rooms_visible_to(&self, user_id: &str) -> Result<Vec<Room>, BackendError> {
        let user_id = user_id.to_owned();
        self.read(move |c| reads::rooms_visible_to(c, &user_id))
            .await
    }

    async fn add_member(&self, room_id: &str, user_id: &str) -> Result<(), BackendError> {
        let (room_id, user_id) = (room_id.to_owned(), user_id.to_owned());
        self.write(move |c| writes::add_member(c, &room_id, &user_id))
            .await
    }

    async fn remove_member(&self, room_id: &str, user_id: &str) -> Result<(), BackendError> {
        let (room_id, user_id) = (room_id.to_owned(), user_id.to_owned());
        self.write(move |c| writes::remove_member(c, &room_id, &user_id))
            .await
    }

    async fn is_member(&self, room_id: &str, user_id: &str) -> Result<bool, BackendError> {
        let (room_id, user_id) = (room_id.to_owned(), user_id.to_owned());
        self.read(move |c| reads::is_member(c, &room_id, &user_id))
            .await
    }

    async fn members(&self, room_id: &str) -> Result<Vec<String>, BackendError> {
        let room_id = room_id.to_owned();
        self.read(move |c| reads::members(c, &room_id)).await
    }
}
