//! Publishes' answers with the sender's own copies behind them: written from wherever the
//! commit completed (the embedded backend's writer thread), as the fan-out writes deliveries, so
//! no task is woken for them; or queued by the session for its flush. See
//! `crate::session::pipeline` for who writes them when.

use super::{Broken, Conn, How};
use crate::transport::Out;
use bytes::Bytes;
use std::sync::Arc;

impl Conn {
    /// Writes publishes' answers, each followed by the connection's own copies of what it
    /// stored that are next in their conversation (the fan-out then finds them sent).
    /// `How::Now`: in one write, from wherever the commits completed, or `false` (nothing
    /// written) when they must be left to the session: something waits before them (unsent
    /// bytes, work handed over), or the connection is ending. `How::Later`: queued behind
    /// what waits, for the session's flush.
    pub(crate) fn answer(
        &self,
        answers: &[(Bytes, Vec<Arc<switchboard_proto::Message>>)],
        how: How,
    ) -> Result<bool, Broken> {
        let mut st = self.state.lock();
        if st.failed {
            return Err(Broken);
        }
        if how == How::Now
            && (st.closed || st.kill.is_some() || !st.backlog.is_empty() || !st.inbox.is_empty())
        {
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
        if how == How::Later {
            for out in outs {
                st.push_later(out);
            }
            return Ok(true);
        }
        if self.write_through(st, &outs) {
            Ok(true)
        } else {
            Err(Broken)
        }
    }
}
