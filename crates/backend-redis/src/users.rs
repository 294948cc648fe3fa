//! The users this node has found, kept in memory: every direct message checks that its
//! recipient exists, and that read was a Redis round trip per DM (a third of the commands a DM
//! cost besides its append script).
//!
//! Only found users are kept: a user is never deleted nor renamed (the store has no such
//! operation; the password, which changes, is not kept here), so a found user stays valid. An
//! id not found is asked again each time, since the user may be created meanwhile. The memory
//! is bounded: past [`MAX`] users it is emptied and refills.

use parking_lot::Mutex;
use std::collections::HashMap;
use switchboard_core::backend::User;

/// Users kept at most (about 100 bytes each).
const MAX: usize = 100_000;

/// Found users by id.
#[derive(Default)]
pub(crate) struct Known {
    users: Mutex<HashMap<String, User>>,
}

impl Known {
    /// The user, if found before.
    pub(crate) fn get(&self, user_id: &str) -> Option<User> {
        self.users.lock().get(user_id).cloned()
    }

    /// Remembers a user that exists.
    pub(crate) fn insert(&self, user: &User) {
        let mut users = self.users.lock();
        if users.len() >= MAX {
            users.clear();
        }
        users.insert(user.user_id.clone(), user.clone());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn user(id: &str) -> User {
        User {
            user_id: id.to_owned(),
            username: Some(format!("name-{id}")),
        }
    }

    #[test]
    fn remembers_found_users_and_stays_bounded() {
        let known = Known::default();
        assert_eq!(known.get("u1"), None);
        known.insert(&user("u1"));
        assert_eq!(known.get("u1"), Some(user("u1")));
        for i in 0..MAX {
            known.insert(&user(&format!("x{i}")));
        }
        assert!(known.users.lock().len() <= MAX);
        assert_eq!(known.get("u1"), None, "emptied once full");
    }
}
