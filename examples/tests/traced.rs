//! `traced`: one trace from the publisher's transport to the consumer's, on
//! memory, Redis Streams and the Pub/Sub backplane (real `redis-server`),
//! checked in the spans an in-memory OpenTelemetry exporter received.

mod support;

use anyhow::ensure;
use opentelemetry_sdk::trace::{InMemorySpanExporter, SdkTracerProvider};
use switchyard_examples::traced::{self, ORDERS};

async fn check(url: &str, adapter: &str, acks: usize) -> anyhow::Result<()> {
    let exporter = InMemorySpanExporter::default();
    let provider = SdkTracerProvider::builder()
        .with_simple_exporter(exporter.clone())
        .build();
    let summary = traced::run(url, &provider).await?;
    ensure!(summary.adapter == adapter, "{summary}");
    ensure!(
        summary.published == ORDERS && summary.processed == ORDERS,
        "{summary}"
    );
    ensure!(summary.one_trace_per_order(), "{summary}");
    let spans = exporter.get_finished_spans()?;
    let count = |name: String| spans.iter().filter(|s| s.name == name).count();
    ensure!(count(format!("send {}", summary.topic)) == ORDERS);
    ensure!(count(format!("process {}", summary.topic)) == ORDERS);
    ensure!(count(format!("ack {}", summary.topic)) == acks);
    for (producer, _) in &summary.traces {
        let in_trace = spans
            .iter()
            .filter(|s| s.span_context.trace_id().to_string() == *producer)
            .count();
        // send, process (and ack) of this order, nothing else.
        ensure!(
            in_trace == 2 + acks / ORDERS,
            "{in_trace} spans in {producer}"
        );
    }
    Ok(())
}

#[tokio::test]
async fn traced_on_memory() -> anyhow::Result<()> {
    check("memory://", "memory", ORDERS).await
}

#[tokio::test]
async fn traced_on_redis_streams() -> anyhow::Result<()> {
    let server = support::redis()?;
    check(
        &support::url(&server, "redis+streams"),
        "redis-streams",
        ORDERS,
    )
    .await
}

#[tokio::test]
async fn traced_on_redis_pubsub() -> anyhow::Result<()> {
    let server = support::redis()?;
    check(&support::url(&server, "redis+pubsub"), "redis-pubsub", 0).await
}
