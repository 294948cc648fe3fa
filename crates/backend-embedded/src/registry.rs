//! The in-memory registry of live connections: one node holds them all, so a map is the truth,
//! and a crash forgets them together with the connections themselves.
//!
//! Every live user has an entry, so the entries are kept small: the ids are the connection's
//! own (`Arc<str>`, shared with its session and the hub, not copies), and the ids under a key
//! are an [`Ids`], which holds the common single id inline instead of in a hash set of its own
//! (a user's one connection, a connection's one room).

use parking_lot::Mutex;
use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::Arc;
use switchboard_core::backend::ConnEntry;
use switchboard_proto::frame::PresenceEntry;

/// A set of ids, most often of one: that one inline, more in a set of their own (boxed, so
/// that the set is two words, not six, in every entry).
#[allow(clippy::box_collection)]
enum Ids {
    One(Arc<str>),
    Many(Box<HashSet<Arc<str>>>),
}

impl Ids {
    fn new(id: &Arc<str>) -> Ids {
        Ids::One(id.clone())
    }

    fn len(&self) -> usize {
        match self {
            Ids::One(_) => 1,
            Ids::Many(set) => set.len(),
        }
    }

    fn iter(&self) -> impl Iterator<Item = &str> {
        let (one, many) = match self {
            Ids::One(id) => (Some(&**id), None),
            Ids::Many(set) => (None, Some(set.iter().map(|id| &**id))),
        };
        one.into_iter().chain(many.into_iter().flatten())
    }

    /// Adds `id` unless it is there.
    fn insert(&mut self, id: &Arc<str>) {
        match self {
            Ids::One(one) if **one == **id => {}
            Ids::One(one) => {
                let set = HashSet::from([one.clone(), id.clone()]);
                *self = Ids::Many(Box::new(set));
            }
            Ids::Many(set) => {
                if !set.contains(&**id) {
                    set.insert(id.clone());
                }
            }
        }
    }

    /// Removes `id`; true when none is left.
    fn remove(&mut self, id: &str) -> bool {
        match self {
            Ids::One(one) => &**one == id,
            // A set holds two or more: one removal leaves at least one, held inline again.
            Ids::Many(set) => {
                set.remove(id);
                if set.len() == 1 {
                    let last = set.drain().next().unwrap_or_default();
                    *self = Ids::One(last);
                }
                false
            }
        }
    }
}

/// Adds `id` under `key` in `map`.
fn add(map: &mut HashMap<Arc<str>, Ids>, key: &Arc<str>, id: &Arc<str>) {
    match map.get_mut(&**key) {
        Some(ids) => ids.insert(id),
        None => {
            map.insert(key.clone(), Ids::new(id));
        }
    }
}

/// Removes `id` from under `key` in `map`, and `key` once it holds none.
fn remove(map: &mut HashMap<Arc<str>, Ids>, key: &str, id: &str) {
    if let Some(ids) = map.get_mut(key)
        && ids.remove(id)
    {
        map.remove(key);
    }
}

#[derive(Default)]
struct State {
    /// user id -> their live connection ids.
    users: HashMap<Arc<str>, Ids>,
    /// room id -> user id -> that user's connection ids subscribed to the room.
    rooms: HashMap<Arc<str>, HashMap<Arc<str>, Ids>>,
    /// connection id -> the rooms it is subscribed to (to clean up when it ends).
    conn_rooms: HashMap<Arc<str>, Ids>,
}

/// Live connections and room subscribers of this node.
#[derive(Default)]
pub(crate) struct Connections {
    state: Mutex<State>,
}

impl Connections {
    /// A connection authenticated.
    pub(crate) fn add_connection(&self, conn: &ConnEntry) {
        add(&mut self.state.lock().users, &conn.user_id, &conn.conn_id);
    }

    /// A connection ended: it leaves its user and every room it was in.
    pub(crate) fn remove_connection(&self, conn: &ConnEntry) {
        let mut s = self.state.lock();
        remove(&mut s.users, &conn.user_id, &conn.conn_id);
        if let Some(rooms) = s.conn_rooms.remove(&*conn.conn_id) {
            for room_id in rooms.iter() {
                remove_from_room(&mut s.rooms, room_id, conn);
            }
        }
    }

    /// A connection subscribed to a room.
    pub(crate) fn add_room_subscriber(&self, room_id: &str, conn: &ConnEntry) {
        let mut s = self.state.lock();
        // The room's id is held once, by its entry.
        let room: Arc<str> = match s.rooms.get_key_value(room_id) {
            Some((room, _)) => room.clone(),
            None => room_id.into(),
        };
        add(
            s.rooms.entry(room.clone()).or_default(),
            &conn.user_id,
            &conn.conn_id,
        );
        add(&mut s.conn_rooms, &conn.conn_id, &room);
    }

    /// A connection left a room.
    pub(crate) fn remove_room_subscriber(&self, room_id: &str, conn: &ConnEntry) {
        let mut s = self.state.lock();
        remove(&mut s.conn_rooms, &conn.conn_id, room_id);
        remove_from_room(&mut s.rooms, room_id, conn);
    }

    /// Live connection counts of these users, in order.
    pub(crate) fn user_connections(&self, user_ids: &[String]) -> Vec<u32> {
        let s = self.state.lock();
        user_ids
            .iter()
            .map(|u| s.users.get(u.as_str()).map_or(0, |ids| count(ids.len())))
            .collect()
    }

    /// The room's online subscribers with their connection counts, sorted by user id.
    pub(crate) fn room_presence(&self, room_id: &str) -> Vec<PresenceEntry> {
        let s = self.state.lock();
        let Some(users) = s.rooms.get(room_id) else {
            return Vec::new();
        };
        let sorted: BTreeMap<&str, u32> = users
            .iter()
            .map(|(user, conns)| (&**user, count(conns.len())))
            .collect();
        sorted
            .into_iter()
            .map(|(user_id, connections)| PresenceEntry {
                user_id: user_id.to_owned(),
                connections,
            })
            .collect()
    }
}

fn count(n: usize) -> u32 {
    u32::try_from(n).unwrap_or(u32::MAX)
}

fn remove_from_room(
    rooms: &mut HashMap<Arc<str>, HashMap<Arc<str>, Ids>>,
    room_id: &str,
    conn: &ConnEntry,
) {
    let Some(users) = rooms.get_mut(room_id) else {
        return;
    };
    remove(users, &conn.user_id, &conn.conn_id);
    if users.is_empty() {
        rooms.remove(room_id);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn conn(user: &str, id: &str) -> ConnEntry {
        ConnEntry {
            conn_id: id.into(),
            user_id: user.into(),
            session_id: "s".into(),
        }
    }

    #[test]
    fn a_set_of_ids_takes_two_words() {
        // A `HashSet<String>` took 48 bytes in every entry and an allocation of 100 or more.
        assert_eq!(std::mem::size_of::<Ids>(), 16);
    }

    #[test]
    fn counts_follow_adds_and_removes_from_one_to_many_and_back() {
        let c = Connections::default();
        let users = ["a".to_owned(), "b".to_owned()];
        c.add_connection(&conn("a", "1"));
        c.add_connection(&conn("a", "1"));
        assert_eq!(
            c.user_connections(&users),
            [1, 0],
            "adding twice counts once"
        );
        c.add_connection(&conn("a", "2"));
        c.add_connection(&conn("a", "3"));
        assert_eq!(c.user_connections(&users), [3, 0]);
        c.remove_connection(&conn("a", "2"));
        c.remove_connection(&conn("a", "2"));
        assert_eq!(
            c.user_connections(&users),
            [2, 0],
            "removing twice counts once"
        );
        c.remove_connection(&conn("a", "9"));
        assert_eq!(
            c.user_connections(&users),
            [2, 0],
            "an unknown id changes nothing"
        );
        c.remove_connection(&conn("a", "1"));
        assert_eq!(c.user_connections(&users), [1, 0]);
        c.remove_connection(&conn("a", "1"));
        assert_eq!(c.user_connections(&users), [1, 0], "the last one is 3");
        c.remove_connection(&conn("a", "3"));
        assert_eq!(c.user_connections(&users), [0, 0]);
        assert!(c.state.lock().users.is_empty(), "no entry is left behind");
    }

    #[test]
    fn presence_counts_a_users_connections_in_the_room_and_forgets_ended_ones() {
        let c = Connections::default();
        for (user, id) in [("b", "1"), ("a", "2"), ("a", "3")] {
            c.add_connection(&conn(user, id));
            c.add_room_subscriber("r", &conn(user, id));
        }
        c.add_room_subscriber("q", &conn("a", "2"));
        let entries = |room| {
            c.room_presence(room)
                .into_iter()
                .map(|e| (e.user_id, e.connections))
                .collect::<Vec<_>>()
        };
        assert_eq!(entries("r"), [("a".into(), 2), ("b".into(), 1)]);
        c.remove_room_subscriber("r", &conn("a", "3"));
        assert_eq!(entries("r"), [("a".into(), 1), ("b".into(), 1)]);
        c.remove_connection(&conn("a", "2"));
        assert_eq!(entries("r"), [("b".into(), 1)]);
        assert!(
            entries("q").is_empty(),
            "an ended connection leaves every room"
        );
        c.remove_connection(&conn("b", "1"));
        c.remove_connection(&conn("a", "3"));
        let s = c.state.lock();
        assert!(s.rooms.is_empty() && s.conn_rooms.is_empty() && s.users.is_empty());
    }
}
