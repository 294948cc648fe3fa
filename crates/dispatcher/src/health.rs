//! Whether a gateway is in rotation, from its probe history: two failed probes in a row, or a
//! probe saying `draining: true`, take it out; two good probes in a row bring it back. A gateway
//! never seen before comes in with its first good probe.

/// Rotation state of one gateway.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Health {
    in_rotation: bool,
    seen_good: bool,
    good_streak: u32,
    bad_streak: u32,
}

/// Failed probes in a row that take a gateway out.
pub const FAILS_TO_DROP: u32 = 2;
/// Good probes in a row that bring a dropped gateway back.
pub const GOODS_TO_RETURN: u32 = 2;

impl Health {
    /// Whether clients may be placed there.
    pub fn in_rotation(&self) -> bool {
        self.in_rotation
    }

    /// Records a probe that answered; `draining` takes the gateway out at once.
    pub fn probe_ok(&mut self, draining: bool) {
        self.bad_streak = 0;
        if draining {
            self.good_streak = 0;
            self.in_rotation = false;
            return;
        }
        self.good_streak += 1;
        if !self.seen_good || self.good_streak >= GOODS_TO_RETURN {
            self.in_rotation = true;
        }
        self.seen_good = true;
    }

    /// Records a probe that failed (timeout, refused, bad answer).
    pub fn probe_failed(&mut self) {
        self.good_streak = 0;
        self.bad_streak += 1;
        if self.bad_streak >= FAILS_TO_DROP {
            self.in_rotation = false;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn first_good_probe_admits_two_failures_drop_two_goods_return() {
        let mut h = Health::default();
        assert!(!h.in_rotation());
        h.probe_ok(false);
        assert!(
            h.in_rotation(),
            "a new gateway comes in with its first good probe"
        );
        h.probe_failed();
        assert!(h.in_rotation(), "one failure is tolerated");
        h.probe_failed();
        assert!(!h.in_rotation());
        h.probe_ok(false);
        assert!(!h.in_rotation(), "one good probe is not enough to return");
        h.probe_ok(false);
        assert!(h.in_rotation());
        h.probe_ok(true);
        assert!(!h.in_rotation(), "draining takes it out at once");
        h.probe_ok(false);
        assert!(!h.in_rotation());
        h.probe_ok(false);
        assert!(h.in_rotation());
    }
}
