//! [`Broker`] for the Redis backend: appends, history and positions in the broker module;
//! subscribing and unsubscribing are requests to the pub/sub task.

use crate::RedisBackend;
use crate::{broker, pubsub};
use async_trait::async_trait;
use std::sync::Arc;
use switchboard_core::backend::{
    AppendRequest, Appended, BackendError, Broker, ControlEvent, HistoryQuery, Position,
};
use switchboard_proto::{Conv, Message};

#[async_trait]
impl Broker for RedisBackend {
    async fn append(&self, request: AppendRequest) -> Result<Appended, BackendError> {
        self.shared.check_open()?;
        broker::append(&self.shared, request).await
    }

    async fn append_many(
        &self,
        requests: Vec<AppendRequest>,
    ) -> Vec<Result<Appended, BackendError>> {
        if let Err(e) = self.shared.check_open() {
            return requests.iter().map(|_| Err(e.clone())).collect();
        }
        broker::append_many(&self.shared, requests).await
    }

    async fn history(
        &self,
        conv: &Conv,
        query: HistoryQuery,
    ) -> Result<Vec<Arc<Message>>, BackendError> {
        self.shared.check_open()?;
        broker::history(&self.shared, conv, query).await
    }

    async fn position(&self, conv: &Conv) -> Result<Position, BackendError> {
        self.shared.check_open()?;
        broker::position(&self.shared, conv).await
    }

    async fn subscribe(&self, conv: &Conv) -> Result<(), BackendError> {
        self.shared.check_open()?;
        pubsub::request(&self.shared, conv, true).await
    }

    async fn unsubscribe(&self, conv: &Conv) -> Result<(), BackendError> {
        self.shared.check_open()?;
        pubsub::request(&self.shared, conv, false).await
    }

    async fn broadcast(&self, event: ControlEvent) -> Result<(), BackendError> {
        self.shared.check_open()?;
        broker::broadcast(&self.shared, &event).await
    }
}
