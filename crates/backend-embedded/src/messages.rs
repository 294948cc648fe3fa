//! The writer's message SQL (schema version 5): a message is one `messages` row and one
//! `entries` row per stream it is in (two for a direct message: the recipient's stream and the
//! sender's copy), its idempotency key on the message row. The entries are written after the
//! row, in the index's steps (the index and tail modules). A row lives as long as one of its
//! entries; when the last goes before the key has expired, the key moves to the `idempotency`
//! table so that a retry is still answered with the original receipt.
//!
//! The statements of the append path and of the batch's transaction are prepared once and held
//! for the writer's life ([`Statements`]), not looked up in the connection's statement cache for
//! every use: each lookup hashes the SQL text, and each return to the cache copies it into a new
//! key (about 1,200 instructions a use under callgrind, 5% of a direct message's).

use crate::error::DbResultExt;
use rusqlite::{CachedStatement, Connection, OptionalExtension, params};
use switchboard_core::backend::{BackendError, Receipt};
use switchboard_proto::{Conv, Message};

/// Rows deleted per maintenance transaction, so that a large backlog never stalls appends.
pub(crate) const MAINTENANCE_CHUNK: i64 = 10_000;

/// A key lookup: the receipt of the newest message stored with it, if the key is still live.
const RECEIPT: &str = "SELECT conv, seq, message_id, ts FROM messages
     WHERE key_owner = ?1 AND client_msg_id = ?2 AND ts >= ?3 ORDER BY id DESC LIMIT 1";
/// A key whose message is gone (see the module comment).
const SPILLED_RECEIPT: &str = "SELECT conv, seq, message_id, ts FROM idempotency
     WHERE owner = ?1 AND client_msg_id = ?2";
const INSERT_MESSAGE: &str = "INSERT INTO messages (conv, seq, copy_conv, copy_seq, message_id,
         from_user, to_user, ts, key_owner, client_msg_id, body, id)
     VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12)";
/// A conversation's committed head: the larger of its `convs` row and its newest entry (and of
/// its unindexed entries, which the caller adds: see the tail module).
const HEAD: &str = "SELECT (SELECT head FROM convs WHERE conv = ?1),
        (SELECT max(seq) FROM entries WHERE conv = ?1)";
/// A conversation's row, written by the first batch that appends to it.
const RECORD: &str = "INSERT INTO convs (conv, head) VALUES (?1, ?2) ON CONFLICT (conv) DO NOTHING";
/// The batch's transaction (the write lock taken at once: the writer is the only writer).
const BEGIN: &str = "BEGIN IMMEDIATE";
const COMMIT: &str = "COMMIT";

/// The writer's statements: the append path's and the batch's `BEGIN`, `COMMIT` and
/// conversation record, each prepared on first use and kept as long as `self` (the writer's
/// life; a test's batch).
pub(crate) struct Statements<'c> {
    conn: &'c Connection,
    receipt: Option<CachedStatement<'c>>,
    spilled: Option<CachedStatement<'c>>,
    insert: Option<CachedStatement<'c>>,
    head: Option<CachedStatement<'c>>,
    record: Option<CachedStatement<'c>>,
    begin: Option<CachedStatement<'c>>,
    commit: Option<CachedStatement<'c>>,
}

/// The statement in `slot`, prepared from `sql` on its first use.
fn slot<'a, 'c>(
    conn: &'c Connection,
    slot: &'a mut Option<CachedStatement<'c>>,
    sql: &str,
) -> rusqlite::Result<&'a mut CachedStatement<'c>> {
    Ok(match slot {
        Some(stmt) => stmt,
        None => slot.insert(conn.prepare_cached(sql)?),
    })
}

/// [`slot`] for the append path's statements, its error the backend's.
fn prepared<'a, 'c>(
    conn: &'c Connection,
    stmt: &'a mut Option<CachedStatement<'c>>,
    sql: &str,
) -> Result<&'a mut CachedStatement<'c>, BackendError> {
    slot(conn, stmt, sql).ctx("preparing a statement")
}

/// Runs the parameterless statement in `stmt` (transaction control), prepared on first use.
fn run<'c>(
    conn: &'c Connection,
    stmt: &mut Option<CachedStatement<'c>>,
    sql: &str,
) -> rusqlite::Result<()> {
    slot(conn, stmt, sql)?.execute([]).map(drop)
}

/// One message row to insert: the stored message of its first stream, and where its copy went.
pub(crate) struct NewMessage<'a> {
    /// The message as stored in its first stream (the receipt's).
    pub first: &'a Message,
    /// The copy's stream and seq (a direct message's sender's copy).
    pub copy: Option<(&'a Conv, u64)>,
    /// Who the idempotency key belongs to (only stored with a `client_msg_id`).
    pub key_owner: &'a str,
}

impl<'c> Statements<'c> {
    /// Nothing prepared yet.
    pub(crate) fn new(conn: &'c Connection) -> Statements<'c> {
        Statements {
            conn,
            receipt: None,
            spilled: None,
            insert: None,
            head: None,
            record: None,
            begin: None,
            commit: None,
        }
    }

    /// The connection the statements run on.
    pub(crate) fn conn(&self) -> &'c Connection {
        self.conn
    }

    /// Begins the batch's transaction (see [`crate::writer`]'s `WriteTxn`).
    pub(crate) fn begin(&mut self) -> rusqlite::Result<()> {
        run(self.conn, &mut self.begin, BEGIN)
    }

    /// Commits the batch's transaction.
    pub(crate) fn commit(&mut self) -> rusqlite::Result<()> {
        run(self.conn, &mut self.commit, COMMIT)
    }

    /// Writes `conv`'s row with `head`, unless it has one.
    pub(crate) fn record(&mut self, conv: &Conv, head: u64) -> Result<(), BackendError> {
        prepared(self.conn, &mut self.record, RECORD)?
            .execute(params![conv.as_str(), to_i64(head)])
            .ctx("recording a conversation")
            .map(drop)
    }

    /// The original receipt of a live key: on its message row (if stored at `not_before` or
    /// later), else, if `spilled` (the `idempotency` table may hold keys), there.
    pub(crate) fn receipt(
        &mut self,
        owner: &str,
        cmid: &str,
        not_before: u64,
        spilled: bool,
    ) -> Result<Option<Receipt>, BackendError> {
        let read = |r: &rusqlite::Row<'_>| -> rusqlite::Result<(String, i64, String, i64)> {
            Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?))
        };
        let mut row = prepared(self.conn, &mut self.receipt, RECEIPT)?
            .query_row(params![owner, cmid, to_i64(not_before)], read)
            .optional()
            .ctx("reading an idempotency key")?;
        if row.is_none() && spilled {
            row = prepared(self.conn, &mut self.spilled, SPILLED_RECEIPT)?
                .query_row([owner, cmid], read)
                .optional()
                .ctx("reading an idempotency key")?;
        }
        let Some((conv, seq, message_id, ts)) = row else {
            return Ok(None);
        };
        let conv = Conv::parse(&conv).ok_or_else(|| {
            BackendError::Internal(format!("idempotency key names a bad conversation {conv:?}"))
        })?;
        Ok(Some(Receipt {
            conv,
            seq: crate::reads::to_u64(seq),
            message_id,
            ts: crate::reads::to_u64(ts),
        }))
    }

    /// The committed head of `conv` as stored: (`convs` row, newest entry).
    pub(crate) fn head(&mut self, conv: &Conv) -> Result<(Option<i64>, Option<i64>), BackendError> {
        prepared(self.conn, &mut self.head, HEAD)?
            .query_row([conv.as_str()], |r| Ok((r.get(0)?, r.get(1)?)))
            .ctx("loading a conversation head")
    }

    /// Stores a message once as row `id`, by which the index's step writes its stream entries
    /// later.
    pub(crate) fn insert(&mut self, id: i64, m: NewMessage<'_>) -> Result<(), BackendError> {
        let first = m.first;
        prepared(self.conn, &mut self.insert, INSERT_MESSAGE)?
            .execute(params![
                first.conv.as_str(),
                to_i64(first.seq),
                m.copy.map(|(c, _)| c.as_str()),
                m.copy.map(|(_, s)| to_i64(s)),
                first.message_id,
                first.from,
                first.to,
                to_i64(first.ts),
                first.client_msg_id.as_ref().map(|_| m.key_owner),
                first.client_msg_id,
                first.body.get(),
                id
            ])
            .ctx("inserting a message")?;
        Ok(())
    }
}

/// A stored integer from a `u64` (ids, seqs and times stay far below `i64::MAX`).
pub(crate) fn to_i64(v: u64) -> i64 {
    i64::try_from(v).unwrap_or(i64::MAX)
}

/// The `idempotency` table holds keys (a key lookup must look there too).
pub(crate) fn has_spilled_keys(conn: &Connection) -> Result<bool, BackendError> {
    conn.prepare_cached("SELECT EXISTS (SELECT 1 FROM idempotency)")
        .and_then(|mut s| s.query_row([], |r| r.get(0)))
        .ctx("looking for spilled idempotency keys")
}
