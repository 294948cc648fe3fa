//! Passwords and tokens: argon2 hashing off the async runtime, token hashing, expiry.

use crate::backend::TokenHash;
use crate::error::{Error, Result};
use argon2::Argon2;
use argon2::password_hash::phc::PasswordHash;
use argon2::password_hash::{PasswordHasher, PasswordVerifier};
use sha2::{Digest, Sha256};
use std::sync::Arc;
use tokio::sync::Semaphore;

/// Hashes and verifies passwords with argon2id.
///
/// A hash costs tens of milliseconds of CPU, so it runs on the blocking pool, and a semaphore
/// (one permit per core) keeps a login storm from taking every blocking thread.
#[derive(Clone)]
pub struct PasswordHasherPool {
    permits: Arc<Semaphore>,
}

impl PasswordHasherPool {
    /// A pool allowing `parallelism` hashes at once.
    pub fn new(parallelism: usize) -> PasswordHasherPool {
        PasswordHasherPool {
            permits: Arc::new(Semaphore::new(parallelism.max(1))),
        }
    }

    /// The argon2 PHC string for `password`.
    pub async fn hash(&self, password: String) -> Result<String> {
        let _permit =
            self.permits.acquire().await.map_err(|_| {
                Error::new(switchboard_proto::ErrorCode::Unavailable, "shutting down")
            })?;
        tokio::task::spawn_blocking(move || {
            let hash: PasswordHash = Argon2::default()
                .hash_password(password.as_bytes())
                .map_err(|e| Error::new(switchboard_proto::ErrorCode::Internal, e.to_string()))?;
            Ok(hash.to_string())
        })
        .await
        .map_err(|e| Error::new(switchboard_proto::ErrorCode::Internal, e.to_string()))?
    }

    /// Whether `password` matches the PHC string `hash`. A malformed hash never matches.
    pub async fn verify(&self, password: String, hash: String) -> Result<bool> {
        let _permit =
            self.permits.acquire().await.map_err(|_| {
                Error::new(switchboard_proto::ErrorCode::Unavailable, "shutting down")
            })?;
        tokio::task::spawn_blocking(move || {
            let Ok(parsed) = PasswordHash::new(&hash) else {
                return false;
            };
            Argon2::default()
                .verify_password(password.as_bytes(), &parsed)
                .is_ok()
        })
        .await
        .map_err(|e| Error::new(switchboard_proto::ErrorCode::Internal, e.to_string()))
    }
}

/// SHA-256 of a bearer token: what the store keeps instead of the token.
pub fn token_hash(token: &str) -> TokenHash {
    Sha256::digest(token.as_bytes()).into()
}

/// Milliseconds since the Unix epoch.
pub fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

/// Who a request or connection is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Principal {
    /// The user.
    pub user_id: String,
    /// The auth session of the token used.
    pub session_id: String,
    /// When that token expires (ms since the Unix epoch).
    pub expires_at_ms: u64,
}
