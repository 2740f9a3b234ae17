//! What the tracing spans (`switchyard::trace`) cost: a publish, its
//! delivery to a consumer group member and the ack, on `memory://` (the
//! adapter with the least cost of its own, so the spans' share shows),
//! measured side by side in one run:
//!
//! - `raw`: the adapter without the tracing wrapper;
//! - `off`: `switchyard::connect` (wrapped), no tracing subscriber: the
//!   cost of the wrapper and the disabled-callsite checks;
//! - `on`: the same with a `tracing-opentelemetry` layer, the W3C
//!   propagator (a `traceparent` written and parsed per message) and an
//!   OpenTelemetry exporter that drops the spans: building, propagating and
//!   finishing four spans (`send`, `process`, `ack`) per message.
//!
//! `cargo bench -p switchyard-benches --bench tracing`.
#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

use std::sync::Arc;

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use opentelemetry::trace::TracerProvider as _;
use opentelemetry_sdk::error::OTelSdkResult;
use opentelemetry_sdk::trace::{SdkTracerProvider, SpanData, SpanExporter};
use switchyard::prelude::*;
use switchyard_benches::{payload, runtime};
use tracing_subscriber::layer::SubscriberExt;

/// An exporter that drops every span: the cost measured is switchyard's
/// and the tracing layer's, not an exporter's.
#[derive(Debug)]
struct Discard;

impl SpanExporter for Discard {
    async fn export(&self, batch: Vec<SpanData>) -> OTelSdkResult {
        drop(batch);
        Ok(())
    }
}

/// One message through `producer` to a group member of `consumer`, acked.
fn round_trip(c: &mut Criterion, name: &str, url: &str, raw: bool) {
    let rt = runtime();
    let (producer, consumer, mut sub) = rt.block_on(async {
        let open = |url: String| async move {
            if raw {
                switchyard::memory::connect(&url).await.unwrap()
            } else {
                switchyard::connect(&url).await.unwrap()
            }
        };
        let producer: Arc<dyn Transport> = open(url.to_owned()).await;
        let consumer: Arc<dyn Transport> = open(url.to_owned()).await;
        let sub = consumer
            .subscribe(Subscription::to("bench.traced").unwrap().group("g"))
            .await
            .unwrap();
        (producer, consumer, sub)
    });
    let topic = Topic::new("bench.traced").unwrap();
    let body = payload(256);
    let mut group = c.benchmark_group("tracing/memory-round-trip");
    group.throughput(Throughput::Elements(1));
    group.bench_function(name, |b| {
        b.iter(|| {
            rt.block_on(async {
                producer
                    .publish(Message::new(topic.clone(), body.clone()))
                    .await
                    .unwrap();
                let d = sub.recv().await.unwrap().unwrap();
                d.ack().await.unwrap();
            })
        });
    });
    group.finish();
    rt.block_on(async {
        sub.close().await.unwrap();
        producer.close().await.unwrap();
        consumer.close().await.unwrap();
    });
}

fn tracing_overhead(c: &mut Criterion) {
    // Without any subscriber first: a subscriber set later changes the
    // callsites' cached interest.
    round_trip(c, "raw", "memory://bench-tracing-raw", true);
    round_trip(c, "off", "memory://bench-tracing-off", false);

    let provider = SdkTracerProvider::builder()
        .with_simple_exporter(Discard)
        .build();
    let layer = tracing_opentelemetry::layer().with_tracer(provider.tracer("bench"));
    switchyard::otel::install_w3c();
    tracing::subscriber::with_default(tracing_subscriber::registry().with(layer), || {
        round_trip(c, "on", "memory://bench-tracing-on", false);
    });
    provider.shutdown().unwrap();
}

criterion_group! {
    name = benches;
    config = switchyard_benches::config();
    targets = tracing_overhead
}
criterion_main!(benches);
