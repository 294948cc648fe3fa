//! Reads: a fixed set of reader threads, each with its own read-only connection ([`ReadPool`],
//! in `pool`), and the queries they run: the store's (users, sessions, rooms, members, in
//! `store`) and the messages' (positions and history, in `messages`).
//!
//! WAL mode lets these read committed data while the writer writes. Because an append is answered
//! only after its commit, a read that starts after an answer sees the message.

mod messages;
mod pool;
mod store;

pub(crate) use messages::{history, position};
pub(crate) use pool::ReadPool;
pub(crate) use store::{
    is_member, members, room, rooms_visible_to, session, user, user_by_username,
};

/// Converts a stored integer (never negative in practice) to `u64`.
pub(crate) fn to_u64(v: i64) -> u64 {
    u64::try_from(v).unwrap_or(0)
}
