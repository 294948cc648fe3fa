//! Registering connections and room subscriptions: the mirror is updated first, then Redis; a
//! failed write is undone in the mirror and its entries are queued for removal.

use super::{Entry, apply, retry_removal};
use crate::Shared;
use switchboard_core::backend::{BackendError, ConnEntry};

/// A connection authenticated.
pub(crate) async fn add_connection(s: &Shared, conn: &ConnEntry) -> Result<(), BackendError> {
    let e = Entry::Conn {
        user_id: conn.user_id.clone(),
        conn_id: conn.conn_id.clone(),
    };
    let was_connected = {
        let mut m = s.mirror.lock();
        m.forget_pending(&e);
        let r = m.conns.entry(conn.conn_id.clone()).or_default();
        r.user_id = conn.user_id.clone();
        std::mem::replace(&mut r.connected, true)
    };
    let result = apply(s, std::slice::from_ref(&e), true).await;
    if result.is_err() && !was_connected {
        let mut m = s.mirror.lock();
        if let Some(r) = m.conns.get_mut(&conn.conn_id) {
            r.connected = false;
        }
        m.tidy(&conn.conn_id);
        drop(m);
        retry_removal(s, vec![e]);
    }
    result
}

/// A connection ended: it leaves its user and every room it was in.
pub(crate) async fn remove_connection(s: &Shared, conn: &ConnEntry) -> Result<(), BackendError> {
    let mut entries = vec![Entry::Conn {
        user_id: conn.user_id.clone(),
        conn_id: conn.conn_id.clone(),
    }];
    if let Some(r) = s.mirror.lock().conns.remove(&conn.conn_id) {
        for room_id in r.rooms {
            entries.push(Entry::Room {
                room_id,
                user_id: r.user_id.clone(),
                conn_id: conn.conn_id.clone(),
            });
        }
    }
    let result = apply(s, &entries, false).await;
    if result.is_err() {
        retry_removal(s, entries);
    }
    result
}

/// A connection subscribed to a room.
pub(crate) async fn add_room_subscriber(
    s: &Shared,
    room_id: &str,
    conn: &ConnEntry,
) -> Result<(), BackendError> {
    let e = Entry::Room {
        room_id: room_id.to_owned(),
        user_id: conn.user_id.clone(),
        conn_id: conn.conn_id.clone(),
    };
    let was_there = {
        let mut m = s.mirror.lock();
        m.forget_pending(&e);
        let r = m.conns.entry(conn.conn_id.clone()).or_default();
        r.user_id = conn.user_id.clone();
        !r.rooms.insert(room_id.to_owned())
    };
    let result = apply(s, std::slice::from_ref(&e), true).await;
    if result.is_err() && !was_there {
        let mut m = s.mirror.lock();
        if let Some(r) = m.conns.get_mut(&conn.conn_id) {
            r.rooms.remove(room_id);
        }
        m.tidy(&conn.conn_id);
        drop(m);
        retry_removal(s, vec![e]);
    }
    result
}

/// A connection left a room.
pub(crate) async fn remove_room_subscriber(
    s: &Shared,
    room_id: &str,
    conn: &ConnEntry,
) -> Result<(), BackendError> {
    {
        let mut m = s.mirror.lock();
        if let Some(r) = m.conns.get_mut(&conn.conn_id) {
            r.rooms.remove(room_id);
        }
        m.tidy(&conn.conn_id);
    }
    let e = Entry::Room {
        room_id: room_id.to_owned(),
        user_id: conn.user_id.clone(),
        conn_id: conn.conn_id.clone(),
    };
    let result = apply(s, std::slice::from_ref(&e), false).await;
    if result.is_err() {
        retry_removal(s, vec![e]);
    }
    result
}
