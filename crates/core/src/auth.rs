//! Passwords and tokens: argon2 hashing off the async runtime, token hashing, expiry.

use crate::backend::TokenHash;
use crate::error::{Error, Result};
use argon2::Argon2;
use argon2::password_hash::phc::PasswordHash;
use argon2::password_hash::{PasswordHasher, PasswordVerifier};
use sha2::{Digest, Sha256};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;
use tokio::sync::{Semaphore, SemaphorePermit};

/// Hashes and verifies passwords with argon2id.
///
/// A hash costs tens of milliseconds of CPU, so it runs on the blocking pool, and a semaphore
/// (one permit per core) keeps a login storm from taking every blocking thread. The queue in
/// front of it is bounded too: past `max_waiting` hashes waiting, more are refused at once with
/// `overloaded` (and a `Retry-After`), so a flood of bad logins cannot make a good one wait
/// for hundreds of hashes.
#[derive(Clone)]
pub struct PasswordHasherPool {
    permits: Arc<Semaphore>,
    waiting: Arc<AtomicUsize>,
    max_waiting: usize,
}

/// What a refused hash is told to wait before trying again.
const BUSY_RETRY: Duration = Duration::from_secs(1);

impl PasswordHasherPool {
    /// A pool allowing `parallelism` hashes at once and `max_waiting` more in line.
    pub fn new(parallelism: usize, max_waiting: usize) -> PasswordHasherPool {
        PasswordHasherPool {
            permits: Arc::new(Semaphore::new(parallelism.max(1))),
            waiting: Arc::new(AtomicUsize::new(0)),
            max_waiting,
        }
    }

    /// A core to hash on: at once if one is free, else a place in the bounded line.
    async fn permit(&self) -> Result<SemaphorePermit<'_>> {
        if let Ok(p) = self.permits.try_acquire() {
            return Ok(p);
        }
        if self.waiting.fetch_add(1, Ordering::AcqRel) >= self.max_waiting {
            self.waiting.fetch_sub(1, Ordering::AcqRel);
            return Err(Error::overloaded(
                "too many password checks in progress; retry shortly",
                BUSY_RETRY,
            ));
        }
        // Counted out on every path, the waiting future dropped by a client that left included.
        struct InLine<'a>(&'a AtomicUsize);
        impl Drop for InLine<'_> {
            fn drop(&mut self) {
                self.0.fetch_sub(1, Ordering::AcqRel);
            }
        }
        let _in_line = InLine(&self.waiting);
        self.permits
            .acquire()
            .await
            .map_err(|_| Error::new(switchboard_proto::ErrorCode::Unavailable, "shutting down"))
    }

    /// The argon2 PHC string for `password`.
    pub async fn hash(&self, password: String) -> Result<String> {
        let _permit = self.permit().await?;
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
        let _permit = self.permit().await?;
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
