//! Without a configured propagator no trace context is written into
//! headers; without a tracing subscriber no span is made at all and
//! everything works as before. (Its own test binary: no process-wide
//! propagator or subscriber is ever set here.)
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::Arc;
use std::time::Duration;

use opentelemetry::trace::TracerProvider as _;
use opentelemetry_sdk::trace::{InMemorySpanExporter, SdkTracerProvider};
use switchyard::otel::OtelPropagator;
use switchyard::prelude::*;
use switchyard::trace::Traced;
use tracing_subscriber::layer::SubscriberExt;

const WAIT: Duration = Duration::from_secs(10);

async fn round_trip(producer: &dyn Transport, consumer: &dyn Transport, topic: &str) -> Delivery {
    let t = Topic::new(topic).expect("topic");
    let mut sub = consumer
        .subscribe(Subscription::new(t.clone()).group("g"))
        .await
        .expect("subscribe");
    producer
        .publish(Message::new(t, "x"))
        .await
        .expect("publish");
    tokio::time::timeout(WAIT, sub.recv())
        .await
        .expect("in time")
        .expect("open")
        .expect("delivery")
}

/// One test, in order: tracing caches each callsite's interest
/// process-wide, so a thread-local subscriber in a concurrent test would
/// make the "no subscriber" half see spans.
#[tokio::test]
async fn without_then_with_a_subscriber() {
    no_subscriber_no_span_no_header().await;
    spans_without_propagator_write_no_header().await;
}

async fn no_subscriber_no_span_no_header() {
    let url = "memory://default-none";
    let producer = switchyard::connect(url).await.expect("producer");
    let consumer = switchyard::connect(url).await.expect("consumer");
    let d = round_trip(&*producer, &*consumer, "plain").await;
    assert_eq!(d.headers().get(header::TRACEPARENT), None);
    assert!(d.span().is_disabled());
    d.ack().await.expect("ack");
}

/// A tracing subscriber with the OpenTelemetry layer (this thread only),
/// no propagator: spans, but no header; with a per-transport propagator the
/// header is written and the consumer joins the trace.
async fn spans_without_propagator_write_no_header() {
    let exporter = InMemorySpanExporter::default();
    let provider = SdkTracerProvider::builder()
        .with_simple_exporter(exporter.clone())
        .build();
    let layer = tracing_opentelemetry::layer().with_tracer(provider.tracer("test"));
    let _guard = tracing::subscriber::set_default(tracing_subscriber::registry().with(layer));

    let url = "memory://default-spans";
    let producer = switchyard::connect(url).await.expect("producer");
    let consumer = switchyard::connect(url).await.expect("consumer");
    let d = round_trip(&*producer, &*consumer, "spans").await;
    assert_eq!(d.headers().get(header::TRACEPARENT), None);
    assert!(!d.span().is_disabled());
    d.ack().await.expect("ack");

    let w3c: Arc<dyn switchyard::trace::Propagator> = Arc::new(OtelPropagator::w3c());
    let producer = Traced::new(switchyard::memory::connect(url).await.expect("producer"))
        .with_propagator(w3c.clone());
    let consumer =
        Traced::new(switchyard::memory::connect(url).await.expect("consumer")).with_propagator(w3c);
    let d = round_trip(&producer, &consumer, "propagated").await;
    let traceparent = d
        .headers()
        .get(header::TRACEPARENT)
        .expect("written by the transport's own propagator")
        .to_owned();
    d.ack().await.expect("ack");

    let spans = exporter.get_finished_spans().expect("spans");
    let names: Vec<_> = spans.iter().map(|s| s.name.to_string()).collect();
    for name in [
        "send spans",
        "process spans",
        "ack spans",
        "send propagated",
        "process propagated",
        "ack propagated",
    ] {
        assert_eq!(
            names.iter().filter(|n| *n == name).count(),
            1,
            "{name} in {names:?}"
        );
    }
    let by = |n: &str| spans.iter().find(|s| s.name == n).expect("span");
    assert_ne!(
        by("send spans").span_context.trace_id(),
        by("process spans").span_context.trace_id()
    );
    let send = by("send propagated");
    assert_eq!(
        by("process propagated").parent_span_id,
        send.span_context.span_id()
    );
    assert!(traceparent.contains(&send.span_context.trace_id().to_string()));
}
