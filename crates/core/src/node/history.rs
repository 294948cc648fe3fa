//! History pages, bounded in bytes as well as in messages. A page is read from the backend in
//! chunks and stops once its messages reach the byte cap (`--history-page-bytes`), so neither
//! the reply nor the read behind it can hold more than about the cap plus one chunk, whatever
//! size the stored messages are. A page cut short says `more`; the client asks again from
//! where it ends (after its last seq going forward, before its first going back).

use super::*;

/// Messages asked of the backend in the first read of a page: a usual page (50 small
/// messages) is one read; a read of large messages holds at most this many at once.
const FIRST_CHUNK: u32 = 64;

/// A page of history.
#[derive(Debug, Default)]
pub struct HistoryPage {
    /// Ascending seq.
    pub messages: Vec<Arc<Message>>,
    /// The byte cap cut the page short: more messages match the query.
    pub more: bool,
}

/// What a message counts for against the cap: its body and the frame around it.
fn size_of(m: &Message) -> usize {
    m.body.get().len() + m.message_id.len() + 192
}

impl Node {
    /// A page of history `user_id` may read, capped at `--history-page-bytes`.
    pub async fn history(
        &self,
        user_id: &str,
        conv: &Conv,
        mut query: HistoryQuery,
    ) -> Result<HistoryPage> {
        self.check_read(user_id, conv).await?;
        query.limit = clamp_limit(Some(query.limit))?;
        self.read_history(conv, query, self.limits.history_page_bytes)
            .await
    }

    /// Reads a page of `conv` (no access check) of at most `query.limit` messages and about
    /// `max_bytes` bytes (always at least one message). With `after`, the page starts right
    /// after it and a cut keeps the earliest; otherwise it ends right before `before` (or at
    /// the newest) and a cut keeps the latest, as the query without a cap would.
    pub async fn read_history(
        &self,
        conv: &Conv,
        query: HistoryQuery,
        max_bytes: usize,
    ) -> Result<HistoryPage> {
        let forward = query.after.is_some();
        let limit = query.limit.max(1) as usize;
        let (mut after, mut before) = (query.after, query.before);
        // Going back, messages are collected newest first and turned around at the end.
        let mut got: Vec<Arc<Message>> = Vec::new();
        let mut bytes = 0;
        let mut chunk = FIRST_CHUNK;
        let more = loop {
            let ask = chunk.min((limit - got.len()) as u32);
            let q = HistoryQuery {
                after,
                before,
                limit: ask,
            };
            let mut read = self.backend.broker.history(conv, q).await?;
            let n = read.len();
            let (first, last) = (read.first().map(|m| m.seq), read.last().map(|m| m.seq));
            if !forward {
                read.reverse();
            }
            let mut cut = false;
            for m in read {
                let size = size_of(&m);
                if !got.is_empty() && bytes + size > max_bytes {
                    cut = true;
                    break;
                }
                bytes += size;
                got.push(m);
            }
            if cut {
                break true;
            }
            if n < ask as usize || got.len() >= limit {
                break false;
            }
            match (forward, first, last) {
                (true, _, Some(last)) => after = Some(last),
                (false, Some(first), _) => before = Some(first),
                _ => break false,
            }
            // Size the next read from what messages weigh so far.
            let average = (bytes / got.len()).max(1);
            chunk = ((max_bytes.saturating_sub(bytes) / average) as u32 + 1).clamp(1, 500);
        };
        if !forward {
            got.reverse();
        }
        Ok(HistoryPage {
            messages: got,
            more,
        })
    }
}
