//! Who the writer's last commit answered, so that the commit delay can tell jobs that came back
//! in answer to that commit from jobs of independent senders. A sender with a few publishes in
//! flight sends its next ones only once these are answered: a wait gathers nothing of theirs and
//! slows every round trip they make (a review measured a connection with 2 in flight at a third
//! of its speed with a 1 ms delay). Jobs of other senders are the ones a wait can gather.

use super::Job;
use std::hash::{DefaultHasher, Hash, Hasher};

/// The senders of the last committed batch: hashes of its appends' idempotency owners (the
/// sender's user id, or the server's), sorted. A rare collision only makes one batch wait or not.
#[derive(Debug, Default)]
pub(super) struct Answered {
    owners: Vec<u64>,
}

impl Answered {
    /// How many of `batch`'s jobs are not from a sender the last commit answered: appends from
    /// other senders, and every other write (whose sender the writer does not know).
    pub(super) fn fresh(&self, batch: &[Job]) -> usize {
        batch
            .iter()
            .filter(|job| match owner(job) {
                Some(o) => self.owners.binary_search(&o).is_err(),
                None => true,
            })
            .count()
    }

    /// Remembers `batch`'s senders as those the last commit answered.
    pub(super) fn remember(&mut self, batch: &[Job]) {
        self.owners.clear();
        self.owners.extend(batch.iter().filter_map(owner));
        self.owners.sort_unstable();
        self.owners.dedup();
    }
}

/// The hash of an append's sender; `None` for any other job.
fn owner(job: &Job) -> Option<u64> {
    match job {
        Job::Append { request, .. } => {
            let mut h = DefaultHasher::new();
            request.idempotency_owner.hash(&mut h);
            Some(h.finish())
        }
        _ => None,
    }
}

/// An append from `owner` (nothing runs it), for tests.
#[cfg(test)]
pub(super) fn append_from(owner: &str) -> Job {
    let mut request = crate::tests::keyed(&switchboard_proto::Conv::room("r"), None);
    request.idempotency_owner = owner.into();
    let (reply, _) = tokio::sync::oneshot::channel();
    Job::Append {
        request,
        reply: reply.into(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn write() -> Job {
        let (reply, _) = tokio::sync::oneshot::channel();
        Job::Write(super::super::TypedJob::boxed(
            |_: &rusqlite::Connection| -> Result<(), switchboard_core::backend::BackendError> {
                Ok(())
            },
            reply,
        ))
    }

    #[test]
    fn jobs_of_senders_the_last_commit_answered_are_not_fresh() {
        let mut a = Answered::default();
        let first = [append_from("u_1"), append_from("u_2"), append_from("u_1")];
        assert_eq!(a.fresh(&first), 3, "nothing answered yet");
        a.remember(&first);
        assert_eq!(a.owners.len(), 2, "one entry per sender");
        assert_eq!(a.fresh(&[append_from("u_1"), append_from("u_2")]), 0);
        assert_eq!(
            a.fresh(&[append_from("u_1"), append_from("u_3"), write()]),
            2,
            "another sender's append and a write are fresh"
        );
        a.remember(&[append_from("u_3")]);
        assert_eq!(
            a.fresh(&[append_from("u_1")]),
            1,
            "only the last commit counts"
        );
        a.remember(&[write()]);
        assert!(a.owners.is_empty());
    }
}
