//! A user's connection keys, as the hub's registry for control events keeps them.

/// A user's connection keys. Most users have one connection: that key is held inline (a vector
/// of one took an allocation of 32 bytes for every user online).
pub(super) enum Keys {
    One(u64),
    Many(Vec<u64>),
}

impl Keys {
    pub(super) fn push(&mut self, key: u64) {
        match self {
            Keys::One(k) => *self = Keys::Many(vec![*k, key]),
            Keys::Many(keys) => keys.push(key),
        }
    }

    /// Removes `key`; true when no key is left.
    pub(super) fn remove(&mut self, key: u64) -> bool {
        match self {
            Keys::One(k) => *k == key,
            Keys::Many(keys) => {
                keys.retain(|k| *k != key);
                match keys[..] {
                    [] => true,
                    [only] => {
                        *self = Keys::One(only);
                        false
                    }
                    _ => false,
                }
            }
        }
    }

    pub(super) fn iter(&self) -> std::slice::Iter<'_, u64> {
        match self {
            Keys::One(k) => std::slice::from_ref(k).iter(),
            Keys::Many(keys) => keys.iter(),
        }
    }
}
