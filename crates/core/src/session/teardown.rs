//! How a session ends: the last frames (`reconnect` on shutdown, `disconnect` with its reason,
//! the close), within a grace period, then the release of everything the connection held.

use super::{End, Session};
use crate::transport::{Out, Transport};
use std::time::Duration;
use switchboard_proto::{DisconnectReason, ServerFrame};
use tokio::time::timeout;

/// Time allowed for the last frames when a connection is being closed.
const CLOSE_GRACE: Duration = Duration::from_secs(1);

impl<T: Transport> Session<T> {
    /// Sends the last frames for `end`, closes the socket and releases the subscriptions,
    /// presence and the hub's record of the connection.
    pub(super) async fn finish(&mut self, end: End) {
        // From here on the fan-out leaves this connection alone.
        self.subs.conn.close();
        let code = self.t.close_code();
        let _ = timeout(CLOSE_GRACE, self.last_frames(end, code)).await;
        self.subs.conn.shutdown();
        self.subs.close_all().await;
    }

    async fn last_frames(&mut self, end: End, code: u16) -> Result<(), End> {
        let mut last = Vec::new();
        if let End::Disconnect(reason) = end {
            self.subs.node.metrics.disconnect(reason);
            if reason == DisconnectReason::Shutdown {
                let jitter_ms = self.subs.node.limits.reconnect_jitter.as_millis() as u64;
                let delay_ms = switchboard_proto::ids::random_u64() % jitter_ms.max(1);
                let reconnect = ServerFrame::Reconnect {
                    reason: "shutdown".into(),
                    delay_ms,
                };
                last.push(reconnect.encode());
            }
            last.push(ServerFrame::Disconnect { reason }.encode());
            if reason == DisconnectReason::SlowConsumer {
                // What waited is not sent (the client resumes from history): the disconnect
                // goes out now, not behind a backlog the client is not reading.
                self.subs.conn.discard_unsent();
            }
        }
        for frame in last {
            self.subs.conn.write(Out::Text(frame))?;
        }
        self.subs.conn.write(Out::Close(code))?;
        self.drain().await
    }
}
