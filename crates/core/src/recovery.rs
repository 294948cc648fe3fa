//! Connection-state recovery records as a [`Registry`](crate::backend::Registry) stores them:
//! opaque text with an owner, and the conditions a write or delete may carry.
//!
//! A record's owner is the session that wrote it. The conditions keep a session that ended
//! late (on a node that noticed its client gone only after the client had recovered on another
//! node) from overwriting or deleting the record of the newer session, and let exactly one of two
//! concurrent recoveries of one `pid` take the record over.

/// A stored record: its owner and its opaque value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RecoveryRecord {
    /// The session that wrote it (an opaque token without `\n`; empty for records written before
    /// records had owners).
    pub owner: String,
    /// What the record holds.
    pub value: String,
}

/// When a write of a record may happen.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RecoveryGuard<'a> {
    /// Whatever is there (a key nobody else can know yet, such as a fresh random `pid`).
    Always,
    /// Only when a record exists and this owner holds it: a session's write that must not bring
    /// back a record that was taken over or deleted, or a recovery taking over an ended session's
    /// record (only one of two concurrent ones can).
    OwnedBy(&'a str),
    /// When this owner holds the record or there is none.
    OwnedByOrAbsent(&'a str),
}

impl RecoveryGuard<'_> {
    /// Whether the write may happen over a record held by `current` (`None`: no record).
    pub fn allows(&self, current: Option<&str>) -> bool {
        match *self {
            RecoveryGuard::Always => true,
            RecoveryGuard::OwnedBy(owner) => current == Some(owner),
            RecoveryGuard::OwnedByOrAbsent(owner) => current.is_none_or(|c| c == owner),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::RecoveryGuard::*;

    #[test]
    fn guards_compare_the_current_owner() {
        assert!(Always.allows(None));
        assert!(Always.allows(Some("a")));
        assert!(OwnedBy("a").allows(Some("a")));
        assert!(!OwnedBy("a").allows(Some("b")));
        assert!(!OwnedBy("a").allows(None));
        assert!(OwnedByOrAbsent("a").allows(Some("a")));
        assert!(OwnedByOrAbsent("a").allows(None));
        assert!(!OwnedByOrAbsent("a").allows(Some("b")));
        assert!(!OwnedBy("").allows(Some("a")));
        assert!(OwnedBy("").allows(Some("")));
    }
}
