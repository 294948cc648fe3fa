//! What the writer thread is asked to do: appends, other writes (each a [`WriteJob`]), and
//! close.

use rusqlite::Connection;
use switchboard_core::backend::{AppendRequest, BackendError};
use tokio::sync::oneshot;

/// A write other than an append: runs inside a savepoint, is answered after the commit.
pub(crate) trait WriteJob: Send {
    /// Runs the write; `true` if it succeeded (its savepoint is then kept).
    fn run(&mut self, conn: &Connection) -> bool;
    /// Answers the caller: with the commit's error if the batch failed, else the write's result.
    fn finish(self: Box<Self>, batch_error: Option<BackendError>);
}

/// A [`WriteJob`] made of a closure and the channel for its answer.
pub(crate) struct TypedJob<T, F> {
    f: Option<F>,
    result: Option<Result<T, BackendError>>,
    reply: oneshot::Sender<Result<T, BackendError>>,
}

impl<T, F> TypedJob<T, F>
where
    T: Send + 'static,
    F: FnOnce(&Connection) -> Result<T, BackendError> + Send + 'static,
{
    /// Wraps `f`; its answer goes to `reply`.
    pub(crate) fn boxed(f: F, reply: oneshot::Sender<Result<T, BackendError>>) -> Box<Self> {
        Box::new(TypedJob {
            f: Some(f),
            result: None,
            reply,
        })
    }
}

impl<T, F> WriteJob for TypedJob<T, F>
where
    T: Send + 'static,
    F: FnOnce(&Connection) -> Result<T, BackendError> + Send + 'static,
{
    fn run(&mut self, conn: &Connection) -> bool {
        let Some(f) = self.f.take() else {
            return false;
        };
        let r = f(conn);
        let ok = r.is_ok();
        self.result = Some(r);
        ok
    }

    fn finish(self: Box<Self>, batch_error: Option<BackendError>) {
        let answer = match (batch_error, self.result) {
            (Some(e), _) => Err(e),
            (None, Some(r)) => r,
            (None, None) => Err(BackendError::Internal("write job was not run".into())),
        };
        let _ = self.reply.send(answer);
    }
}

/// What the writer thread is asked to do.
pub(crate) enum Job {
    /// Store and publish a message.
    Append {
        /// The message.
        request: AppendRequest,
        /// Where the answer goes.
        reply: crate::append::AppendReply,
    },
    /// Any other write.
    Write(Box<dyn WriteJob>),
    /// Finish pending jobs, checkpoint the WAL and stop.
    Close {
        /// Answered when the writer is done.
        reply: oneshot::Sender<()>,
    },
}
