//! Where a resume starts: a pure function of what the client has and what history holds.

use crate::backend::Position;
use switchboard_proto::frame::{ResumePosition, Resumed};

/// Where a resume starts: after the client's seq when history still reaches it and the epoch
/// matches; otherwise from the oldest stored message, with `recovered: false`.
pub fn decide(p: &ResumePosition, pos: &Position) -> Resumed {
    let since = p.seq();
    let epoch_ok = p.epoch().is_none_or(|e| e == pos.epoch);
    let (recovered, from_seq) = if epoch_ok && since <= pos.head_seq && since + 1 >= pos.oldest_seq
    {
        (true, since + 1)
    } else {
        (false, pos.oldest_seq)
    };
    Resumed {
        recovered,
        from_seq,
        epoch: pos.epoch.clone(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pos(head: u64, oldest: u64) -> Position {
        Position {
            epoch: "e1".into(),
            head_seq: head,
            oldest_seq: oldest,
        }
    }

    #[test]
    fn resume_decisions() {
        let r = decide(&ResumePosition::Seq(5), &pos(10, 1));
        assert_eq!((r.recovered, r.from_seq), (true, 6));
        let r = decide(&ResumePosition::Seq(0), &pos(0, 1));
        assert_eq!((r.recovered, r.from_seq), (true, 1));
        let r = decide(&ResumePosition::Seq(10), &pos(10, 1));
        assert_eq!((r.recovered, r.from_seq), (true, 11));
        // History trimmed past the client's position.
        let r = decide(&ResumePosition::Seq(2), &pos(10, 5));
        assert_eq!((r.recovered, r.from_seq), (false, 5));
        let r = decide(&ResumePosition::Seq(4), &pos(10, 5));
        assert_eq!((r.recovered, r.from_seq), (true, 5));
        // Other epoch, or a seq from the future: history was lost.
        let r = decide(
            &ResumePosition::WithEpoch {
                seq: 3,
                epoch: Some("e0".into()),
            },
            &pos(10, 1),
        );
        assert_eq!((r.recovered, r.from_seq), (false, 1));
        let r = decide(&ResumePosition::Seq(20), &pos(10, 1));
        assert_eq!((r.recovered, r.from_seq), (false, 1));
    }
}
