//! Placement: which gateway a client should use, and up to two alternates.
//!
//! Among gateways in rotation and below their high-water mark (default 90% of
//! `max_connections`):
//! - with an affinity key (the `user_id`), weighted rendezvous hashing picks the node, so one
//!   user's devices tend to share a node and the choice is stable while the set of nodes is;
//! - without one, power-of-two-choices: two nodes drawn at random in proportion to their
//!   weight, the one with the lower load per unit of weight wins.
//!
//! Alternates are the next best by load. No candidate at all means every node is full (or
//! none is healthy): the caller answers `503 overloaded` with a jittered `Retry-After`.

use std::cell::Cell;

/// A gateway as placement sees it.
#[derive(Debug, Clone, PartialEq)]
pub struct Candidate {
    /// Its node id.
    pub node_id: String,
    /// Connections it holds (last probe plus placements made since).
    pub connections: u64,
    /// Its `--max-connections`.
    pub max_connections: u64,
    /// Its `--weight` (at least 1).
    pub weight: u32,
}

impl Candidate {
    /// Share of capacity in use.
    pub fn load(&self) -> f64 {
        self.connections as f64 / self.max_connections.max(1) as f64
    }

    /// Load per unit of weight: what least-load compares.
    fn weighted_load(&self) -> f64 {
        (self.connections as f64 + 1.0)
            / (self.max_connections.max(1) as f64 * self.weight.max(1) as f64)
    }
}

/// The answer: indexes into the candidate slice.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Placement {
    /// Where to connect.
    pub chosen: usize,
    /// Where to try next, best first (at most two).
    pub alternates: Vec<usize>,
}

thread_local! {
    static RNG: Cell<u64> = Cell::new(switchboard_proto::ids::random_u64() | 1);
}

/// A fast per-thread random number (xorshift64*); placement needs spread, not secrecy.
fn random() -> u64 {
    RNG.with(|r| {
        let mut x = r.get();
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        r.set(x);
        x.wrapping_mul(0x2545_F491_4F6C_DD1D)
    })
}

/// Places a client among `nodes` (all in rotation). `high_water` is the share of capacity past
/// which a node takes no new clients. `None` when no node has room.
pub fn place(nodes: &[Candidate], affinity: Option<&str>, high_water: f64) -> Option<Placement> {
    let open: Vec<usize> = (0..nodes.len())
        .filter(|&i| nodes[i].load() < high_water)
        .collect();
    if open.is_empty() {
        return None;
    }
    let chosen = match affinity {
        Some(key) => rendezvous(nodes, &open, key),
        None => two_choices(nodes, &open),
    };
    let mut rest: Vec<usize> = open.into_iter().filter(|&i| i != chosen).collect();
    rest.sort_by(|&a, &b| {
        nodes[a]
            .weighted_load()
            .total_cmp(&nodes[b].weighted_load())
    });
    rest.truncate(2);
    Some(Placement {
        chosen,
        alternates: rest,
    })
}

/// Weighted rendezvous (highest random weight): score = -weight / ln(u), u from xxh3(key, node).
fn rendezvous(nodes: &[Candidate], open: &[usize], key: &str) -> usize {
    let score = |i: usize| {
        let mut buf = Vec::with_capacity(key.len() + nodes[i].node_id.len() + 1);
        buf.extend_from_slice(key.as_bytes());
        buf.push(0);
        buf.extend_from_slice(nodes[i].node_id.as_bytes());
        let h = xxhash_rust::xxh3::xxh3_64(&buf);
        let u = ((h >> 11) as f64 + 0.5) / (1u64 << 53) as f64;
        -(nodes[i].weight.max(1) as f64) / u.ln()
    };
    *open
        .iter()
        .max_by(|&&a, &&b| score(a).total_cmp(&score(b)))
        .expect("open is not empty")
}

/// Draws a node in proportion to weight.
fn draw(nodes: &[Candidate], open: &[usize]) -> usize {
    let total: u64 = open.iter().map(|&i| nodes[i].weight.max(1) as u64).sum();
    let mut r = random() % total;
    for &i in open {
        let w = nodes[i].weight.max(1) as u64;
        if r < w {
            return i;
        }
        r -= w;
    }
    open[open.len() - 1]
}

fn two_choices(nodes: &[Candidate], open: &[usize]) -> usize {
    let a = draw(nodes, open);
    let b = draw(nodes, open);
    if nodes[b].weighted_load() < nodes[a].weighted_load() {
        b
    } else {
        a
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn node(id: &str, connections: u64, weight: u32) -> Candidate {
        Candidate {
            node_id: id.into(),
            connections,
            max_connections: 1000,
            weight,
        }
    }

    fn shares(nodes: &[Candidate], n: usize, affinity: bool) -> Vec<usize> {
        let mut counts = vec![0; nodes.len()];
        for k in 0..n {
            let key = format!("user-{k}");
            let p = place(nodes, affinity.then_some(key.as_str()), 0.9).unwrap();
            counts[p.chosen] += 1;
        }
        counts
    }

    #[test]
    fn equal_nodes_share_evenly_and_weight_three_gets_the_most() {
        let even = [node("a", 0, 1), node("b", 0, 1), node("c", 0, 1)];
        for affinity in [false, true] {
            for c in shares(&even, 3000, affinity) {
                assert!(
                    (800..1200).contains(&c),
                    "{c} of 3000 (affinity {affinity})"
                );
            }
            let weighted = [node("a", 0, 1), node("b", 0, 3), node("c", 0, 1)];
            let s = shares(&weighted, 3000, affinity);
            assert!(
                s[1] > s[0] && s[1] > s[2] && s[1] > 1300,
                "{s:?} (affinity {affinity})"
            );
        }
    }

    #[test]
    fn least_loaded_wins_two_choices_and_full_nodes_are_skipped() {
        let nodes = [node("a", 800, 1), node("b", 100, 1), node("c", 950, 1)];
        let s = shares(&nodes, 1000, false);
        assert_eq!(s[2], 0, "c is above the 90% high-water mark");
        assert!(s[1] > s[0], "{s:?}");
        let p = place(&nodes, None, 0.9).unwrap();
        assert!(!p.alternates.contains(&2));
        let full = [node("a", 950, 1), node("b", 1000, 1)];
        assert_eq!(place(&full, None, 0.9), None);
        assert_eq!(place(&[], None, 0.9), None);
    }

    #[test]
    fn affinity_is_stable_and_follows_the_user() {
        let nodes = [
            node("a", 0, 1),
            node("b", 0, 1),
            node("c", 0, 1),
            node("d", 0, 1),
        ];
        let first = place(&nodes, Some("u_42"), 0.9).unwrap().chosen;
        for _ in 0..20 {
            assert_eq!(place(&nodes, Some("u_42"), 0.9).unwrap().chosen, first);
        }
        // Removing another node does not move the user (rendezvous property).
        let other = if first == 0 { 1 } else { 0 };
        let fewer: Vec<Candidate> = nodes
            .iter()
            .enumerate()
            .filter(|(i, _)| *i != other)
            .map(|(_, n)| n.clone())
            .collect();
        let moved = place(&fewer, Some("u_42"), 0.9).unwrap().chosen;
        assert_eq!(fewer[moved].node_id, nodes[first].node_id);
        let p = place(&nodes, Some("u_42"), 0.9).unwrap();
        assert_eq!(p.alternates.len(), 2);
        assert!(!p.alternates.contains(&p.chosen));
    }
}
