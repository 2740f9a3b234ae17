//! [`PublishAck`]: the backend's answer to a message queued with
//! [`Transport::publish_queued`](crate::Transport::publish_queued).

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};

use futures::future::BoxFuture;

use crate::error::{Error, Result};
use crate::message::MessageId;

/// A future resolving to the backend's acknowledgement of one queued
/// message: its [`MessageId`], or why it was not published.
///
/// Returned by [`Transport::publish_queued`](crate::Transport::publish_queued)
/// and [`Bus::publish_queued`](crate::Bus::publish_queued) once the message
/// is queued. It is `Send + 'static`: keep it, move it to another task,
/// collect many (a `Vec`, a `FuturesOrdered`) and await them later.
///
/// Dropping it does not cancel the publish: the message goes out all the
/// same, only its answer is not heard. Every error of a queued message
/// (the connection lost, the backend refusing it, the transport closed
/// before it was written) resolves this future; none is lost.
///
/// ```
/// use switchyard_core::{MessageId, PublishAck};
///
/// # async fn demo() -> switchyard_core::Result<()> {
/// let ack = PublishAck::ready(Ok(MessageId::new(1, 0)));
/// assert_eq!(ack.await?, MessageId::new(1, 0));
/// # Ok(()) }
/// ```
#[must_use = "a PublishAck carries the publish's outcome: await it, or drop it knowingly (the publish goes on)"]
pub struct PublishAck {
    state: State,
}

enum State {
    /// Already known (adapters that publish directly).
    Ready(Option<Result<MessageId>>),
    /// Resolved later by the adapter.
    Pending(BoxFuture<'static, Result<MessageId>>),
}

impl PublishAck {
    /// An acknowledgement that is already known: `result` is what awaiting
    /// it returns.
    pub fn ready(result: Result<MessageId>) -> Self {
        PublishAck {
            state: State::Ready(Some(result)),
        }
    }

    /// An acknowledgement resolved by `future` (for adapter authors: for
    /// example the receiving side of a channel the writer answers on).
    /// `future` must not be what performs the publish: dropping the
    /// `PublishAck` drops it, and the publish must go on regardless.
    pub fn new<F>(future: F) -> Self
    where
        F: Future<Output = Result<MessageId>> + Send + 'static,
    {
        PublishAck {
            state: State::Pending(Box::pin(future)),
        }
    }

    /// Whether the outcome is known without waiting (a ready
    /// acknowledgement that was not awaited yet).
    pub fn is_ready(&self) -> bool {
        matches!(self.state, State::Ready(Some(_)))
    }

    /// Turns the acknowledgement's outcome into another one, for example to
    /// translate an error (what a wrapping transport does).
    pub fn map<F>(self, f: F) -> Self
    where
        F: FnOnce(Result<MessageId>) -> Result<MessageId> + Send + 'static,
    {
        match self.state {
            State::Ready(Some(r)) => PublishAck::ready(f(r)),
            State::Ready(None) => PublishAck::ready(Err(polled_twice())),
            State::Pending(fut) => PublishAck::new(async move { f(fut.await) }),
        }
    }
}

fn polled_twice() -> Error {
    Error::Backend("PublishAck polled after it completed: its outcome was already returned".into())
}

impl Future for PublishAck {
    type Output = Result<MessageId>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.get_mut();
        match &mut this.state {
            State::Ready(result) => {
                Poll::Ready(result.take().unwrap_or_else(|| Err(polled_twice())))
            }
            State::Pending(fut) => fut.as_mut().poll(cx),
        }
    }
}

impl fmt::Debug for PublishAck {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let state = match &self.state {
            State::Ready(Some(Ok(id))) => format!("ready({id})"),
            State::Ready(Some(Err(e))) => format!("ready(error: {e})"),
            State::Ready(None) => "taken".to_owned(),
            State::Pending(_) => "pending".to_owned(),
        };
        f.debug_struct("PublishAck").field("state", &state).finish()
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]

    use super::*;

    fn assert_send_static<T: Send + 'static>() {}

    #[test]
    fn is_send_and_static() {
        assert_send_static::<PublishAck>();
    }

    #[tokio::test]
    async fn ready_and_pending_resolve() {
        let ack = PublishAck::ready(Ok(MessageId::new(5, 0)));
        assert!(ack.is_ready());
        assert_eq!(ack.await.unwrap(), MessageId::new(5, 0));

        let (tx, rx) = tokio::sync::oneshot::channel();
        let ack = PublishAck::new(async move { rx.await.unwrap_or(Err(Error::Closed)) });
        assert!(!ack.is_ready());
        tx.send(Ok(MessageId::new(6, 0))).unwrap();
        assert_eq!(ack.await.unwrap(), MessageId::new(6, 0));
    }

    #[tokio::test]
    async fn map_translates_both_kinds() {
        let to_closed = |r: Result<MessageId>| r.and(Err(Error::Closed));
        assert!(matches!(
            PublishAck::ready(Ok(MessageId::new(1, 0)))
                .map(to_closed)
                .await,
            Err(Error::Closed)
        ));
        let pending = PublishAck::new(async { Ok(MessageId::new(2, 0)) });
        assert!(matches!(pending.map(to_closed).await, Err(Error::Closed)));
    }
}
