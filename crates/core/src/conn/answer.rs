//! A publish's answer written from wherever its commit completed (the embedded backend's writer
//! thread), as the fan-out writes deliveries: no task is woken for it. See
//! `crate::session::pipeline` for when the session leaves it to this.

use super::{Broken, Conn};
use crate::transport::Out;
use bytes::Bytes;
use std::sync::Arc;

impl Conn {
    /// Writes publishes' answers, each with the connection's own copies of what it stored that
    /// are next in their conversation behind it, in one write, from wherever the commits
    /// completed (no task woken for them). `false` when they must be left to the session:
    /// something waits before them (unsent bytes, work handed over), or the connection is
    /// ending.
    pub(crate) fn answer_now(
        &self,
        answers: &[(Bytes, Vec<Arc<switchboard_proto::Message>>)],
    ) -> Result<bool, Broken> {
        let mut st = self.state.lock();
        if st.failed {
            return Err(Broken);
        }
        if st.closed || st.kill.is_some() || !st.backlog.is_empty() || !st.inbox.is_empty() {
            return Ok(false);
        }
        let mut outs = Vec::with_capacity(answers.len() * 2);
        for (answer, copies) in answers {
            outs.push(Out::Text(answer.clone()));
            for m in copies {
                if let Some(last) = st.live_sub(&m.conv)
                    && m.seq == *last + 1
                {
                    *last = m.seq;
                    outs.push(Out::Text(m.encode_frame()));
                }
            }
        }
        if self.write_through(st, &outs) {
            Ok(true)
        } else {
            Err(Broken)
        }
    }
}
