//! The stream index's SQL: each partition's progress (`index_marks`), a step that writes a
//! partition's entries into `entries`, and the recovery on open of what a crash left unindexed.
//!
//! A message row is committed with its `published` answer; its stream entries follow in a later
//! step (the tail module says why and how reads stay complete meanwhile). A partition's mark is
//! the `messages.id` up to which every entry of its conversations is in `entries`: a step writes
//! the entries and raises the mark in one transaction. So after a crash, the entries missing are
//! exactly those of rows above their partition's mark, and opening the database writes them
//! before anything else runs (see [`recover`]).

use crate::error::DbResultExt;
use crate::tail::{Entry, PARTITIONS, partition};
use rusqlite::{Connection, OptionalExtension, TransactionBehavior, params};
use switchboard_core::backend::BackendError;
use switchboard_proto::Conv;

/// The meta key of the partition count the marks were written with.
const PARTS_KEY: &str = "index_partitions";

/// What recovery trims to: the count limit (0: none), and how long idempotency keys answer
/// (a trimmed message's live key moves to the `idempotency` table).
#[derive(Debug, Clone, Copy)]
pub(crate) struct Retention {
    /// Messages kept per conversation; 0 keeps all.
    pub max_messages: u64,
    /// How long a key answers, in ms.
    pub key_retention_ms: u64,
}

/// Writes every entry a crash left unindexed, trims the conversations it wrote to
/// `retention`'s count limit (their step would have), and sets every partition's mark to the
/// newest row (one mark per [`PARTITIONS`]). A database without marks (new, or from version 4,
/// which indexed each message as it stored it) is indexed up to its newest row.
pub(crate) fn recover(
    conn: &mut Connection,
    retention: Option<Retention>,
) -> Result<(), BackendError> {
    let tx = conn
        .transaction_with_behavior(TransactionBehavior::Immediate)
        .ctx("beginning the index's recovery")?;
    let newest: i64 = tx
        .query_row("SELECT coalesce(max(id), 0) FROM messages", [], |r| {
            r.get(0)
        })
        .ctx("reading the newest message")?;
    let parts: usize = tx
        .query_row("SELECT value FROM meta WHERE key = ?1", [PARTS_KEY], |r| {
            r.get::<_, String>(0)
        })
        .optional()
        .ctx("reading the index's partitions")?
        .and_then(|v| v.parse().ok())
        .unwrap_or(PARTITIONS);
    let (marks, stored) = stored_marks(&tx, parts.max(1), newest)?;
    let mut written = 0usize;
    // The newest seq written per conversation.
    let mut heads: std::collections::HashMap<String, i64> = std::collections::HashMap::new();
    if stored {
        let low = marks.iter().copied().min().unwrap_or(newest);
        let mut rows = tx
            .prepare(
                "SELECT id, conv, seq, copy_conv, copy_seq FROM messages WHERE id > ?1 ORDER BY id",
            )
            .ctx("reading unindexed messages")?;
        let mut insert = tx
            .prepare("INSERT OR IGNORE INTO entries (conv, seq, msg) VALUES (?1, ?2, ?3)")
            .ctx("preparing the index's recovery")?;
        let mut q = rows.query([low]).ctx("reading unindexed messages")?;
        while let Some(r) = q.next().ctx("reading an unindexed message")? {
            let id: i64 = r.get(0).ctx("reading a message id")?;
            let first: (String, i64) = (r.get(1).ctx("reading")?, r.get(2).ctx("reading")?);
            let copy: Option<String> = r.get(3).ctx("reading")?;
            let copy_seq: Option<i64> = r.get(4).ctx("reading")?;
            let streams = std::iter::once(first).chain(copy.zip(copy_seq));
            for (conv, seq) in streams {
                if id > marks[partition(&conv, parts)] {
                    written += insert
                        .execute(params![conv, seq, id])
                        .ctx("indexing an unindexed message")?;
                    let head = heads.entry(conv).or_insert(seq);
                    *head = (*head).max(seq);
                }
            }
        }
    }
    if let Some(r) = retention.filter(|r| r.max_messages > 0) {
        // Every row is written now: no row waits for another partition.
        let all = vec![newest; PARTITIONS];
        for (name, head) in heads {
            let (Some(conv), Ok(head)) = (Conv::parse(&name), u64::try_from(head)) else {
                continue;
            };
            if head > r.max_messages {
                crate::trimming::trim_stream(&tx, &conv, head - r.max_messages, &all)?;
            }
        }
    }
    if let Some(r) = retention {
        // What the count limit queued (by this recovery or before) is deleted now: opening is
        // rare, and a limit since removed queues nothing more to trigger it.
        let keys_from = crate::error::now_ms().saturating_sub(r.key_retention_ms);
        crate::trimming::delete_doomed(&tx, keys_from)?;
    }
    tx.execute("DELETE FROM index_marks", [])
        .ctx("resetting the index's marks")?;
    {
        let mut mark = tx
            .prepare("INSERT INTO index_marks (part, id) VALUES (?1, ?2)")
            .ctx("preparing the index's marks")?;
        for part in 0..PARTITIONS {
            mark.execute(params![part as i64, newest])
                .ctx("writing an index mark")?;
        }
    }
    tx.execute(
        "INSERT INTO meta (key, value) VALUES (?1, ?2)
         ON CONFLICT (key) DO UPDATE SET value = excluded.value",
        params![PARTS_KEY, PARTITIONS.to_string()],
    )
    .ctx("writing the index's partitions")?;
    tx.commit().ctx("committing the index's recovery")?;
    if written > 0 {
        tracing::info!(
            entries = written,
            "embedded backend: indexed the stream entries of messages stored before a crash"
        );
    }
    Ok(())
}

/// Writes a step's entries (sorted: each leaf of `entries` written once) and partition
/// `part`'s new mark, in the caller's transaction.
pub(crate) fn write_step(
    conn: &Connection,
    part: usize,
    entries: &[(Conv, Entry)],
    mark: i64,
) -> Result<(), BackendError> {
    let mut insert = conn
        .prepare_cached("INSERT INTO entries (conv, seq, msg) VALUES (?1, ?2, ?3)")
        .ctx("preparing to index")?;
    for (conv, e) in entries {
        insert
            .execute(params![conv.as_str(), crate::messages::to_i64(e.seq), e.id])
            .ctx("indexing a stream entry")?;
    }
    conn.prepare_cached("UPDATE index_marks SET id = ?2 WHERE part = ?1")
        .and_then(|mut s| s.execute(params![part as i64, mark]))
        .ctx("raising an index mark")?;
    Ok(())
}

/// Whether every entry of row `id` is in `entries`: `conv`'s and `copy`'s partitions are
/// indexed past it.
pub(crate) fn row_indexed(marks: &[i64], id: i64, conv: &str, copy: Option<&str>) -> bool {
    let past = |c: &str| marks[partition(c, marks.len())] >= id;
    past(conv) && copy.is_none_or(past)
}

/// Every partition's mark as stored (a partition without one counts as indexed nowhere, which
/// only keeps rows longer).
pub(crate) fn load_marks(conn: &Connection) -> Result<Vec<i64>, BackendError> {
    Ok(stored_marks(conn, PARTITIONS, 0)?.0)
}

/// The marks of `parts` partitions as stored, `missing` for a partition without one, and
/// whether any was stored.
fn stored_marks(
    conn: &Connection,
    parts: usize,
    missing: i64,
) -> Result<(Vec<i64>, bool), BackendError> {
    let mut marks = vec![missing; parts];
    let mut stored = false;
    let mut stmt = conn
        .prepare("SELECT part, id FROM index_marks")
        .ctx("reading the index's marks")?;
    let rows = stmt
        .query_map([], |r| Ok((r.get::<_, i64>(0)?, r.get::<_, i64>(1)?)))
        .ctx("reading the index's marks")?;
    for row in rows {
        let (part, id) = row.ctx("reading an index mark")?;
        if let Some(m) = usize::try_from(part).ok().and_then(|p| marks.get_mut(p)) {
            *m = id;
            stored = true;
        }
    }
    Ok((marks, stored))
}
