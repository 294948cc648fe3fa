//! Rebalancing after scale-out: long-lived connections stay where they are when gateways join,
//! so the old gateways stay hot. After each probe round the dispatcher compares every gateway's
//! connections with its share of the total (by capacity: `max_connections × weight`), and asks
//! each one above its share by more than the band to move a bounded number of its clients:
//! `POST /v1/server/nodes/self/shed {count}` (server API key), which sends them the `reconnect`
//! frame. They come back through the dispatcher, which then places them by load (see
//! [`Rebalance::overloaded`]). Paced: at most `step` of a gateway's connections per round, and
//! a gateway that was asked is left alone for `cooldown` while its clients move.

use std::time::Duration;

/// Rebalancing settings.
#[derive(Debug, Clone)]
pub struct Rebalance {
    /// Tolerated distance from a gateway's share, as a fraction (0.2: within ±20%).
    pub band: f64,
    /// The most of a gateway's connections moved per round, as a fraction.
    pub step: f64,
    /// Time left to a gateway after it was asked, before it is asked again.
    pub cooldown: Duration,
    /// The server API key the gateways accept.
    pub api_key: String,
}

/// A gateway's load as the last probe saw it.
#[derive(Debug, Clone, PartialEq)]
pub struct Load {
    /// Its connections.
    pub connections: u64,
    /// `max_connections × weight`: what its share of the total is proportional to.
    pub capacity: f64,
}

impl Rebalance {
    /// How many clients each gateway should move now (same order as `loads`; 0 for most).
    /// Nothing while every gateway is within the band of its share; otherwise each gateway
    /// above its share moves its excess, at most `step` of its connections per round.
    pub fn plan(&self, loads: &[Load]) -> Vec<u64> {
        let total: u64 = loads.iter().map(|l| l.connections).sum();
        let capacity: f64 = loads.iter().map(|l| l.capacity).sum();
        if loads.len() < 2 || total == 0 || capacity <= 0.0 {
            return vec![0; loads.len()];
        }
        let target = |l: &Load| total as f64 * l.capacity / capacity;
        let uneven = loads
            .iter()
            .any(|l| (l.connections as f64 - target(l)).abs() > target(l) * self.band);
        if !uneven {
            return vec![0; loads.len()];
        }
        loads
            .iter()
            .map(|l| {
                let have = l.connections as f64;
                let excess = (have - target(l)).floor();
                if excess < 1.0 {
                    return 0;
                }
                let per_round = ((have * self.step).ceil() as u64).max(1);
                (excess as u64).min(per_round)
            })
            .collect()
    }

    /// Whether a gateway with `connections` of `capacity` is above its share while the
    /// gateways are uneven (one outside the band): the dispatcher then places by load rather
    /// than by affinity, so that moved clients do not come straight back.
    pub fn overloaded(&self, loads: &[Load], connections: u64, capacity: f64) -> bool {
        let total: u64 = loads.iter().map(|l| l.connections).sum();
        let all: f64 = loads.iter().map(|l| l.capacity).sum();
        if loads.len() < 2 || all <= 0.0 {
            return false;
        }
        let target =
            |connections: u64, capacity: f64| (connections as f64, total as f64 * capacity / all);
        let uneven = loads.iter().any(|l| {
            let (have, want) = target(l.connections, l.capacity);
            (have - want).abs() > want * self.band
        });
        let (have, want) = target(connections, capacity);
        uneven && have > want
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn r() -> Rebalance {
        Rebalance {
            band: 0.2,
            step: 0.05,
            cooldown: Duration::from_secs(1),
            api_key: "k".into(),
        }
    }

    fn load(connections: u64) -> Load {
        Load {
            connections,
            capacity: 1000.0,
        }
    }

    #[test]
    fn a_new_gateway_draws_a_paced_share_from_the_hot_ones() {
        let plan = r().plan(&[load(300), load(300), load(0)]);
        assert_eq!(plan, vec![15, 15, 0], "5% of each per round");
    }

    #[test]
    fn loads_within_the_band_are_left_alone() {
        assert_eq!(r().plan(&[load(230), load(190), load(180)]), vec![0, 0, 0]);
        // One far below its share: the others above theirs move clients.
        assert_eq!(
            r().plan(&[load(240), load(239), load(121)]),
            vec![12, 12, 0]
        );
        assert_eq!(r().plan(&[load(10)]), vec![0], "one gateway: nowhere to go");
        assert_eq!(r().plan(&[load(0), load(0)]), vec![0, 0]);
    }

    #[test]
    fn never_moves_more_than_the_excess() {
        let big = Rebalance { step: 1.0, ..r() };
        assert_eq!(big.plan(&[load(260), load(140)]), vec![60, 0]);
    }

    #[test]
    fn affinity_yields_only_while_uneven() {
        let uneven = [load(240), load(239), load(121)];
        assert!(r().overloaded(&uneven, 240, 1000.0));
        assert!(!r().overloaded(&uneven, 121, 1000.0));
        let even = [load(210), load(200), load(190)];
        assert!(!r().overloaded(&even, 210, 1000.0));
    }

    #[test]
    fn capacity_sets_the_share() {
        let loads = [
            Load {
                connections: 200,
                capacity: 2000.0,
            },
            load(100),
        ];
        assert_eq!(
            r().plan(&loads),
            vec![0, 0],
            "twice the capacity, twice the clients"
        );
    }
}
