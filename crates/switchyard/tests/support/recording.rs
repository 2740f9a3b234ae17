//! A transport wrapper that records every nack (attempt and `Retry`) and
//! passes everything on to the transport underneath.

use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};

use switchyard::{
    Acknowledger, Capabilities, Delivery, Health, Message, MessageId, Result, Retry, Subscriber,
    SubscriberStats, Subscription, Transport, async_trait,
};

type Log = Arc<Mutex<Vec<(u32, Retry)>>>;

pub(crate) struct Recording {
    inner: Arc<dyn Transport>,
    nacks: Log,
}

impl Recording {
    pub(crate) fn wrap(inner: Arc<dyn Transport>) -> Arc<Recording> {
        Arc::new(Recording {
            inner,
            nacks: Log::default(),
        })
    }

    /// Every nack so far: (attempt, retry).
    pub(crate) fn nacks(&self) -> Vec<(u32, Retry)> {
        self.nacks.lock().unwrap().clone()
    }
}

#[async_trait]
impl Transport for Recording {
    fn name(&self) -> &'static str {
        self.inner.name()
    }
    fn capabilities(&self) -> Capabilities {
        self.inner.capabilities()
    }
    async fn publish(&self, message: Message) -> Result<MessageId> {
        self.inner.publish(message).await
    }
    async fn publish_batch(&self, messages: Vec<Message>) -> Result<Vec<MessageId>> {
        self.inner.publish_batch(messages).await
    }
    async fn subscribe(&self, subscription: Subscription) -> Result<Box<dyn Subscriber>> {
        let inner = self.inner.subscribe(subscription).await?;
        Ok(Box::new(RecordingSubscriber {
            inner,
            nacks: self.nacks.clone(),
        }))
    }
    async fn health(&self) -> Health {
        self.inner.health().await
    }
    async fn close(&self) -> Result<()> {
        self.inner.close().await
    }
}

struct RecordingSubscriber {
    inner: Box<dyn Subscriber>,
    nacks: Log,
}

#[async_trait]
impl Subscriber for RecordingSubscriber {
    fn poll_recv(&mut self, cx: &mut Context<'_>) -> Poll<Option<Result<Delivery>>> {
        match Pin::new(&mut *self.inner).poll_recv(cx) {
            Poll::Ready(Some(Ok(d))) if d.needs_ack() => {
                let (message, id, attempt) = (d.message().clone(), d.id(), d.attempt());
                let acker = Arc::new(Forward {
                    original: tokio::sync::Mutex::new(Some(d)),
                    nacks: self.nacks.clone(),
                });
                Poll::Ready(Some(Ok(Delivery::new(message, id, attempt, Some(acker)))))
            }
            other => other,
        }
    }
    fn stats(&self) -> SubscriberStats {
        self.inner.stats()
    }
    async fn close(self: Box<Self>) -> Result<()> {
        self.inner.close().await
    }
}

/// Settles the original delivery as the wrapper is settled.
struct Forward {
    original: tokio::sync::Mutex<Option<Delivery>>,
    nacks: Log,
}

#[async_trait]
impl Acknowledger for Forward {
    async fn ack(&self, _: &Delivery) -> Result<()> {
        match self.original.lock().await.take() {
            Some(d) => d.ack().await,
            None => Ok(()),
        }
    }
    async fn nack(&self, delivery: &Delivery, retry: Retry) -> Result<()> {
        self.nacks
            .lock()
            .unwrap()
            .push((delivery.attempt(), retry.clone()));
        match self.original.lock().await.take() {
            Some(d) => d.nack(retry).await,
            None => Ok(()),
        }
    }
    async fn in_progress(&self, _: &Delivery) -> Result<()> {
        match &*self.original.lock().await {
            Some(d) => d.in_progress().await,
            None => Ok(()),
        }
    }
    fn abandon(&self, _: &Delivery) {
        if let Ok(mut original) = self.original.try_lock() {
            original.take();
        }
    }
}
