//! What leaves history: the count limit's trim of a stream and the queue of rows it leaves in no
//! stream (`doomed`, deleted together), the age limit's prefix of the table, and expired
//! idempotency keys. A row's idempotency key outlives it in the `idempotency` table while live.

use crate::error::DbResultExt;
use crate::messages::{MAINTENANCE_CHUNK, to_i64};
use rusqlite::{Connection, params};
use switchboard_core::backend::BackendError;
use switchboard_proto::Conv;

/// Rows queued in `doomed` that a step deletes together ([`delete_doomed`]).
pub(crate) const DOOMED_BATCH: usize = 4096;

/// [`trim_stream`]: queues the trimmed rows with no copy whose entry is their own (`?1` the
/// stream, `?2` the last seq trimmed, `?3` the stream's partition mark).
pub(crate) const QUEUE_ONE_STREAM: &str = "INSERT OR IGNORE INTO doomed (id)
     SELECT e.msg FROM entries AS e JOIN messages AS m ON m.id = e.msg
     WHERE e.conv = ?1 AND e.seq <= ?2 AND e.msg <= ?3
     AND m.copy_conv IS NULL AND m.conv = ?1 AND m.seq = e.seq";

/// [`trim_stream`]: every other trimmed row with neither its own entry nor its copy's left
/// outside the trimmed range (`?1` the stream, `?2` the last seq trimmed).
pub(crate) const LEFT_IN_NO_STREAM: &str =
    "SELECT m.id, m.conv, m.copy_conv FROM entries AS e JOIN messages AS m ON m.id = e.msg
     WHERE e.conv = ?1 AND e.seq <= ?2
     AND NOT (m.copy_conv IS NULL AND m.conv = ?1 AND m.seq = e.seq)
     AND NOT EXISTS (SELECT 1 FROM entries AS o WHERE o.conv = m.conv
         AND o.seq = m.seq AND NOT (o.conv = ?1 AND o.seq <= ?2))
     AND NOT EXISTS (SELECT 1 FROM entries AS o WHERE o.conv = m.copy_conv
         AND o.seq = m.copy_seq AND NOT (o.conv = ?1 AND o.seq <= ?2))";

/// Deletes the entries of `conv` up to `seq` (the count limit), and queues the messages left
/// in no stream (neither their own entry nor their copy's left) in the `doomed` table. Returns
/// how many it queued. A row any of whose partitions is not indexed past it (`marks`, one per
/// partition: the index module) is kept: its entry there may still be to be written.
///
/// Why a queue: a trimmed row is a stream's oldest, so the rows one step trims are scattered
/// over the table, and deleted at once each wrote a page of its own. Deleted later, thousands
/// at a time and in id order ([`delete_doomed`]), rows stored close together share their pages
/// (docs/PERFORMANCE.md, "sixteenth round"). Meanwhile a queued row is in no stream, so no read
/// finds it, and its key (if any) still answers a retry, as it would from `idempotency`.
pub(crate) fn trim_stream(
    conn: &Connection,
    conv: &Conv,
    seq: u64,
    marks: &[i64],
) -> Result<usize, BackendError> {
    debug_assert!(!marks.is_empty(), "one mark per partition");
    let (name, upto) = (conv.as_str(), to_i64(seq));
    // A row with no copy whose entry this is (every room message, every push) is in this
    // stream alone: its entry going leaves it in none. Queued in one statement (a busy room at
    // its limit trims hundreds of rows a step: a statement per row was a third of the step), if
    // its partition is indexed past it.
    let own_mark = marks[crate::tail::partition(name, marks.len())];
    let mut queued = conn
        .prepare_cached(QUEUE_ONE_STREAM)
        .and_then(|mut s| s.execute(params![name, upto, own_mark]))
        .ctx("queueing trimmed messages")?;
    // Any other row (a direct message: in two streams) is in none once neither its own entry
    // nor its copy's is left outside what this trim deletes. Found in one statement (the
    // sender's stream of a busy sender trims hundreds of rows a step, nearly all still in their
    // recipients' streams), then queued one by one if its partitions are indexed past it.
    let orphans: Vec<(i64, String, Option<String>)> = conn
        .prepare_cached(LEFT_IN_NO_STREAM)
        .and_then(|mut s| {
            s.query_map(params![name, upto], |r| {
                Ok((r.get(0)?, r.get(1)?, r.get(2)?))
            })?
            .collect::<rusqlite::Result<_>>()
        })
        .ctx("checking trimmed messages")?;
    conn.prepare_cached("DELETE FROM entries WHERE conv = ?1 AND seq <= ?2")
        .and_then(|mut s| s.execute(params![name, upto]))
        .ctx("trimming history")?;
    for (id, first, copy) in orphans {
        if crate::index::row_indexed(marks, id, &first, copy.as_deref()) {
            queued += conn
                .prepare_cached("INSERT OR IGNORE INTO doomed (id) VALUES (?1)")
                .and_then(|mut s| s.execute([id]))
                .ctx("queueing a trimmed message")?;
        }
    }
    Ok(queued)
}

/// Deletes the rows queued by [`trim_stream`], in id order, moving their keys stored at
/// `keys_from` or later to the `idempotency` table, and empties the queue. Returns whether a
/// key moved. (An id whose row age trimming deleted meanwhile matches nothing.)
pub(crate) fn delete_doomed(conn: &Connection, keys_from: u64) -> Result<bool, BackendError> {
    let moved = conn
        .prepare_cached(DOOMED_KEYS)
        .and_then(|mut s| s.execute([to_i64(keys_from)]))
        .ctx("keeping trimmed messages' keys")?;
    conn.prepare_cached(DOOMED_DELETE)
        .and_then(|mut s| s.execute([]))
        .ctx("deleting trimmed messages")?;
    conn.prepare_cached("DELETE FROM doomed")
        .and_then(|mut s| s.execute([]))
        .ctx("emptying the trimmed messages' queue")?;
    Ok(moved > 0)
}

/// [`delete_doomed`]: the queued rows' live keys (stored at `?1` or later), in row order. Only
/// rows still in no stream: an id queued by a build that then stopped (SIGKILL) and outlived
/// by an older build, which knows no queue and may give ids again once the age limit emptied
/// the table, can name a live row (a review found it). A key may name two rows (a client may
/// use it again once it expired, and a longer age limit makes the older one live again): the
/// newer one answers, as [`RECEIPT`] does.
pub(crate) const DOOMED_KEYS: &str =
    "INSERT INTO idempotency (owner, client_msg_id, conv, seq, message_id, ts)
     SELECT key_owner, client_msg_id, conv, seq, message_id, ts FROM messages AS m
     WHERE id IN (SELECT id FROM doomed) AND key_owner IS NOT NULL AND ts >= ?1
     AND NOT EXISTS (SELECT 1 FROM entries WHERE conv = m.conv AND seq = m.seq)
     AND NOT EXISTS (SELECT 1 FROM entries WHERE conv = m.copy_conv AND seq = m.copy_seq)
     ORDER BY id
     ON CONFLICT (owner, client_msg_id) DO UPDATE SET conv = excluded.conv, seq = excluded.seq,
         message_id = excluded.message_id, ts = excluded.ts
     WHERE excluded.ts >= idempotency.ts";

/// [`delete_doomed`]: the queued rows still in no stream (see [`DOOMED_KEYS`]).
pub(crate) const DOOMED_DELETE: &str = "DELETE FROM messages AS m
     WHERE id IN (SELECT id FROM doomed)
     AND NOT EXISTS (SELECT 1 FROM entries WHERE conv = m.conv AND seq = m.seq)
     AND NOT EXISTS (SELECT 1 FROM entries WHERE conv = m.copy_conv AND seq = m.copy_seq)";

/// Rows queued by [`trim_stream`] and not yet deleted.
pub(crate) fn doomed_count(conn: &Connection) -> Result<usize, BackendError> {
    conn.prepare_cached("SELECT count(*) FROM doomed")
        .and_then(|mut s| s.query_row([], |r| r.get::<_, i64>(0)))
        .map(|n| usize::try_from(n).unwrap_or(0))
        .ctx("counting trimmed messages")
}

/// Deletes messages stored before `cutoff` (a prefix by `id`, at most a chunk, and only rows
/// whose entries are all in `entries`: up to `indexed`) with their entries, raising the heads of
/// their conversations first and moving their keys stored at `keys_from` or later to the
/// `idempotency` table. Returns whether the chunk was full.
pub(crate) fn trim_age(
    conn: &Connection,
    cutoff: u64,
    keys_from: u64,
    indexed: i64,
) -> Result<bool, BackendError> {
    // Rows are in time order, so the expired ones are a prefix: find its end within the first
    // chunk (a filter over the whole table would scan all of it when little expired).
    let last: Option<i64> = conn
        .query_row(
            "SELECT max(id) FROM (SELECT id, ts FROM messages ORDER BY id LIMIT ?2)
             WHERE ts < ?1",
            params![to_i64(cutoff), MAINTENANCE_CHUNK],
            |r| r.get(0),
        )
        .ctx("finding old history")?;
    let Some(last) = last.map(|l| l.min(indexed)).filter(|l| *l > 0) else {
        return Ok(false);
    };
    let streams: Vec<(String, i64)> = conn
        .prepare(
            "SELECT conv, seq FROM messages WHERE id <= ?1
             UNION ALL
             SELECT copy_conv, copy_seq FROM messages WHERE id <= ?1 AND copy_conv IS NOT NULL",
        )
        .and_then(|mut s| {
            s.query_map([last], |r| Ok((r.get(0)?, r.get(1)?)))?
                .collect::<rusqlite::Result<_>>()
        })
        .ctx("listing old history")?;
    // A conversation's head is the larger of its `convs` row and its newest entry (the writer's
    // `finish_heads`): raise the rows before the newest entries may go.
    let mut raise = conn
        .prepare_cached(
            "INSERT INTO convs (conv, head) VALUES (?1, ?2)
             ON CONFLICT (conv) DO UPDATE SET head = max(head, excluded.head)",
        )
        .ctx("preparing to keep heads")?;
    let mut delete = conn
        .prepare_cached("DELETE FROM entries WHERE conv = ?1 AND seq = ?2")
        .ctx("preparing to delete entries")?;
    let mut newest: std::collections::HashMap<&str, i64> = std::collections::HashMap::new();
    for (conv, seq) in &streams {
        let n = newest.entry(conv.as_str()).or_insert(*seq);
        *n = (*n).max(*seq);
        delete
            .execute(params![conv, seq])
            .ctx("deleting old entries")?;
    }
    for (conv, head) in newest {
        raise
            .execute(params![conv, head])
            .ctx("keeping the heads of old history")?;
    }
    conn.execute(
        "INSERT INTO idempotency (owner, client_msg_id, conv, seq, message_id, ts)
         SELECT key_owner, client_msg_id, conv, seq, message_id, ts FROM messages
         WHERE id <= ?1 AND key_owner IS NOT NULL AND ts >= ?2 ORDER BY id
         ON CONFLICT (owner, client_msg_id) DO UPDATE SET conv = excluded.conv,
             seq = excluded.seq, message_id = excluded.message_id, ts = excluded.ts
         WHERE excluded.ts >= idempotency.ts",
        params![last, to_i64(keys_from)],
    )
    .ctx("keeping the keys of old history")?;
    let n = conn
        .execute("DELETE FROM messages WHERE id <= ?1", [last])
        .ctx("deleting old history")?;
    Ok(n as i64 >= MAINTENANCE_CHUNK)
}

/// Deletes idempotency keys stored before `cutoff`, at most a chunk: the longest prefix by `id`
/// that expired (keys moved there when their message was trimmed are not quite in time order, so
/// a live key ends the prefix; a key is never deleted early, some a little late). Returns
/// whether the chunk was full.
pub(crate) fn expire_keys(conn: &Connection, cutoff: u64) -> Result<bool, BackendError> {
    let n = conn
        .execute(
            "DELETE FROM idempotency WHERE id < coalesce(
               (SELECT min(id) FROM (SELECT id, ts FROM idempotency ORDER BY id LIMIT ?2)
                WHERE ts >= ?1),
               (SELECT max(id) + 1 FROM (SELECT id FROM idempotency ORDER BY id LIMIT ?2)))",
            params![to_i64(cutoff), MAINTENANCE_CHUNK],
        )
        .ctx("deleting old idempotency keys")?;
    Ok(n as i64 >= MAINTENANCE_CHUNK)
}
