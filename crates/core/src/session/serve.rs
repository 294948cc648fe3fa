//! The session's loop: what the fan-out handed over, the socket becoming writable, the client's
//! next frame, and the timers (auth deadline, token expiry, write stall, heartbeats).

use super::pipeline::next_answer;
use super::{End, PreAuth, Session};
use crate::error::Error;
use crate::moment::Moment;
use crate::transport::{Inbound, Out, Transport};
use std::pin::Pin;
use switchboard_proto::DisconnectReason;
use tokio::time::Instant;

/// Heartbeats a peer may leave unanswered; at the next one it is considered dead.
const MISSED_PINGS_ALLOWED: u8 = 2;
/// Handed-over messages handled per turn of the loop (the rest is taken at the next turn:
/// `Conn::attention` stays ready while anything waits).
const DELIVERY_BATCH: usize = 256;

/// The work the loop's wait chose: done at once, or a step to await (boxed: its state is
/// allocated only while it runs, and every connection's future keeps 16 bytes for it).
enum Step<'a> {
    Done(Result<(), End>),
    Run(Pin<Box<dyn Future<Output = Result<(), End>> + Send + 'a>>),
}

impl<T: Transport> Session<T> {
    /// Runs the connection until it ends, and says how.
    ///
    /// Not an async fn (which keeps its arguments twice in its future), and the wait yields a
    /// [`Step`] instead of running a branch's work inside `select!` (whose output and the
    /// client's frame would keep their room beside every later wait): this future is what
    /// every connection holds for its life.
    #[allow(clippy::manual_async_fn)] // on purpose: see above
    pub(super) fn serve(
        &mut self,
        pre_auth: Option<Box<PreAuth>>,
    ) -> impl Future<Output = End> + Send + '_ {
        async move {
            if let Some(p) = pre_auth
                && let Err(end) = Box::pin(self.pre_authenticated(*p)).await
            {
                return end;
            }
            // The timer keeps its own deadline: no copy of it in every connection's future.
            let timer = tokio::time::sleep_until(self.next_deadline());
            tokio::pin!(timer);
            loop {
                let unsent = self.subs.conn.backlog() > 0;
                if unsent {
                    // Checked here too, not only by the timer: a client that keeps its socket
                    // busy could keep the timer from ever being polled.
                    if let Err(e) = self.check_stall(Instant::now()) {
                        return e;
                    }
                    // A backlog that does not move is a slow consumer: wake up for that too.
                    let deadline = self.next_deadline();
                    if deadline < timer.deadline() {
                        timer.as_mut().reset(deadline);
                    }
                }
                // Publishes answered where their commits completed leave an empty line behind.
                if self.pipeline.as_ref().is_some_and(|p| p.is_empty()) {
                    self.pipeline = None;
                }
                // With the most publishes in flight, the next frame waits for an answer.
                let full = self.pipeline_full();
                let mut timed_out = false;
                // In a block: the step borrows the session until it is done.
                let r = {
                    let step = tokio::select! {
                        biased;
                        () = self.subs.conn.attention() => Step::Run(Box::pin(self.on_attention())),
                        () = self.subs.conn.writable(), if unsent => {
                            Step::Done(self.subs.conn.flush().map(|_| ()).map_err(End::from))
                        }
                        () = next_answer(&self.pipeline, full), if self.pipeline.is_some() => {
                            Step::Run(Box::pin(self.on_answer()))
                        }
                        ev = self.t.recv(), if full == 0 => self.on_inbound(ev),
                        () = &mut timer => {
                            timed_out = true;
                            Step::Run(Box::pin(self.on_timer()))
                        }
                    };
                    match step {
                        Step::Done(r) => r,
                        Step::Run(work) => work.await,
                    }
                };
                if timed_out {
                    timer.as_mut().reset(self.next_deadline());
                }
                if let Err(e) = r {
                    return e;
                }
            }
        }
    }

    /// What the client sent (or its end): handled at once, or a step to await.
    fn on_inbound(&mut self, ev: Option<Inbound>) -> Step<'_> {
        match ev {
            None => Step::Done(Err(End::Gone)),
            Some(Inbound::Alive) => {
                self.heard = true;
                Step::Done(Ok(()))
            }
            Some(Inbound::Ping(payload)) => {
                self.heard = true;
                // Pings count as frames, and a client that is not reading gets no pong (RFC 6455
                // lets an endpoint answer only the latest): pongs cannot pile up.
                Step::Done(
                    if self.frame_bucket.try_take() && self.subs.conn.backlog() == 0 {
                        self.subs.conn.write(Out::Pong(payload)).map_err(End::from)
                    } else {
                        Ok(())
                    },
                )
            }
            Some(Inbound::Frame(b)) => {
                self.heard = true;
                Step::Run(Box::pin(self.on_frame(b)))
            }
            Some(Inbound::TooLarge(n)) => Step::Run(Box::pin(self.on_too_large(n))),
            Some(Inbound::Refused(r)) => {
                self.heard = true;
                Step::Run(Box::pin(self.on_refused(*r)))
            }
        }
    }

    /// The earliest of: the next heartbeat, the auth deadline or token expiry, the write stall.
    fn next_deadline(&self) -> Instant {
        let at = Instant::from(self.next_ping.min(self.deadline));
        match self.subs.conn.backlog_moved_at() {
            Some(moved) => at.min(moved + self.subs.node.limits.write_timeout),
            None => at,
        }
    }

    /// The connection was asked to end, a write failed, or work was handed over.
    async fn on_attention(&mut self) -> Result<(), End> {
        if let Some(reason) = self.subs.conn.reason() {
            return Err(End::Disconnect(reason));
        }
        if self.subs.conn.failed() {
            return Err(End::Gone);
        }
        for _ in 0..DELIVERY_BATCH {
            match self.subs.conn.next_handed_over() {
                Some(o) => self.on_outbound(o).await?,
                None => break,
            }
        }
        // Deliveries are queued (`How::Later`): one write sends the turn's frames.
        self.subs.conn.flush()?;
        Ok(())
    }

    async fn on_timer(&mut self) -> Result<(), End> {
        let now = Instant::now();
        let moment = Moment::from(now);
        if moment >= self.deadline {
            if self.authenticated {
                return Err(End::Disconnect(DisconnectReason::AuthExpired));
            }
            let ms = self.subs.node.limits.auth_timeout.as_millis();
            self.reply_error(
                None,
                Error::unauthorized(format!("no auth frame within {ms} ms")),
            )
            .await?;
            return Err(End::Close);
        }
        // A client that does not read for the write timeout is a slow consumer.
        self.check_stall(now)?;
        if moment >= self.next_ping {
            // A ping is missed when nothing at all arrived between it and the next one.
            if self.pinged && !self.heard {
                self.missed_pings += 1;
            } else {
                self.missed_pings = 0;
            }
            if self.missed_pings >= MISSED_PINGS_ALLOWED {
                tracing::debug!(key = self.subs.key(), "peer missed two heartbeats");
                self.subs
                    .node
                    .metrics
                    .disconnect(DisconnectReason::ProtocolError);
                return Err(End::Gone);
            }
            self.subs.conn.write(Out::Ping)?;
            self.pinged = true;
            self.heard = false;
            self.next_ping = moment
                + self
                    .t
                    .heartbeat()
                    .unwrap_or(self.subs.node.limits.heartbeat);
        }
        Ok(())
    }
}
