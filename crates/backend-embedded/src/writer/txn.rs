//! The batch's write transaction, begun and committed with statements prepared once.
//!
//! rusqlite's `Transaction` runs `BEGIN IMMEDIATE` and `COMMIT` with `execute_batch`, which
//! parses the SQL text again every time: callgrind counted about 4,700 instructions per commit
//! for the two parses, the statements' set-up and their finalizing (5% of a direct message's
//! instructions when each commit carries one). [`WriteTxn`] runs the two held by the writer's
//! [`Statements`] and keeps rusqlite's semantics otherwise: dropped without a successful commit,
//! it rolls back whatever the database still holds open (that statement from the connection's
//! cache: failures are rare).

use crate::messages::Statements;
use rusqlite::Connection;
use std::ops::Deref;

/// A write transaction on the writer's connection (see the module comment). Derefs to the
/// connection, as rusqlite's `Transaction` does.
pub(crate) struct WriteTxn<'c> {
    conn: &'c Connection,
    committed: bool,
}

/// Runs one statement without parameters or rows (transaction control: `BEGIN`, `COMMIT`,
/// `ROLLBACK`, savepoints) from the connection's statement cache, so that its text is parsed
/// once per connection.
pub(crate) fn run_cached(conn: &Connection, sql: &str) -> rusqlite::Result<()> {
    conn.prepare_cached(sql)?.execute([]).map(drop)
}

impl<'c> WriteTxn<'c> {
    /// Begins an immediate transaction (the write lock taken at once, as the writer is the
    /// only writer) on the connection of `stmts`.
    pub(crate) fn begin(stmts: &mut Statements<'c>) -> rusqlite::Result<WriteTxn<'c>> {
        stmts.begin()?;
        Ok(WriteTxn {
            conn: stmts.conn(),
            committed: false,
        })
    }

    /// Commits. On an error the transaction may still be open; it is rolled back when `self`
    /// is dropped, here.
    pub(crate) fn commit(mut self, stmts: &mut Statements<'c>) -> rusqlite::Result<()> {
        stmts.commit()?;
        self.committed = true;
        Ok(())
    }
}

impl Deref for WriteTxn<'_> {
    type Target = Connection;

    fn deref(&self) -> &Connection {
        self.conn
    }
}

impl Drop for WriteTxn<'_> {
    fn drop(&mut self) {
        // The database may have ended the transaction itself (it rolls back on some errors).
        if self.committed || self.conn.is_autocommit() {
            return;
        }
        if let Err(e) = run_cached(self.conn, "ROLLBACK") {
            tracing::error!(error = %e, "rolling back the batch's transaction failed");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn db() -> Connection {
        let conn = Connection::open_in_memory().unwrap();
        conn.execute_batch("CREATE TABLE t (x INTEGER)").unwrap();
        conn
    }

    fn count(conn: &Connection) -> i64 {
        conn.query_row("SELECT count(*) FROM t", [], |r| r.get(0))
            .unwrap()
    }

    /// One row written in a transaction of its own, committed.
    fn commit_one(stmts: &mut Statements<'_>) {
        let tx = WriteTxn::begin(stmts).unwrap();
        tx.execute("INSERT INTO t VALUES (1)", []).unwrap();
        tx.commit(stmts).unwrap();
    }

    #[test]
    fn a_commit_keeps_the_writes_and_ends_the_transaction() {
        let conn = db();
        let mut stmts = Statements::new(&conn);
        for round in 1..=3 {
            let tx = WriteTxn::begin(&mut stmts).unwrap();
            assert!(!tx.is_autocommit());
            tx.execute("INSERT INTO t VALUES (1)", []).unwrap();
            tx.commit(&mut stmts).unwrap();
            assert!(conn.is_autocommit());
            assert_eq!(count(&conn), round);
        }
    }

    #[test]
    fn a_drop_without_commit_rolls_back() {
        let conn = db();
        let mut stmts = Statements::new(&conn);
        {
            let tx = WriteTxn::begin(&mut stmts).unwrap();
            tx.execute("INSERT INTO t VALUES (1)", []).unwrap();
        }
        assert!(conn.is_autocommit());
        assert_eq!(count(&conn), 0);
        // The connection is usable again, and the held statements too.
        commit_one(&mut stmts);
        assert_eq!(count(&conn), 1);
    }

    #[test]
    fn a_failed_commit_is_rolled_back() {
        let conn = db();
        conn.execute_batch(
            "CREATE TABLE p (id INTEGER PRIMARY KEY);
             CREATE TABLE c (p INTEGER REFERENCES p(id) DEFERRABLE INITIALLY DEFERRED);
             PRAGMA foreign_keys = ON;",
        )
        .unwrap();
        let mut stmts = Statements::new(&conn);
        let tx = WriteTxn::begin(&mut stmts).unwrap();
        tx.execute("INSERT INTO t VALUES (1)", []).unwrap();
        // A deferred foreign key fails only at COMMIT, which leaves the transaction open.
        tx.execute("INSERT INTO c VALUES (7)", []).unwrap();
        assert!(tx.commit(&mut stmts).is_err());
        assert!(
            conn.is_autocommit(),
            "the failed commit was not rolled back"
        );
        assert_eq!(count(&conn), 0);
        // The held COMMIT works again after the failed one.
        conn.execute_batch("PRAGMA foreign_keys = OFF").unwrap();
        commit_one(&mut stmts);
        assert_eq!(count(&conn), 1);
    }

    #[test]
    fn a_transaction_the_database_ended_is_not_rolled_back_again() {
        let conn = db();
        let mut stmts = Statements::new(&conn);
        let tx = WriteTxn::begin(&mut stmts).unwrap();
        tx.execute("INSERT INTO t VALUES (1)", []).unwrap();
        tx.execute_batch("ROLLBACK").unwrap();
        drop(tx);
        assert!(conn.is_autocommit());
        assert_eq!(count(&conn), 0);
    }
}
