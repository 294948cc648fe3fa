//! Reads: a fixed set of reader threads, each with its own read-only connection, and the queries.
//!
//! WAL mode lets these read committed data while the writer writes. Because an append is answered
//! only after its commit, a read that starts after an answer sees the message.
//!
//! Why dedicated threads and not `spawn_blocking`: under a connection storm hundreds of token
//! lookups arrive at once; the blocking pool grew a thread per lookup, and each thread opened a
//! fresh SQLite connection (and so re-compiled its statements) because only a few idle ones were
//! kept. A handful of long-lived threads keep their connections and statement caches warm, and a
//! queue absorbs the burst.

use crate::error::{DbResultExt, closed};
use parking_lot::{Condvar, Mutex};
use rusqlite::{Connection, OptionalExtension, Row, params};
use std::collections::VecDeque;
use std::path::PathBuf;
use std::sync::Arc;
use switchboard_core::backend::{
    AuthSession, BackendError, HistoryQuery, Room, TokenHash, User, UserCredentials, Visibility,
};
use switchboard_proto::{Conv, Message, MessageBody};

/// Reader threads (and so read connections) per node.
const READERS: usize = 4;

/// The most messages one history read returns.
pub(crate) const HISTORY_MAX_LIMIT: u32 = 500;

/// One queued read: runs on a reader thread's connection (`None` when it could not be opened).
type Job = Box<dyn FnOnce(Result<&Connection, BackendError>) + Send>;

#[derive(Default)]
struct Queue {
    jobs: VecDeque<Job>,
    closed: bool,
}

/// The reader threads and their queue.
pub(crate) struct ReadPool {
    queue: Mutex<Queue>,
    ready: Condvar,
}

impl ReadPool {
    /// Starts the reader threads over the database in `dir` (which the writer has already
    /// created). Each opens its connection on its first job and keeps it.
    /// Fails if no thread could be started (reads would wait forever).
    pub(crate) fn new(dir: PathBuf) -> Result<Arc<ReadPool>, BackendError> {
        let pool = Arc::new(ReadPool {
            queue: Mutex::new(Queue::default()),
            ready: Condvar::new(),
        });
        let mut started = 0;
        for i in 0..READERS {
            let (worker, dir) = (pool.clone(), dir.clone());
            let spawned = std::thread::Builder::new()
                .name(format!("sb-sqlite-read-{i}"))
                .spawn(move || worker.serve(&dir));
            match spawned {
                Ok(_) => started += 1,
                Err(e) => tracing::error!(error = %e, "could not start a SQLite reader thread"),
            }
        }
        if started == 0 {
            pool.close();
            return Err(BackendError::Internal(
                "could not start any SQLite reader thread".into(),
            ));
        }
        Ok(pool)
    }

    /// A reader thread's loop: take a job, run it, until closed and empty.
    fn serve(&self, dir: &std::path::Path) {
        let mut conn: Option<Connection> = None;
        loop {
            let job = {
                let mut q = self.queue.lock();
                loop {
                    if let Some(job) = q.jobs.pop_front() {
                        break job;
                    }
                    if q.closed {
                        return;
                    }
                    self.ready.wait(&mut q);
                }
            };
            if conn.is_none() {
                match crate::schema::open_reader(dir) {
                    Ok(c) => conn = Some(c),
                    Err(e) => {
                        job(Err(e));
                        continue;
                    }
                }
            }
            if let Some(c) = &conn {
                // A panicking job must not take the thread with it: the pool has no spare. Its
                // caller sees the reply dropped (an error); the connection is reopened.
                let ran = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| job(Ok(c))));
                if ran.is_err() {
                    tracing::error!("a SQLite read panicked; reopening its connection");
                    conn = None;
                }
            }
        }
    }

    /// Runs `f` on a reader thread's connection.
    pub(crate) async fn run<T, F>(&self, f: F) -> Result<T, BackendError>
    where
        T: Send + 'static,
        F: FnOnce(&Connection) -> Result<T, BackendError> + Send + 'static,
    {
        let (tx, rx) = tokio::sync::oneshot::channel();
        let job: Job = Box::new(move |conn| {
            let _ = tx.send(conn.and_then(f));
        });
        {
            let mut q = self.queue.lock();
            if q.closed {
                return Err(closed());
            }
            q.jobs.push_back(job);
        }
        self.ready.notify_one();
        rx.await
            .map_err(|_| BackendError::Internal("a SQLite reader thread stopped".into()))?
    }

    /// Refuses further reads; the threads finish what is queued and exit, closing their
    /// connections.
    pub(crate) fn close(&self) {
        self.queue.lock().closed = true;
        self.ready.notify_all();
    }
}

/// Converts a stored integer (never negative in practice) to `u64`.
pub(crate) fn to_u64(v: i64) -> u64 {
    u64::try_from(v).unwrap_or(0)
}

/// Parses a stored visibility.
pub(crate) fn parse_visibility(s: &str) -> Result<Visibility, BackendError> {
    match s {
        "public" => Ok(Visibility::Public),
        "private" => Ok(Visibility::Private),
        other => Err(BackendError::Internal(format!(
            "stored room has unknown visibility {other:?}"
        ))),
    }
}

/// Finds a user by login name.
pub(crate) fn user_by_username(
    conn: &Connection,
    username: &str,
) -> Result<Option<UserCredentials>, BackendError> {
    // The exact spelling first: a name stored before names compared ignoring case, that
    // collided with an older one when keys were assigned (schema module), has no key and is
    // found only this way. Then the key, as every other name is.
    let exact = credentials(
        conn,
        "SELECT user_id, username, password_hash FROM users WHERE username = ?1",
        username,
    )?;
    if exact.is_some() {
        return Ok(exact);
    }
    credentials(
        conn,
        "SELECT user_id, username, password_hash FROM users WHERE username_key = ?1",
        &switchboard_core::names::username_key(username),
    )
}

fn credentials(
    conn: &Connection,
    sql: &str,
    arg: &str,
) -> Result<Option<UserCredentials>, BackendError> {
    conn.prepare_cached(sql)
        .and_then(|mut s| {
            s.query_row([arg], |r| {
                Ok(UserCredentials {
                    user: User {
                        user_id: r.get(0)?,
                        username: r.get(1)?,
                    },
                    password_hash: r.get(2)?,
                })
            })
            .optional()
        })
        .ctx("reading a user by name")
}

/// Finds a user by id.
pub(crate) fn user(conn: &Connection, user_id: &str) -> Result<Option<User>, BackendError> {
    conn.prepare_cached("SELECT user_id, username FROM users WHERE user_id = ?1")
        .and_then(|mut s| {
            s.query_row([user_id], |r| {
                Ok(User {
                    user_id: r.get(0)?,
                    username: r.get(1)?,
                })
            })
            .optional()
        })
        .ctx("reading a user")
}

/// Finds a session by token hash.
pub(crate) fn session(
    conn: &Connection,
    token_hash: &TokenHash,
) -> Result<Option<AuthSession>, BackendError> {
    conn.prepare_cached(
        "SELECT session_id, user_id, expires_at FROM sessions WHERE token_hash = ?1",
    )
    .and_then(|mut s| {
        s.query_row([&token_hash[..]], |r| {
            Ok(AuthSession {
                session_id: r.get(0)?,
                user_id: r.get(1)?,
                expires_at_ms: to_u64(r.get(2)?),
            })
        })
        .optional()
    })
    .ctx("reading a session")
}

type RoomRow = (String, String, String, String, i64);

fn room_row(r: &Row<'_>) -> rusqlite::Result<RoomRow> {
    Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?, r.get(4)?))
}

fn room_from_row(
    (room_id, name, visibility, owner, created_at): RoomRow,
) -> Result<Room, BackendError> {
    Ok(Room {
        room_id,
        name,
        visibility: parse_visibility(&visibility)?,
        owner,
        created_at_ms: to_u64(created_at),
    })
}

/// Finds a room.
pub(crate) fn room(conn: &Connection, room_id: &str) -> Result<Option<Room>, BackendError> {
    let row = conn
        .prepare_cached(
            "SELECT room_id, name, visibility, owner, created_at FROM rooms WHERE room_id = ?1",
        )
        .and_then(|mut s| s.query_row([room_id], room_row).optional())
        .ctx("reading a room")?;
    row.map(room_from_row).transpose()
}

/// Public rooms and the rooms `user_id` belongs to, oldest first.
pub(crate) fn rooms_visible_to(
    conn: &Connection,
    user_id: &str,
) -> Result<Vec<Room>, BackendError> {
    let rows = conn
        .prepare_cached(
            "SELECT room_id, name, visibility, owner, created_at FROM rooms
             WHERE visibility = 'public'
                OR room_id IN (SELECT room_id FROM members WHERE user_id = ?1)
             ORDER BY rowid",
        )
        .and_then(|mut s| {
            s.query_map([user_id], room_row)?
                .collect::<rusqlite::Result<Vec<_>>>()
        })
        .ctx("listing rooms")?;
    rows.into_iter().map(room_from_row).collect()
}

/// Whether `user_id` is a member of `room_id`.
pub(crate) fn is_member(
    conn: &Connection,
    room_id: &str,
    user_id: &str,
) -> Result<bool, BackendError> {
    conn.prepare_cached("SELECT 1 FROM members WHERE room_id = ?1 AND user_id = ?2")
        .and_then(|mut s| s.exists([room_id, user_id]))
        .ctx("reading a membership")
}

/// The members of a room in the order they joined.
pub(crate) fn members(conn: &Connection, room_id: &str) -> Result<Vec<String>, BackendError> {
    conn.prepare_cached("SELECT user_id FROM members WHERE room_id = ?1 ORDER BY joined")
        .and_then(|mut s| {
            s.query_map([room_id], |r| r.get(0))?
                .collect::<rusqlite::Result<Vec<String>>>()
        })
        .ctx("listing members")
}

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

#[cfg(test)]
mod tests {
    use super::*;

    /// More panicking reads than there are threads: each fails alone, and reads go on.
    #[tokio::test]
    async fn a_panicking_read_fails_alone_and_the_pool_goes_on() {
        let dir = tempfile::tempdir().expect("temp dir");
        let _writer = crate::schema::open_writer(dir.path()).expect("database");
        let pool = ReadPool::new(dir.path().to_path_buf()).expect("reader threads");
        // Without the guard the threads die and later reads wait forever: bound every wait.
        let limit = std::time::Duration::from_secs(10);
        for _ in 0..READERS * 2 {
            let r: Result<(), BackendError> = tokio::time::timeout(
                limit,
                pool.run(|_| -> Result<(), BackendError> { panic!("a bug in a read") }),
            )
            .await
            .expect("the read was answered");
            assert!(r.is_err(), "the panicking read reports an error");
        }
        let one: i64 = tokio::time::timeout(
            limit,
            pool.run(|c| c.query_row("SELECT 1", [], |r| r.get(0)).ctx("select")),
        )
        .await
        .expect("the read was answered")
        .expect("a read after the panics");
        assert_eq!(one, 1);
        pool.close();
    }
}
