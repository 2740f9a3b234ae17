//! One trace across the bus: a publisher transport and a consumer transport
//! (two `switchyard::connect`s, as two services would have) with
//! `tracing-opentelemetry` and the W3C propagator (`switchyard::otel`).
//! Every order is published in a `send orders.traced` span whose context
//! travels in the `traceparent` header; the consumer's `process
//! orders.traced` span is its child and the `ack orders.traced` span the
//! child of that, all in one trace. The finished spans go to the
//! exporter of the OpenTelemetry tracer provider the caller gives (stdout in the example, in
//! memory in the test): no network.
//!
//! Over `redis+pubsub://` the subscription is fan-out (no groups): no `ack`
//! span, since a fan-out settlement is a no-op.

use std::fmt;

use anyhow::{Context as _, ensure};
use opentelemetry::trace::{TraceContextExt, TracerProvider as _};
use opentelemetry_sdk::trace::SdkTracerProvider;
use switchyard::prelude::*;
use tracing::instrument::WithSubscriber;
use tracing_opentelemetry::OpenTelemetrySpanExt;
use tracing_subscriber::layer::SubscriberExt;

use crate::{PHASE_TIMEOUT, run_id, scheme, shared_url};

/// How many orders are published.
pub const ORDERS: usize = 3;

/// What the run saw.
#[derive(Debug)]
pub struct Summary {
    /// The adapter's name.
    pub adapter: &'static str,
    /// The topic used (unique per run).
    pub topic: String,
    /// Orders published.
    pub published: usize,
    /// Orders the consumer processed.
    pub processed: usize,
    /// Per order: the trace id in its `traceparent` header (the producer's
    /// trace) and the trace id of the consumer's `process` span.
    pub traces: Vec<(String, String)>,
}

impl Summary {
    /// Whether every consumer span joined its producer's trace.
    pub fn one_trace_per_order(&self) -> bool {
        self.traces.len() == self.published
            && self.traces.iter().all(|(p, c)| !p.is_empty() && p == c)
    }
}

impl fmt::Display for Summary {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(
            f,
            "{}: published {}, processed {} on {}",
            self.adapter, self.published, self.processed, self.topic
        )?;
        for (producer, consumer) in &self.traces {
            let same = if producer == consumer {
                "same trace"
            } else {
                "DIFFERENT"
            };
            writeln!(
                f,
                "  producer trace {producer} -> consumer trace {consumer} ({same})"
            )?;
        }
        Ok(())
    }
}

/// Publishes [`ORDERS`] orders on one transport of `url` and processes them
/// on another, with OpenTelemetry spans made by `provider` (whose exporter
/// receives every finished span; flushed before this returns).
pub async fn run(url: &str, provider: &SdkTracerProvider) -> anyhow::Result<Summary> {
    let layer = tracing_opentelemetry::layer().with_tracer(provider.tracer("switchyard-example"));
    let dispatch = tracing::Dispatch::new(tracing_subscriber::registry().with(layer));
    // Process-wide, once: a second call keeps the first (also W3C).
    switchyard::otel::install_w3c();
    let summary = script(url).with_subscriber(dispatch).await;
    provider
        .force_flush()
        .context("flushing the OpenTelemetry spans")?;
    summary
}

async fn script(url: &str) -> anyhow::Result<Summary> {
    let url = shared_url(url, "traced");
    let producer = switchyard::connect(&url).await?;
    let consumer = switchyard::connect(&url).await?;
    let topic = Topic::new(format!("orders.traced.{}", run_id()))?;
    let groups = scheme(&url) != "redis+pubsub";
    let subscription = if groups {
        Subscription::new(topic.clone()).group("fulfilment")
    } else {
        Subscription::new(topic.clone())
    };
    let mut sub = consumer.subscribe(subscription).await?;

    for n in 0..ORDERS {
        producer
            .publish(Message::new(topic.clone(), format!("order {n}")))
            .await?;
    }
    let mut traces = Vec::with_capacity(ORDERS);
    for _ in 0..ORDERS {
        let delivery = tokio::time::timeout(PHASE_TIMEOUT, sub.recv())
            .await
            .with_context(|| format!("waiting for an order on {topic}"))?
            .context("the subscriber closed")??;
        let producer_trace = delivery
            .headers()
            .get(header::TRACEPARENT)
            .and_then(|tp| tp.split('-').nth(1))
            .unwrap_or_default()
            .to_owned();
        let consumer_trace = delivery
            .span()
            .context()
            .span()
            .span_context()
            .trace_id()
            .to_string();
        // The handler's work runs inside the delivery's span.
        delivery
            .span()
            .in_scope(|| tracing::info!("fulfilling the order"));
        delivery.ack().await?;
        traces.push((producer_trace, consumer_trace));
    }
    sub.close().await?;
    let summary = Summary {
        adapter: producer.name(),
        topic: topic.to_string(),
        published: ORDERS,
        processed: traces.len(),
        traces,
    };
    producer.close().await?;
    consumer.close().await?;
    ensure!(summary.one_trace_per_order(), "{summary}");
    Ok(summary)
}
