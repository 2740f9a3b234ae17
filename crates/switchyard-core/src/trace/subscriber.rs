//! The traced subscriber: a `process` span per delivery, context
//! extraction, and `ack`/`nack` spans around settlements.

use std::sync::Arc;
use std::task::{Context, Poll};

use tracing::Instrument;
use tracing::field::Empty;

use super::transport::Propagation;
use super::{TARGET, messaging_system};
use crate::delivery::{Acknowledger, Delivery, Retry};
use crate::error::Result;
use crate::transport::{Subscriber, SubscriberStats};

/// A [`Subscriber`] made by a [`Traced`](super::Traced) transport: passes
/// everything to the adapter's subscriber and gives each delivery its
/// `process {topic}` span ([`Delivery::span`]), a child of the producer's
/// trace context when the propagator finds one in the headers. Settling a
/// group delivery runs in an `ack {topic}` / `nack {topic}` span.
pub struct TracedSubscriber {
    inner: Box<dyn Subscriber>,
    adapter: &'static str,
    system: &'static str,
    group: Option<Arc<str>>,
    propagation: Propagation,
    /// The last acknowledger wrapped, and its wrapper: adapters use one
    /// acknowledger per subscriber, so one wrapper serves every delivery.
    wrapped: Option<(Arc<dyn Acknowledger>, Arc<dyn Acknowledger>)>,
}

impl TracedSubscriber {
    pub(super) fn new(
        inner: Box<dyn Subscriber>,
        adapter: &'static str,
        group: Option<String>,
        propagation: Propagation,
    ) -> Self {
        TracedSubscriber {
            inner,
            adapter,
            system: messaging_system(adapter),
            group: group.map(Arc::from),
            propagation,
            wrapped: None,
        }
    }

    fn trace(&mut self, delivery: &mut Delivery) {
        let span = tracing::info_span!(
            target: TARGET,
            "process",
            otel.name = %format_args!("process {}", delivery.topic()),
            otel.kind = "consumer",
            "messaging.system" = self.system,
            "messaging.operation.type" = "process",
            "messaging.operation.name" = "process",
            "messaging.destination.name" = %delivery.topic(),
            "messaging.consumer.group.name" = self.group.as_deref(),
            "messaging.message.id" = %delivery.id(),
            "messaging.message.body.size" = super::int(delivery.payload().len()),
            "messaging.switchyard.attempt" = i64::from(delivery.attempt()),
            "messaging.switchyard.adapter" = self.adapter,
        );
        if span.is_disabled() {
            return;
        }
        if let Some(p) = self.propagation.get() {
            p.extract(delivery.headers(), &span);
        }
        let (system, group, wrapped) = (self.system, &self.group, &mut self.wrapped);
        delivery.attach_trace(span, |acker| match wrapped {
            Some((inner, outer)) if same(inner, acker) => outer.clone(),
            _ => {
                let outer: Arc<dyn Acknowledger> = Arc::new(TracedAcker {
                    inner: acker.clone(),
                    system,
                    group: group.clone(),
                });
                *wrapped = Some((acker.clone(), outer.clone()));
                outer
            }
        });
    }
}

/// Whether two acknowledgers are the same object (data pointers only).
fn same(a: &Arc<dyn Acknowledger>, b: &Arc<dyn Acknowledger>) -> bool {
    std::ptr::addr_eq(Arc::as_ptr(a), Arc::as_ptr(b))
}

#[async_trait::async_trait]
impl Subscriber for TracedSubscriber {
    fn poll_recv(&mut self, cx: &mut Context<'_>) -> Poll<Option<Result<Delivery>>> {
        let mut item = std::task::ready!(self.inner.poll_recv(cx));
        if let Some(Ok(delivery)) = &mut item {
            self.trace(delivery);
        }
        Poll::Ready(item)
    }

    fn stats(&self) -> SubscriberStats {
        self.inner.stats()
    }

    async fn close(self: Box<Self>) -> Result<()> {
        self.inner.close().await
    }
}

/// Wraps an adapter's acknowledger with `ack`/`nack` spans, children of the
/// delivery's `process` span.
struct TracedAcker {
    inner: Arc<dyn Acknowledger>,
    system: &'static str,
    group: Option<Arc<str>>,
}

impl TracedAcker {
    fn span(&self, delivery: &Delivery, operation: &'static str) -> tracing::Span {
        let span = tracing::info_span!(
            target: TARGET,
            parent: delivery.span(),
            "settle",
            otel.name = %format_args!("{operation} {}", delivery.topic()),
            otel.kind = "client",
            otel.status_code = Empty,
            "messaging.system" = self.system,
            "messaging.operation.type" = "settle",
            "messaging.operation.name" = operation,
            "messaging.destination.name" = %delivery.topic(),
            "messaging.consumer.group.name" = self.group.as_deref(),
            "messaging.message.id" = %delivery.id(),
            "messaging.switchyard.attempt" = i64::from(delivery.attempt()),
            "messaging.switchyard.retry" = Empty,
            "error.type" = Empty,
        );
        span
    }
}

#[async_trait::async_trait]
impl Acknowledger for TracedAcker {
    async fn ack(&self, delivery: &Delivery) -> Result<()> {
        let span = self.span(delivery, "ack");
        let result = self.inner.ack(delivery).instrument(span.clone()).await;
        if let Err(e) = &result {
            super::record_error(&span, e);
        }
        result
    }

    async fn nack(&self, delivery: &Delivery, retry: Retry) -> Result<()> {
        let span = self.span(delivery, "nack");
        span.record(
            "messaging.switchyard.retry",
            match &retry {
                Retry::Now => "now",
                Retry::After(_) => "after",
                Retry::DeadLetter(_) => "dead_letter",
            },
        );
        let result = self
            .inner
            .nack(delivery, retry)
            .instrument(span.clone())
            .await;
        if let Err(e) = &result {
            super::record_error(&span, e);
        }
        result
    }

    async fn in_progress(&self, delivery: &Delivery) -> Result<()> {
        self.inner.in_progress(delivery).await
    }

    fn abandon(&self, delivery: &Delivery) {
        self.inner.abandon(delivery)
    }
}
