//! The messages' reads: a conversation's position (head and oldest stored seq) and pages of
//! its history, each message checked as it is read.
//!
//! A stream's newest entries may not be in `entries` yet: each read takes them from the tail
//! first, then queries SQLite, and counts an entry found in both once (the tail module says why
//! that sees every committed message).

use super::to_u64;
use crate::error::DbResultExt;
use crate::tail::{Entry, Tail};
use rusqlite::{Connection, OptionalExtension, Row, params};
use std::sync::Arc;
use switchboard_core::backend::{BackendError, HistoryQuery};
use switchboard_proto::{Conv, Message, MessageBody};

/// The most messages one history read returns.
pub(crate) const HISTORY_MAX_LIMIT: u32 = 500;

/// The head seq (0 if never written) and the smallest stored seq (if any).
pub(crate) fn position(
    conn: &Connection,
    tail: &Tail,
    conv: &Conv,
) -> Result<(u64, Option<u64>), BackendError> {
    let unindexed = tail.bounds(conv);
    let floor = unindexed.map_or(0, |(_, last)| tail.floor_below(last));
    let (head, oldest): (Option<i64>, Option<i64>) = conn
        .prepare_cached(
            "SELECT max(coalesce((SELECT head FROM convs WHERE conv = ?1), 0),
                        coalesce((SELECT max(seq) FROM entries WHERE conv = ?1), 0)),
                    (SELECT min(seq) FROM entries WHERE conv = ?1)",
        )
        .and_then(|mut s| s.query_row([conv.as_str()], |r| Ok((r.get(0)?, r.get(1)?))))
        .ctx("reading a position")?;
    let (head, oldest) = (head.map(to_u64).unwrap_or(0), oldest.map(to_u64));
    Ok(match unindexed {
        None => (head, oldest),
        Some((first, last)) => (
            head.max(last),
            Some(oldest.map_or(first, |o| o.min(first)).max(floor + 1)),
        ),
    })
}

/// A page of history, ascending seq (see [`HistoryQuery`]).
pub(crate) fn history(
    conn: &Connection,
    tail: &Tail,
    conv: &Conv,
    q: HistoryQuery,
) -> Result<Vec<Arc<Message>>, BackendError> {
    let descending = q.after.is_none();
    // Past the count limit but maybe still stored: an ascending page starts above it, a
    // descending one drops it (what it would have shown there is trimmed).
    let (floor, unindexed) = tail.entries(conv, q.after, q.before);
    let q = if descending || floor == 0 {
        q
    } else {
        HistoryQuery {
            after: q.after.map(|a| a.max(floor)),
            ..q
        }
    };
    let mut out = indexed_history(conn, conv, q)?;
    out.retain(|m| m.seq > floor);
    if unindexed.is_empty() {
        return Ok(out);
    }
    // The page is the `limit` first (ascending) or last of both lists together; the tail's
    // entries that make it are read by row.
    let limit = q.limit.clamp(1, HISTORY_MAX_LIMIT) as usize;
    let known: std::collections::HashSet<u64> = out.iter().map(|m| m.seq).collect();
    let mut extra: Vec<Entry> = unindexed
        .into_iter()
        .filter(|e| !known.contains(&e.seq))
        .collect();
    let mut seqs: Vec<u64> = out
        .iter()
        .map(|m| m.seq)
        .chain(extra.iter().map(|e| e.seq))
        .collect();
    seqs.sort_unstable();
    let kept = if descending {
        &seqs[seqs.len().saturating_sub(limit)..]
    } else {
        &seqs[..seqs.len().min(limit)]
    };
    let (Some(&low), Some(&high)) = (kept.first(), kept.last()) else {
        return Ok(out);
    };
    out.retain(|m| m.seq >= low && m.seq <= high);
    extra.retain(|e| e.seq >= low && e.seq <= high);
    for e in extra {
        // None: deleted since (the age limit); the page goes without it.
        if let Some(raw) = row(conn, e)? {
            out.push(raw.into_message(conv)?);
        }
    }
    out.sort_unstable_by_key(|m| m.seq);
    Ok(out)
}

/// The message of a tail entry, read by its row.
fn row(conn: &Connection, e: Entry) -> Result<Option<RawMessage>, BackendError> {
    conn.prepare_cached(
        "SELECT ?2, message_id, from_user, to_user, ts, client_msg_id, body
         FROM messages WHERE id = ?1",
    )
    .and_then(|mut s| {
        s.query_row(params![e.id, crate::messages::to_i64(e.seq)], raw_message)
            .optional()
    })
    .ctx("reading a message")
}

/// A page of history from `entries` alone.
fn indexed_history(
    conn: &Connection,
    conv: &Conv,
    q: HistoryQuery,
) -> Result<Vec<Arc<Message>>, BackendError> {
    let limit = i64::from(q.limit.clamp(1, HISTORY_MAX_LIMIT));
    let seq = |v: u64| i64::try_from(v).unwrap_or(i64::MAX);
    let c = conv.as_str();
    let (rows, descending) = match (q.after, q.before) {
        (Some(after), None) => (
            query_messages(
                conn,
                "SELECT e.seq, m.message_id, m.from_user, m.to_user, m.ts, m.client_msg_id, m.body
                 FROM entries AS e CROSS JOIN messages AS m ON m.id = e.msg
                 WHERE e.conv = ?1 AND e.seq > ?2 ORDER BY e.seq ASC LIMIT ?3",
                params![c, seq(after), limit],
            ),
            false,
        ),
        (None, Some(before)) => (
            query_messages(
                conn,
                "SELECT e.seq, m.message_id, m.from_user, m.to_user, m.ts, m.client_msg_id, m.body
                 FROM entries AS e CROSS JOIN messages AS m ON m.id = e.msg
                 WHERE e.conv = ?1 AND e.seq < ?2 ORDER BY e.seq DESC LIMIT ?3",
                params![c, seq(before), limit],
            ),
            true,
        ),
        (Some(after), Some(before)) => (
            query_messages(
                conn,
                "SELECT e.seq, m.message_id, m.from_user, m.to_user, m.ts, m.client_msg_id, m.body
                 FROM entries AS e CROSS JOIN messages AS m ON m.id = e.msg
                 WHERE e.conv = ?1 AND e.seq > ?2 AND e.seq < ?3
                 ORDER BY e.seq ASC LIMIT ?4",
                params![c, seq(after), seq(before), limit],
            ),
            false,
        ),
        (None, None) => (
            query_messages(
                conn,
                "SELECT e.seq, m.message_id, m.from_user, m.to_user, m.ts, m.client_msg_id, m.body
                 FROM entries AS e CROSS JOIN messages AS m ON m.id = e.msg
                 WHERE e.conv = ?1 ORDER BY e.seq DESC LIMIT ?2",
                params![c, limit],
            ),
            true,
        ),
    };
    let rows = rows.ctx("reading history")?;
    let mut out = rows
        .into_iter()
        .map(|raw| raw.into_message(conv))
        .collect::<Result<Vec<_>, _>>()?;
    if descending {
        out.reverse();
    }
    Ok(out)
}

fn query_messages(
    conn: &Connection,
    sql: &str,
    params: impl rusqlite::Params,
) -> rusqlite::Result<Vec<RawMessage>> {
    let mut stmt = conn.prepare_cached(sql)?;
    let rows = stmt.query_map(params, raw_message)?;
    rows.collect()
}

/// A message row before its body is checked.
struct RawMessage {
    seq: i64,
    message_id: String,
    from: Option<String>,
    to: Option<String>,
    ts: i64,
    client_msg_id: Option<String>,
    body: String,
}

fn raw_message(r: &Row<'_>) -> rusqlite::Result<RawMessage> {
    Ok(RawMessage {
        seq: r.get(0)?,
        message_id: r.get(1)?,
        from: r.get(2)?,
        to: r.get(3)?,
        ts: r.get(4)?,
        client_msg_id: r.get(5)?,
        body: r.get(6)?,
    })
}

impl RawMessage {
    fn into_message(self, conv: &Conv) -> Result<Arc<Message>, BackendError> {
        let body = MessageBody::from_json(self.body).map_err(|e| {
            BackendError::Internal(format!(
                "stored message {conv} #{} has a bad body: {e}",
                self.seq
            ))
        })?;
        Ok(Arc::new(Message {
            conv: conv.clone(),
            seq: to_u64(self.seq),
            message_id: self.message_id,
            from: self.from,
            to: self.to,
            ts: to_u64(self.ts),
            client_msg_id: self.client_msg_id,
            body,
            encoded: Default::default(),
        }))
    }
}
