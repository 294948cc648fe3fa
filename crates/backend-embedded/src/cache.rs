//! In-memory caches in front of SQLite reads that every connection or publish makes.
//!
//! On this backend one process owns every write to the database, which makes exact caches cheap.
//!
//! **Auth sessions** ([`SessionCache`]). Every connection looks its token up, so a reconnect storm
//! is a storm of these reads. A session is cached when it is created (after its commit) or first
//! read, and removed when it is deleted (after that commit). Expiry needs no bookkeeping: the entry
//! carries `expires_at_ms`, which the caller checks as it would for a stored row. The one race is
//! a read that began before a delete and fills the cache after it. Revoking every session of a
//! user scans the map (rare, and at most [`MAX_CACHED`] entries). A generation counter closes it:
//! deletes bump it under the lock, and a fill is dropped when the generation moved since its read
//! began.
//!
//! **Conversations with stored messages** ([`StoredConvs`]). Every connection reads the position
//! of its own stream, and most users' streams are empty: a conversation not in this set has
//! head 0 and nothing stored, which needs no read. The set is loaded from the `convs` table at
//! open, and the writer adds a conversation *before* committing its first message, so a reader
//! that does not find it cannot have missed a commit. It never shrinks (a trimmed conversation
//! keeps its head). One entry per conversation that ever had a message.
//!
//! **Users and rooms** ([`RecordCache`]). Neither is ever changed or deleted once created, so a
//! record read (or created) once can be answered from memory; absence is never cached. Every
//! direct message checks its recipient, every room publish reads its room.

use crate::error::DbResultExt;
use parking_lot::{Mutex, RwLock};
use rusqlite::Connection;
use std::collections::{HashMap, HashSet};
use std::hash::Hash;
use std::sync::Arc;
use switchboard_core::backend::{AuthSession, BackendError, TokenHash};
use switchboard_proto::Conv;

/// Entries kept per cache; past this an arbitrary entry is evicted per insertion (it is then
/// read from SQLite again when used). About 150 bytes each.
pub(crate) const MAX_CACHED: usize = 200_000;

#[derive(Default)]
struct Inner {
    map: HashMap<TokenHash, AuthSession>,
    generation: u64,
}

/// Auth sessions by token hash (see the module comment).
#[derive(Default)]
pub(crate) struct SessionCache {
    inner: Mutex<Inner>,
}

impl SessionCache {
    /// The cached session, if any.
    pub(crate) fn get(&self, hash: &TokenHash) -> Option<AuthSession> {
        self.inner.lock().map.get(hash).cloned()
    }

    /// To be read before a store read whose result may be given to [`SessionCache::fill`].
    pub(crate) fn generation(&self) -> u64 {
        self.inner.lock().generation
    }

    /// Caches a session read from the store, unless a delete happened since `generation`.
    pub(crate) fn fill(&self, hash: TokenHash, session: AuthSession, generation: u64) {
        let mut inner = self.inner.lock();
        if inner.generation == generation {
            bounded_insert(&mut inner.map, hash, session);
        }
    }

    /// Caches a session that was just committed.
    pub(crate) fn created(&self, hash: TokenHash, session: AuthSession) {
        bounded_insert(&mut self.inner.lock().map, hash, session);
    }

    /// Forgets a session whose deletion was just committed.
    pub(crate) fn deleted(&self, hash: &TokenHash) {
        let mut inner = self.inner.lock();
        inner.map.remove(hash);
        inner.generation += 1;
    }

    /// Forgets every session of `user_id` but `except` (a session id) after their deletion
    /// was committed (or failed: a cached session must never outlive its row).
    pub(crate) fn deleted_user(&self, user_id: &str, except: Option<&str>) {
        let mut inner = self.inner.lock();
        inner
            .map
            .retain(|_, s| s.user_id != user_id || Some(s.session_id.as_str()) == except);
        inner.generation += 1;
    }

    /// Sessions cached now.
    #[cfg(test)]
    pub(crate) fn len(&self) -> usize {
        self.inner.lock().map.len()
    }
}

fn bounded_insert<K: Eq + Hash + Clone, V>(map: &mut HashMap<K, V>, key: K, value: V) {
    if map.len() >= MAX_CACHED
        && !map.contains_key(&key)
        && let Some(victim) = map.keys().next().cloned()
    {
        map.remove(&victim);
    }
    map.insert(key, value);
}

/// Conversations that have ever had a message (see the module comment).
pub(crate) struct StoredConvs {
    set: RwLock<HashSet<Conv>>,
}

impl StoredConvs {
    /// Every conversation of the `convs` table.
    pub(crate) fn load(conn: &Connection) -> Result<StoredConvs, BackendError> {
        let mut set = HashSet::new();
        let mut stmt = conn
            .prepare("SELECT conv FROM convs")
            .ctx("reading conversations")?;
        let rows = stmt
            .query_map([], |r| r.get::<_, String>(0))
            .ctx("reading conversations")?;
        for name in rows {
            let name = name.ctx("reading a conversation")?;
            match Conv::parse(&name) {
                Some(conv) => {
                    set.insert(conv);
                }
                None => tracing::warn!(conv = %name, "stored conversation with an invalid name"),
            }
        }
        Ok(StoredConvs {
            set: RwLock::new(set),
        })
    }

    /// False when `conv` certainly has no message stored and a head of 0.
    pub(crate) fn may_have_messages(&self, conv: &Conv) -> bool {
        self.set.read().contains(conv)
    }

    /// Called by the writer before committing messages of `convs`.
    pub(crate) fn add<'a>(&self, convs: impl Iterator<Item = &'a Conv>) {
        let fresh: Vec<Conv> = {
            let set = self.set.read();
            convs.filter(|c| !set.contains(*c)).cloned().collect()
        };
        if !fresh.is_empty() {
            self.set.write().extend(fresh);
        }
    }

    /// Conversations in the set.
    #[cfg(test)]
    pub(crate) fn len(&self) -> usize {
        self.set.read().len()
    }
}

/// Immutable records (users, rooms) by id (see the module comment).
pub(crate) struct RecordCache<V> {
    map: Mutex<HashMap<Arc<str>, V>>,
}

impl<V> Default for RecordCache<V> {
    fn default() -> Self {
        RecordCache {
            map: Mutex::new(HashMap::new()),
        }
    }
}

impl<V: Clone> RecordCache<V> {
    /// The cached record, if any.
    pub(crate) fn get(&self, id: &str) -> Option<V> {
        self.map.lock().get(id).cloned()
    }

    /// Caches a record that exists (read, or created and committed).
    pub(crate) fn put(&self, id: &str, record: V) {
        bounded_insert(&mut self.map.lock(), Arc::from(id), record);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn session(id: &str) -> AuthSession {
        AuthSession {
            session_id: id.into(),
            user_id: "u".into(),
            expires_at_ms: u64::MAX,
        }
    }

    #[test]
    fn a_fill_that_raced_a_delete_is_dropped() {
        let cache = SessionCache::default();
        let before = cache.generation();
        // The read saw the row; the delete committed before the fill.
        cache.deleted(&[1; 32]);
        cache.fill([1; 32], session("s"), before);
        assert!(cache.get(&[1; 32]).is_none());
        // A read that began after the delete fills normally.
        let after = cache.generation();
        cache.fill([2; 32], session("t"), after);
        assert_eq!(cache.get(&[2; 32]).map(|s| s.session_id), Some("t".into()));
    }

    #[test]
    fn stored_convs_load_and_grow() {
        let conn = Connection::open_in_memory().expect("sqlite");
        conn.execute_batch(
            "CREATE TABLE convs (conv TEXT PRIMARY KEY, head INTEGER NOT NULL);
             INSERT INTO convs VALUES ('room:a', 3), ('user:u1', 1);",
        )
        .expect("schema");
        let stored = StoredConvs::load(&conn).expect("load");
        assert!(stored.may_have_messages(&Conv::room("a")));
        assert!(stored.may_have_messages(&Conv::user("u1")));
        assert!(!stored.may_have_messages(&Conv::room("b")));
        stored.add([Conv::room("b"), Conv::room("a")].iter());
        assert!(stored.may_have_messages(&Conv::room("b")));
        assert_eq!(stored.len(), 3);
    }

    #[test]
    fn records_are_bounded() {
        let cache = RecordCache::default();
        for i in 0..MAX_CACHED + 10 {
            cache.put(&i.to_string(), i);
        }
        assert_eq!(cache.map.lock().len(), MAX_CACHED);
        assert_eq!(
            cache.get(&(MAX_CACHED + 9).to_string()),
            Some(MAX_CACHED + 9)
        );
    }

    #[test]
    fn created_then_deleted_is_gone() {
        let cache = SessionCache::default();
        cache.created([3; 32], session("s"));
        assert!(cache.get(&[3; 32]).is_some());
        cache.deleted(&[3; 32]);
        assert!(cache.get(&[3; 32]).is_none());
        assert_eq!(cache.len(), 0);
    }
}
