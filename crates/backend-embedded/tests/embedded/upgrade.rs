//! What opening a data directory does to what it finds: the directory and files are made
//! private to their owner, and usernames of an older schema get their case-insensitive keys.

use crate::common;

use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use switchboard_conformance::RecordingSink;
use switchboard_core::backend::BackendError;

fn mode(path: &Path) -> u32 {
    std::fs::metadata(path)
        .expect("metadata")
        .permissions()
        .mode()
        & 0o777
}

/// A fresh data directory is 0700 and its database files 0600, whatever the umask allows (the
/// test process's umask is typically 022, which left them world-readable).
#[tokio::test]
async fn a_new_data_directory_is_private() {
    let tmp = tempfile::tempdir().expect("temp dir");
    let dir = tmp.path().join("data");
    let backend = common::open(&dir, 0, RecordingSink::new());
    let b = backend.backend();
    b.store.create_user("alice", "h").await.expect("a write");
    assert_eq!(mode(&dir), 0o700, "data dir");
    for name in ["switchboard.db", "switchboard.db-wal", "switchboard.db-shm"] {
        let path = dir.join(name);
        assert!(path.exists(), "{name} exists");
        assert_eq!(mode(&path), 0o600, "{name}");
    }
    b.lifecycle.close().await;
}

/// A data directory left world-readable by an older version is tightened when opened.
#[tokio::test]
async fn an_existing_open_data_directory_is_tightened() {
    let tmp = tempfile::tempdir().expect("temp dir");
    let dir = tmp.path().join("data");
    let backend = common::open(&dir, 0, RecordingSink::new());
    backend.backend().lifecycle.close().await;
    drop(backend);
    std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o755)).expect("chmod");
    let db = dir.join("switchboard.db");
    std::fs::set_permissions(&db, std::fs::Permissions::from_mode(0o644)).expect("chmod");

    let backend = common::open(&dir, 0, RecordingSink::new());
    assert_eq!(mode(&dir), 0o700);
    assert_eq!(mode(&db), 0o600);
    backend.backend().lifecycle.close().await;
}

/// A version-2 database, where names compared exactly, holding `alice` and, registered later,
/// `Alice`: on open the older keeps the name (and its key), the newer still logs in with its
/// exact spelling, and no third spelling can be registered.
#[tokio::test]
async fn version_2_usernames_get_keys_and_older_names_win() {
    let tmp = tempfile::tempdir().expect("temp dir");
    let dir = tmp.path().join("data");
    std::fs::create_dir(&dir).expect("mkdir");
    {
        let old = rusqlite::Connection::open(dir.join("switchboard.db")).expect("v2 file");
        old.execute_batch(
            "CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL) WITHOUT ROWID;
             INSERT INTO meta VALUES ('schema_version', '2'), ('epoch', '00000000000000e2');
             CREATE TABLE users (user_id TEXT PRIMARY KEY, username TEXT UNIQUE,
                 password_hash TEXT, created_at INTEGER NOT NULL);
             INSERT INTO users VALUES ('u_old', 'alice', 'h-old', 1),
                 ('u_new', 'Alice', 'h-new', 2), ('u_bob', 'Bob', 'h-bob', 3),
                 ('app-1', NULL, NULL, 4);",
        )
        .expect("v2 rows");
    }
    let backend = common::open(&dir, 0, RecordingSink::new());
    let s = backend.backend().store;
    let who = |creds: Option<switchboard_core::backend::UserCredentials>| {
        creds.map(|c| (c.user.user_id, c.password_hash))
    };
    let found = |name: &'static str| {
        let s = s.clone();
        async move { who(s.user_by_username(name).await.expect("lookup")) }
    };
    assert_eq!(
        found("alice").await,
        Some(("u_old".into(), Some("h-old".into())))
    );
    assert_eq!(
        found("Alice").await,
        Some(("u_new".into(), Some("h-new".into()))),
        "the newer spelling still logs in by its exact name"
    );
    assert_eq!(
        found("ALICE").await.map(|w| w.0),
        Some("u_old".into()),
        "other spellings are the older user"
    );
    assert_eq!(found("bob").await.map(|w| w.0), Some("u_bob".into()));
    for taken in ["ALICE", "aLiCe", "BOB", "ｂｏｂ"] {
        assert_eq!(
            s.create_user(taken, "h").await,
            Err(BackendError::UsernameTaken),
            "{taken}"
        );
    }
    s.create_user("carol", "h").await.expect("a new name");
    backend.backend().lifecycle.close().await;
}
