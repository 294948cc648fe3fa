//! [`Broker`] for the embedded backend: appends are jobs for the writer thread, which commits,
//! then publishes on the in-process bus in seq order; history and positions are reads.

use crate::EmbeddedBackend;
use crate::append::AppendReply;
use crate::error::closed;
use crate::reads;
use crate::writer::Job;
use async_trait::async_trait;
use std::sync::Arc;
use switchboard_core::backend::{
    AppendDone, AppendRequest, Appended, BackendError, Broker, ControlEvent, HistoryQuery, Position,
};
use switchboard_proto::{Conv, Message};

#[async_trait]
impl Broker for EmbeddedBackend {
    async fn append(&self, request: AppendRequest) -> Result<Appended, BackendError> {
        self.send_append(request)?.await.map_err(|_| closed())?
    }

    fn append_queued(
        self: Arc<Self>,
        request: AppendRequest,
    ) -> std::pin::Pin<Box<dyn std::future::Future<Output = Result<Appended, BackendError>> + Send>>
    {
        // The job is in the writer's queue when this returns: the writer takes jobs in order.
        let queued = self.send_append(request);
        Box::pin(async move { queued?.await.map_err(|_| closed())? })
    }

    fn append_then(self: Arc<Self>, request: AppendRequest, done: AppendDone) {
        // Run on the writer thread after the commit, before the stored messages are published.
        if let Err(e) = self.check_open() {
            return done(Err(e));
        }
        let job = Job::Append {
            request,
            reply: AppendReply::Then(done),
        };
        if let Err(refused) = self.jobs.send(job) {
            // The writer is gone: answer here, so no caller waits forever.
            if let Job::Append { reply, .. } = refused.0 {
                reply.send(Err(closed()));
            }
        }
    }

    fn queues_in_order(&self) -> bool {
        true
    }

    async fn append_many(
        &self,
        requests: Vec<AppendRequest>,
    ) -> Vec<Result<Appended, BackendError>> {
        // Queue them all before waiting, so that they share commits.
        let pending: Vec<_> = requests.into_iter().map(|r| self.send_append(r)).collect();
        let mut out = Vec::with_capacity(pending.len());
        for p in pending {
            out.push(match p {
                Ok(rx) => rx.await.unwrap_or_else(|_| Err(closed())),
                Err(e) => Err(e),
            });
        }
        out
    }

    async fn history(
        &self,
        conv: &Conv,
        query: HistoryQuery,
    ) -> Result<Vec<Arc<Message>>, BackendError> {
        let conv = conv.clone();
        let tail = self.tail.clone();
        self.read(move |c| reads::history(c, &tail, &conv, query))
            .await
    }

    async fn position(&self, conv: &Conv) -> Result<Position, BackendError> {
        let (head_seq, oldest) = if self.stored.may_have_messages(conv) {
            let conv_owned = conv.clone();
            let tail = self.tail.clone();
            self.read(move |c| reads::position(c, &tail, &conv_owned))
                .await?
        } else {
            // Never had a message (most users' own streams): nothing to read.
            self.check_open()?;
            (0, None)
        };
        Ok(Position {
            epoch: self.epoch.clone(),
            head_seq,
            oldest_seq: oldest.unwrap_or(head_seq + 1),
        })
    }

    async fn subscribe(&self, _conv: &Conv) -> Result<(), BackendError> {
        self.check_open()
    }

    async fn unsubscribe(&self, _conv: &Conv) -> Result<(), BackendError> {
        self.check_open()
    }

    /// The in-process bus hands every message to the hub, which knows its subscribers.
    fn needs_subscriptions(&self) -> bool {
        false
    }

    async fn broadcast(&self, event: ControlEvent) -> Result<(), BackendError> {
        self.check_open()?;
        self.bus.control(event).await;
        Ok(())
    }
}
