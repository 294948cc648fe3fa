//! The messages' reads: a conversation's position (head and oldest stored seq) and pages of
//! its history, each message checked as it is read.

use super::to_u64;
use crate::error::DbResultExt;
use rusqlite::{Connection, Row, params};
use std::sync::Arc;
use switchboard_core::backend::{BackendError, HistoryQuery};
use switchboard_proto::{Conv, Message, MessageBody};

/// The most messages one history read returns.
pub(crate) const HISTORY_MAX_LIMIT: u32 = 500;

/// The head seq (0 if never written) and the smallest stored seq (if any), read atomically.
pub(crate) fn position(conn: &Connection, conv: &Conv) -> Result<(u64, Option<u64>), BackendError> {
    let (head, oldest): (Option<i64>, Option<i64>) = conn
        .prepare_cached(
            "SELECT max(coalesce((SELECT head FROM convs WHERE conv = ?1), 0),
                        coalesce((SELECT max(seq) FROM entries WHERE conv = ?1), 0)),
                    (SELECT min(seq) FROM entries WHERE conv = ?1)",
        )
        .and_then(|mut s| s.query_row([conv.as_str()], |r| Ok((r.get(0)?, r.get(1)?))))
        .ctx("reading a position")?;
    Ok((head.map(to_u64).unwrap_or(0), oldest.map(to_u64)))
}

/// A page of history, ascending seq (see [`HistoryQuery`]).
pub(crate) fn history(
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
