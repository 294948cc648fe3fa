//! Conversation names: `room:<room_id>` or `user:<user_id>` (a user's personal stream).

use std::fmt;
use std::sync::Arc;

/// A conversation: the unit that owns a seq sequence and a history.
///
/// Cloning is cheap (the name is shared), because conversations are used as map keys on the
/// fan-out path.
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Conv(Arc<str>);

/// What kind of conversation a [`Conv`] names.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ConvKind {
    /// `room:<room_id>`
    Room,
    /// `user:<user_id>`: the personal stream of one user (direct messages, server pushes).
    User,
}

/// Longest accepted conversation name; ids are server-made and far shorter.
pub const MAX_CONV_LEN: usize = 200;

impl Conv {
    /// Parses `room:<id>` or `user:<id>`; `None` for anything else (empty id, other prefix,
    /// control characters, too long).
    pub fn parse(s: &str) -> Option<Conv> {
        if s.len() > MAX_CONV_LEN {
            return None;
        }
        let (kind, id) = s.split_once(':')?;
        if !matches!(kind, "room" | "user") || id.is_empty() || id.chars().any(|c| c.is_control()) {
            return None;
        }
        Some(Conv(Arc::from(s)))
    }

    /// The conversation of a room.
    pub fn room(room_id: &str) -> Conv {
        Conv(Arc::from(format!("room:{room_id}")))
    }

    /// The personal stream of a user.
    pub fn user(user_id: &str) -> Conv {
        Conv(Arc::from(format!("user:{user_id}")))
    }

    /// Room or user.
    pub fn kind(&self) -> ConvKind {
        if self.0.starts_with("room:") {
            ConvKind::Room
        } else {
            ConvKind::User
        }
    }

    /// The room id or user id after the prefix.
    pub fn id(&self) -> &str {
        &self.0[5..]
    }

    /// Whether both are the same shared name (not just equal): a pointer compare, for hot
    /// paths that then fall back to comparing the text.
    pub fn same(&self, other: &Conv) -> bool {
        Arc::ptr_eq(&self.0, &other.0)
    }

    /// The full name, e.g. `room:r_1`.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for Conv {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl fmt::Debug for Conv {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Conv({})", self.0)
    }
}

impl serde::Serialize for Conv {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.0)
    }
}

impl<'de> serde::Deserialize<'de> for Conv {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = <std::borrow::Cow<'de, str>>::deserialize(d)?;
        Conv::parse(&s).ok_or_else(|| {
            serde::de::Error::custom("conv must be room:<room_id> or user:<user_id>")
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_rooms_and_users_only() {
        assert_eq!(Conv::parse("room:r1").unwrap().kind(), ConvKind::Room);
        assert_eq!(Conv::parse("user:u1").unwrap().id(), "u1");
        assert!(Conv::parse("room:").is_none());
        assert!(Conv::parse("chan:x").is_none());
        assert!(Conv::parse("room").is_none());
        assert!(Conv::parse("room:a\nb").is_none());
        assert!(Conv::parse(&format!("room:{}", "x".repeat(300))).is_none());
    }
}
