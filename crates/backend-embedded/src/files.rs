//! Who may read the data directory: its owner alone.
//!
//! The database holds every direct message and every password hash, so the directory is made
//! `0700` and the database files `0600`, whatever the process's umask. A directory or file made
//! by an older version (world-readable under the usual umask 022) is tightened when the backend
//! opens it, with a log line naming the old mode. SQLite gives the `-wal` and `-shm` files the
//! mode of the database file, so creating the database file `0600` first covers them too; they
//! are still checked, for files left by an older version.

use std::fs::{self, OpenOptions};
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt, PermissionsExt};
use std::path::Path;
use switchboard_core::backend::BackendError;

/// Mode of the data directory.
pub(crate) const DIR_MODE: u32 = 0o700;
/// Mode of every database file.
pub(crate) const FILE_MODE: u32 = 0o600;

fn io_error(what: &str, path: &Path, e: std::io::Error) -> BackendError {
    BackendError::Internal(format!("{what} {}: {e}", path.display()))
}

/// Creates `dir` (and its missing parents) `0700`, or tightens an existing one to `0700`.
pub(crate) fn prepare_dir(dir: &Path) -> Result<(), BackendError> {
    fs::DirBuilder::new()
        .recursive(true)
        .mode(DIR_MODE)
        .create(dir)
        .map_err(|e| io_error("creating data dir", dir, e))?;
    tighten(dir, DIR_MODE)
}

/// Creates the database file `0600` if it is missing, and tightens it and its `-wal` and
/// `-shm` files to `0600` if they exist.
pub(crate) fn prepare_db(db: &Path) -> Result<(), BackendError> {
    OpenOptions::new()
        .create(true)
        .append(true)
        .mode(FILE_MODE)
        .open(db)
        .map_err(|e| io_error("creating database file", db, e))?;
    for suffix in ["", "-wal", "-shm", "-journal"] {
        let mut name = db.as_os_str().to_owned();
        name.push(suffix);
        let path = Path::new(&name);
        if path.exists() {
            tighten(path, FILE_MODE)?;
        }
    }
    Ok(())
}

/// Removes every permission bit not in `mode` (for group and others), logging when it did.
fn tighten(path: &Path, mode: u32) -> Result<(), BackendError> {
    let meta = fs::metadata(path).map_err(|e| io_error("reading the mode of", path, e))?;
    let old = meta.permissions().mode() & 0o7777;
    let new = old & mode;
    if new != old {
        fs::set_permissions(path, fs::Permissions::from_mode(new))
            .map_err(|e| io_error("restricting the mode of", path, e))?;
        tracing::warn!(
            path = %path.display(),
            old = format!("{old:04o}"),
            new = format!("{new:04o}"),
            "embedded backend: restricted the permissions of the data directory to its owner"
        );
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_open_directory_and_file_are_tightened() {
        let tmp = tempfile::tempdir().expect("tempdir");
        let dir = tmp.path().join("data");
        fs::create_dir(&dir).expect("mkdir");
        fs::set_permissions(&dir, fs::Permissions::from_mode(0o755)).expect("chmod");
        let db = dir.join("x.db");
        fs::write(&db, b"").expect("write");
        fs::set_permissions(&db, fs::Permissions::from_mode(0o644)).expect("chmod");
        prepare_dir(&dir).expect("dir");
        prepare_db(&db).expect("db");
        let mode = |p: &Path| fs::metadata(p).expect("meta").permissions().mode() & 0o777;
        assert_eq!(mode(&dir), 0o700);
        assert_eq!(mode(&db), 0o600);
    }
}
