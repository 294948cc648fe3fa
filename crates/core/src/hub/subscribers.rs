//! The local subscribers of one conversation, as the hub keeps them: none, one held inline, or
//! a shared list in chunks that deliveries take out from under the hub's lock.

use crate::conn::Conn;
use std::sync::Arc;

/// Subscribers per chunk of a conversation's list.
const CHUNK: usize = 256;

/// One chunk of subscribers: (connection key, connection).
type Chunk = Arc<Vec<(u64, Arc<Conn>)>>;

/// Local subscribers of one conversation. Shared so that a delivery takes the list out from
/// under the shard lock in one reference count and writes to sockets with no hub lock held. A
/// change while deliveries hold it copies on write, but only the list of chunks and the one
/// chunk changed: a join or leave in a busy room of n subscribers costs about n / 256 + 256
/// reference counts, not n.
///
/// Most conversations (a user's own stream, so every DM's) have one local subscriber: that one
/// is held inline, with no list (four allocations and about 190 bytes less per user online).
#[derive(Clone, Default)]
pub(super) enum Subscribers {
    #[default]
    None,
    One((u64, Arc<Conn>)),
    Chunks(Arc<Vec<Chunk>>),
}

impl Subscribers {
    pub(super) fn is_empty(&self) -> bool {
        matches!(self, Subscribers::None)
    }

    pub(super) fn len(&self) -> usize {
        match self {
            Subscribers::None => 0,
            Subscribers::One(_) => 1,
            Subscribers::Chunks(chunks) => chunks.iter().map(|c| c.len()).sum(),
        }
    }

    pub(super) fn iter(&self) -> impl Iterator<Item = &(u64, Arc<Conn>)> {
        let (one, chunks): (&[(u64, Arc<Conn>)], &[Chunk]) = match self {
            Subscribers::None => (&[], &[]),
            Subscribers::One(pair) => (std::slice::from_ref(pair), &[]),
            Subscribers::Chunks(chunks) => (&[], chunks),
        };
        one.iter().chain(chunks.iter().flat_map(|c| c.iter()))
    }

    /// Adds `key` unless it is there; true if added.
    pub(super) fn add(&mut self, key: u64, conn: Arc<Conn>) -> bool {
        match self {
            Subscribers::None => {
                *self = Subscribers::One((key, conn));
                true
            }
            Subscribers::One((k, _)) if *k == key => false,
            Subscribers::One(_) => {
                let Subscribers::One(first) = std::mem::take(self) else {
                    unreachable!("matched above")
                };
                *self = Subscribers::Chunks(Arc::new(vec![Arc::new(vec![first, (key, conn)])]));
                true
            }
            Subscribers::Chunks(chunks) => {
                if chunks.iter().flat_map(|c| c.iter()).any(|(k, _)| *k == key) {
                    return false;
                }
                let chunks = Arc::make_mut(chunks);
                match chunks.last_mut() {
                    Some(c) if c.len() < CHUNK => Arc::make_mut(c).push((key, conn)),
                    _ => chunks.push(Arc::new(vec![(key, conn)])),
                }
                true
            }
        }
    }

    /// Removes `key`; true if it was there.
    pub(super) fn remove(&mut self, key: u64) -> bool {
        match self {
            Subscribers::None => false,
            Subscribers::One((k, _)) => {
                let found = *k == key;
                if found {
                    *self = Subscribers::None;
                }
                found
            }
            Subscribers::Chunks(list) => {
                let found = list
                    .iter()
                    .enumerate()
                    .find_map(|(i, c)| c.iter().position(|(k, _)| *k == key).map(|j| (i, j)));
                let Some((i, j)) = found else {
                    return false;
                };
                let chunks = Arc::make_mut(list);
                let chunk = Arc::make_mut(&mut chunks[i]);
                chunk.swap_remove(j);
                if chunk.is_empty() {
                    chunks.remove(i);
                }
                if chunks.is_empty() {
                    *self = Subscribers::None;
                }
                true
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::transport::{Out, Progress, Wire};
    use std::task::{Context, Poll};

    struct Sink;
    impl Wire for Sink {
        fn try_write(
            &self,
            frames: &mut dyn Iterator<Item = &Out>,
            _: usize,
        ) -> std::io::Result<Progress> {
            Ok(Progress {
                frames: frames.count(),
                offset: 0,
                blocked: false,
            })
        }
        fn poll_writable(&self, _: &mut Context<'_>) -> Poll<std::io::Result<()>> {
            Poll::Ready(Ok(()))
        }
        fn shutdown(&self) {}
    }

    #[test]
    fn one_subscriber_is_held_inline_and_a_second_makes_a_list() {
        let conn = Conn::new(Arc::new(Sink), 8, 1 << 20);
        let keys = |s: &Subscribers| s.iter().map(|(k, _)| *k).collect::<Vec<_>>();
        let mut subs = Subscribers::default();
        assert!(subs.is_empty() && !subs.remove(1));
        assert!(subs.add(1, conn.clone()));
        assert!(!subs.add(1, conn.clone()), "a key is added once");
        assert!(matches!(subs, Subscribers::One(_)) && keys(&subs) == [1]);
        let snapshot = subs.clone();
        assert!(!subs.remove(2), "an unknown key changes nothing");
        assert!(subs.add(2, conn.clone()));
        assert!(matches!(subs, Subscribers::Chunks(_)) && keys(&subs) == [1, 2]);
        assert_eq!(
            keys(&snapshot),
            [1],
            "a delivery's snapshot does not see the change"
        );
        assert!(subs.remove(1) && subs.remove(2));
        assert!(subs.is_empty());
        assert_eq!(subs.len(), 0);
        assert!(subs.add(3, conn.clone()) && subs.remove(3) && subs.is_empty());
        assert_eq!(
            Arc::strong_count(&conn),
            2,
            "the snapshot holds the last reference besides ours"
        );
    }

    #[test]
    fn subscriber_chunks_add_remove_and_copy_on_write() {
        let conn = Conn::new(Arc::new(Sink), 8, 1 << 20);
        let mut subs = Subscribers::default();
        for k in 0..600 {
            assert!(subs.add(k, conn.clone()));
        }
        assert!(!subs.add(5, conn.clone()), "a key is added once");
        assert_eq!(subs.len(), 600);
        let Subscribers::Chunks(chunks) = &subs else {
            panic!("600 subscribers in chunks")
        };
        assert_eq!(chunks.len(), 3, "chunks of 256");
        // A delivery's snapshot does not see later changes.
        let snapshot = subs.clone();
        for k in (0..600).step_by(2) {
            assert!(subs.remove(k));
        }
        assert!(!subs.remove(0));
        assert_eq!(subs.len(), 300);
        assert_eq!(snapshot.len(), 600);
        let mut keys: Vec<u64> = subs.iter().map(|(k, _)| *k).collect();
        keys.sort();
        assert_eq!(keys, (1..600).step_by(2).collect::<Vec<_>>());
        for k in (1..600).step_by(2) {
            assert!(subs.remove(k));
        }
        assert!(subs.is_empty(), "empty chunks are dropped");
    }
}
