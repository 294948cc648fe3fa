//! The in-memory registry of live connections: one node holds them all, so a map is the truth,
//! and a crash forgets them together with the connections themselves.

use parking_lot::Mutex;
use std::collections::{BTreeMap, HashMap, HashSet};
use switchboard_core::backend::ConnEntry;
use switchboard_proto::frame::PresenceEntry;

#[derive(Default)]
struct State {
    /// user id -> their live connection ids.
    users: HashMap<String, HashSet<String>>,
    /// room id -> user id -> that user's connection ids subscribed to the room.
    rooms: HashMap<String, HashMap<String, HashSet<String>>>,
    /// connection id -> the rooms it is subscribed to (to clean up when it ends).
    conn_rooms: HashMap<String, HashSet<String>>,
}

/// Live connections and room subscribers of this node.
#[derive(Default)]
pub(crate) struct Connections {
    state: Mutex<State>,
}

impl Connections {
    /// A connection authenticated.
    pub(crate) fn add_connection(&self, conn: &ConnEntry) {
        let mut s = self.state.lock();
        s.users
            .entry(conn.user_id.clone())
            .or_default()
            .insert(conn.conn_id.clone());
    }

    /// A connection ended: it leaves its user and every room it was in.
    pub(crate) fn remove_connection(&self, conn: &ConnEntry) {
        let mut s = self.state.lock();
        if let Some(set) = s.users.get_mut(&conn.user_id) {
            set.remove(&conn.conn_id);
            if set.is_empty() {
                s.users.remove(&conn.user_id);
            }
        }
        if let Some(rooms) = s.conn_rooms.remove(&conn.conn_id) {
            for room_id in rooms {
                remove_from_room(&mut s.rooms, &room_id, conn);
            }
        }
    }

    /// A connection subscribed to a room.
    pub(crate) fn add_room_subscriber(&self, room_id: &str, conn: &ConnEntry) {
        let mut s = self.state.lock();
        s.rooms
            .entry(room_id.to_owned())
            .or_default()
            .entry(conn.user_id.clone())
            .or_default()
            .insert(conn.conn_id.clone());
        s.conn_rooms
            .entry(conn.conn_id.clone())
            .or_default()
            .insert(room_id.to_owned());
    }

    /// A connection left a room.
    pub(crate) fn remove_room_subscriber(&self, room_id: &str, conn: &ConnEntry) {
        let mut s = self.state.lock();
        if let Some(rooms) = s.conn_rooms.get_mut(&conn.conn_id) {
            rooms.remove(room_id);
            if rooms.is_empty() {
                s.conn_rooms.remove(&conn.conn_id);
            }
        }
        remove_from_room(&mut s.rooms, room_id, conn);
    }

    /// Live connection counts of these users, in order.
    pub(crate) fn user_connections(&self, user_ids: &[String]) -> Vec<u32> {
        let s = self.state.lock();
        user_ids
            .iter()
            .map(|u| s.users.get(u).map_or(0, |set| count(set.len())))
            .collect()
    }

    /// The room's online subscribers with their connection counts, sorted by user id.
    pub(crate) fn room_presence(&self, room_id: &str) -> Vec<PresenceEntry> {
        let s = self.state.lock();
        let Some(users) = s.rooms.get(room_id) else {
            return Vec::new();
        };
        let sorted: BTreeMap<&String, u32> = users
            .iter()
            .map(|(user, conns)| (user, count(conns.len())))
            .collect();
        sorted
            .into_iter()
            .map(|(user_id, connections)| PresenceEntry {
                user_id: user_id.clone(),
                connections,
            })
            .collect()
    }
}

fn count(n: usize) -> u32 {
    u32::try_from(n).unwrap_or(u32::MAX)
}

fn remove_from_room(
    rooms: &mut HashMap<String, HashMap<String, HashSet<String>>>,
    room_id: &str,
    conn: &ConnEntry,
) {
    let Some(users) = rooms.get_mut(room_id) else {
        return;
    };
    if let Some(conns) = users.get_mut(&conn.user_id) {
        conns.remove(&conn.conn_id);
        if conns.is_empty() {
            users.remove(&conn.user_id);
        }
    }
    if users.is_empty() {
        rooms.remove(room_id);
    }
}
