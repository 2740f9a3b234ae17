//! Spans and W3C trace context across transports: a message published on
//! one `switchyard::connect` (the producer "process") and consumed on
//! another (the consumer "process") carries one trace, over memory://,
//! redis+streams:// and redis+pubsub:// (real redis-server processes). The
//! spans are exported by OpenTelemetry's in-memory exporter through
//! `tracing-opentelemetry`; the W3C propagator is set process-wide.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::{Duration, Instant};

use opentelemetry::trace::{SpanId, SpanKind};
use opentelemetry::{KeyValue, Value};
use opentelemetry_sdk::trace::SpanData;
use switchyard::prelude::*;
use switchyard::trace::Traced;
use switchyard_testkit::RedisServer;

#[path = "support/otel.rs"]
mod otel;
use otel::exporter;

const WAIT: Duration = Duration::from_secs(10);

fn attr<'a>(span: &'a SpanData, key: &str) -> Option<&'a Value> {
    span.attributes
        .iter()
        .find(|KeyValue { key: k, .. }| k.as_str() == key)
        .map(|kv| &kv.value)
}

fn attr_str(span: &SpanData, key: &str) -> Option<String> {
    attr(span, key).map(|v| v.as_str().into_owned())
}

/// The finished spans whose destination is `topic`, once `done` says all
/// expected ones are there (polled until a deadline).
fn spans_of(topic: &str, done: impl Fn(&[SpanData]) -> bool) -> Vec<SpanData> {
    let deadline = Instant::now() + WAIT;
    loop {
        let spans: Vec<SpanData> = exporter()
            .get_finished_spans()
            .expect("in-memory exporter")
            .into_iter()
            .filter(|s| attr_str(s, "messaging.destination.name").as_deref() == Some(topic))
            .collect();
        if done(&spans) {
            return spans;
        }
        assert!(
            Instant::now() < deadline,
            "spans of {topic} not all finished within {WAIT:?}: {:?}",
            spans.iter().map(|s| s.name.clone()).collect::<Vec<_>>()
        );
        std::thread::sleep(Duration::from_millis(10));
    }
}

fn named<'a>(spans: &'a [SpanData], name: &str) -> Vec<&'a SpanData> {
    spans.iter().filter(|s| s.name == name).collect()
}

async fn recv(sub: &mut Box<dyn Subscriber>) -> Delivery {
    tokio::time::timeout(WAIT, sub.recv())
        .await
        .expect("a delivery within the deadline")
        .expect("subscriber open")
        .expect("a delivery, not an error")
}

/// Publishes one message on `producer_url`'s transport and consumes it on a
/// second transport of `consumer_url`; checks the spans of both and that
/// they form one trace.
async fn one_trace(url: &str, topic: &str, system: &str, group: bool) {
    exporter();
    let producer = switchyard::connect(url).await.expect("producer connects");
    let consumer = switchyard::connect(url).await.expect("consumer connects");
    let t = Topic::new(topic).expect("topic");
    let subscription = if group {
        Subscription::new(t.clone()).group("workers")
    } else {
        Subscription::new(t.clone())
    };
    let mut sub = consumer.subscribe(subscription).await.expect("subscribe");

    let id = producer
        .publish(Message::new(t.clone(), "hello"))
        .await
        .expect("publish");
    let delivery = recv(&mut sub).await;
    let traceparent = delivery
        .headers()
        .get(header::TRACEPARENT)
        .expect("traceparent written on publish")
        .to_owned();
    assert!(!delivery.span().is_disabled(), "the delivery has its span");
    let delivery_id = delivery.id();
    if group {
        delivery.ack().await.expect("ack");
    } else {
        delivery.ack().await.expect("fan-out ack is a no-op");
    }

    let settles = usize::from(group);
    let spans = spans_of(topic, |s| {
        named(s, &format!("send {topic}")).len() == 1
            && named(s, &format!("process {topic}")).len() == 1
            && named(s, &format!("ack {topic}")).len() == settles
    });
    assert_eq!(spans.len(), 2 + settles, "{spans:#?}");
    let send = named(&spans, &format!("send {topic}"))[0];
    let process = named(&spans, &format!("process {topic}"))[0];

    // One trace: the consumer's span is a child of the producer's.
    let trace_id = send.span_context.trace_id();
    assert_eq!(process.span_context.trace_id(), trace_id);
    assert_eq!(process.parent_span_id, send.span_context.span_id());
    assert_eq!(
        traceparent,
        format!("00-{trace_id}-{}-01", send.span_context.span_id())
    );

    assert_eq!(send.span_kind, SpanKind::Producer);
    assert_eq!(attr_str(send, "messaging.system").as_deref(), Some(system));
    assert_eq!(
        attr_str(send, "messaging.operation.type").as_deref(),
        Some("send")
    );
    assert_eq!(
        attr(send, "messaging.message.body.size"),
        Some(&Value::I64(5))
    );
    assert_eq!(attr_str(send, "messaging.message.id"), Some(id.to_string()));

    assert_eq!(process.span_kind, SpanKind::Consumer);
    assert_eq!(
        attr_str(process, "messaging.system").as_deref(),
        Some(system)
    );
    assert_eq!(
        attr_str(process, "messaging.operation.type").as_deref(),
        Some("process")
    );
    assert_eq!(
        attr_str(process, "messaging.message.id"),
        Some(delivery_id.to_string())
    );
    assert_eq!(
        attr(process, "messaging.switchyard.attempt"),
        Some(&Value::I64(1))
    );
    assert_eq!(
        attr_str(process, "messaging.consumer.group.name").as_deref(),
        group.then_some("workers")
    );

    if group {
        let ack = named(&spans, &format!("ack {topic}"))[0];
        assert_eq!(ack.span_context.trace_id(), trace_id);
        assert_eq!(ack.parent_span_id, process.span_context.span_id());
        assert_eq!(
            attr_str(ack, "messaging.operation.type").as_deref(),
            Some("settle")
        );
        assert_eq!(
            attr_str(ack, "messaging.operation.name").as_deref(),
            Some("ack")
        );
    }
    sub.close().await.expect("close subscriber");
    producer.close().await.expect("close producer");
    consumer.close().await.expect("close consumer");
}

#[tokio::test]
async fn one_trace_over_memory() {
    one_trace(
        "memory://tracing-memory",
        "traced.memory",
        "switchyard.memory",
        true,
    )
    .await;
}

#[tokio::test]
async fn one_trace_over_redis_streams() {
    let server = RedisServer::start().expect("redis-server");
    let url = format!("redis+streams://{}?namespace=tr", server.addr());
    one_trace(&url, "traced.streams", "redis", true).await;
}

#[tokio::test]
async fn one_trace_over_redis_pubsub() {
    let server = RedisServer::start().expect("redis-server");
    let url = format!("redis+pubsub://{}?namespace=tr", server.addr());
    one_trace(&url, "traced.pubsub", "redis", false).await;
}

/// A nack runs in a `nack {topic}` span recording the retry, and the
/// redelivery's span has attempt 2; a batch is one `send` span.
#[tokio::test]
async fn nack_and_batch_spans() {
    exporter();
    let server = RedisServer::start().expect("redis-server");
    let url = format!("redis+streams://{}?namespace=tr", server.addr());
    let producer = switchyard::connect(&url).await.expect("producer");
    let consumer = switchyard::connect(&url).await.expect("consumer");
    let topic = "traced.nack";
    let t = Topic::new(topic).expect("topic");
    let mut sub = consumer
        .subscribe(Subscription::new(t.clone()).group("g"))
        .await
        .expect("subscribe");
    let ids = producer
        .publish_batch(vec![
            Message::new(t.clone(), "a"),
            Message::new(t.clone(), "b"),
        ])
        .await
        .expect("batch");
    assert_eq!(ids.len(), 2);

    let first = recv(&mut sub).await;
    let first_id = first.id();
    first.nack(Retry::Now).await.expect("nack");
    let second = recv(&mut sub).await;
    second.ack().await.expect("ack");
    let again = recv(&mut sub).await;
    assert_eq!(again.id(), first_id);
    assert_eq!(again.attempt(), 2);
    again.ack().await.expect("ack");

    let spans = spans_of(topic, |s| {
        named(s, &format!("process {topic}")).len() == 3
            && named(s, &format!("ack {topic}")).len() == 2
    });
    let sends = named(&spans, &format!("send {topic}"));
    assert_eq!(sends.len(), 1, "one span for the batch");
    assert_eq!(
        attr(sends[0], "messaging.batch.message_count"),
        Some(&Value::I64(2))
    );
    let nacks = named(&spans, &format!("nack {topic}"));
    assert_eq!(nacks.len(), 1);
    assert_eq!(
        attr_str(nacks[0], "messaging.switchyard.retry").as_deref(),
        Some("now")
    );
    let processes = named(&spans, &format!("process {topic}"));
    let attempts: Vec<_> = processes
        .iter()
        .map(|p| attr(p, "messaging.switchyard.attempt").cloned())
        .collect();
    assert_eq!(
        attempts
            .iter()
            .filter(|a| **a == Some(Value::I64(2)))
            .count(),
        1
    );
    for p in &processes {
        assert_eq!(p.span_context.trace_id(), sends[0].span_context.trace_id());
        assert_eq!(p.parent_span_id, sends[0].span_context.span_id());
    }
    sub.close().await.expect("close");
    producer.close().await.expect("close");
    consumer.close().await.expect("close");
}

/// Malformed `traceparent` headers (written by a producer that is not
/// traced) are ignored: every message is delivered and its span starts a
/// trace of its own; nothing panics.
async fn malformed(producer: std::sync::Arc<dyn Transport>, consumer_url: &str, topic: &str) {
    let consumer = switchyard::connect(consumer_url).await.expect("consumer");
    let t = Topic::new(topic).expect("topic");
    let mut sub = consumer
        .subscribe(Subscription::new(t.clone()).group("g"))
        .await
        .expect("subscribe");
    let bad = [
        "",
        "garbage",
        "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7",
        "00-00000000000000000000000000000000-00f067aa0ba902b7-01",
        "00-4bf92f3577b34da6a3ce929d0e0e4736-0000000000000000-01",
        "zz-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
        "00-4BF92F3577B34DA6A3CE929D0E0E4736-00F067AA0BA902B7-01x",
        "00-ñbf92f3577b34da6a3ce929d0e0e473-00f067aa0ba902b7-01",
    ];
    for value in bad {
        let mut m = Message::new(t.clone(), "x");
        m.headers.insert(header::TRACEPARENT, value);
        m.headers.insert(header::TRACESTATE, ",,=\u{1}");
        producer.publish(m).await.expect("publish");
    }
    for _ in bad {
        recv(&mut sub).await.ack().await.expect("ack");
    }
    let spans = spans_of(topic, |s| {
        named(s, &format!("process {topic}")).len() == bad.len()
    });
    let processes = named(&spans, &format!("process {topic}"));
    assert_eq!(processes.len(), bad.len());
    for p in processes {
        assert_eq!(p.parent_span_id, SpanId::INVALID, "a root span: {p:?}");
        assert!(p.span_context.is_valid());
    }
    sub.close().await.expect("close");
    consumer.close().await.expect("close");
}

#[tokio::test]
async fn malformed_traceparent_is_ignored_over_memory() {
    exporter();
    let url = "memory://tracing-malformed";
    let producer = switchyard::memory::connect(url)
        .await
        .expect("untraced producer");
    malformed(producer, url, "traced.malformed.memory").await;
}

#[tokio::test]
async fn malformed_traceparent_is_ignored_over_redis_streams() {
    exporter();
    let server = RedisServer::start().expect("redis-server");
    let url = format!("redis+streams://{}?namespace=tr", server.addr());
    let producer = switchyard::redis_streams::connect(&url)
        .await
        .expect("untraced producer");
    malformed(producer, &url, "traced.malformed.streams").await;
}

/// `without_propagation` writes no trace context even with a process-wide
/// propagator; the spans are still made, each side its own trace.
#[tokio::test]
async fn without_propagation_writes_no_context() {
    exporter();
    let url = "memory://tracing-off";
    let producer = Traced::new(switchyard::memory::connect(url).await.expect("producer"))
        .without_propagation();
    let consumer = switchyard::connect(url).await.expect("consumer");
    let topic = "traced.off";
    let t = Topic::new(topic).expect("topic");
    let mut sub = consumer
        .subscribe(Subscription::new(t.clone()))
        .await
        .expect("subscribe");
    producer
        .publish(Message::new(t, "x"))
        .await
        .expect("publish");
    let d = recv(&mut sub).await;
    assert_eq!(d.headers().get(header::TRACEPARENT), None);
    assert_eq!(d.headers().get(header::TRACESTATE), None);
    drop(d);
    let spans = spans_of(topic, |s| s.len() == 2);
    let send = named(&spans, &format!("send {topic}"))[0];
    let process = named(&spans, &format!("process {topic}"))[0];
    assert_ne!(
        send.span_context.trace_id(),
        process.span_context.trace_id()
    );
}

proptest::proptest! {
    #![proptest_config(proptest::prelude::ProptestConfig::with_cases(512))]

    /// Any `traceparent`/`tracestate` text: extraction into an enabled span
    /// never panics, and only a well-formed one becomes the parent.
    #[test]
    fn extract_never_panics(traceparent in ".{0,80}", tracestate in ".{0,80}") {
        use switchyard::trace::Propagator as _;
        use tracing_opentelemetry::OpenTelemetrySpanExt as _;
        use opentelemetry::trace::TraceContextExt as _;
        exporter();
        let mut headers = Headers::new();
        headers.insert(header::TRACEPARENT, traceparent.as_str());
        headers.insert(header::TRACESTATE, tracestate);
        let span = tracing::info_span!("proptest");
        switchyard::otel::OtelPropagator::w3c().extract(&headers, &span);
        let parent_valid = span.context().span().span_context().is_valid();
        proptest::prop_assert!(parent_valid, "the span itself is always valid");
        let well_formed = traceparent.len() == 55 && traceparent.starts_with("00-");
        if !well_formed {
            // A malformed value never links the span to a foreign trace id.
            proptest::prop_assert!(!traceparent.contains(&span.context().span().span_context().trace_id().to_string()));
        }
    }
}

/// `publish_queued` through `Traced` (redis-streams, whose ack resolves
/// later): one `send` span per message, finished once its ack resolved,
/// recording the id the ack resolved to; the consumer's `process` span is
/// its child, as for `publish`. A dropped ack still ends its span.
#[tokio::test]
async fn publish_queued_send_spans_over_redis_streams() {
    exporter();
    let server = RedisServer::start().expect("redis-server");
    let url = format!("redis+streams://127.0.0.1:{}/0", server.port());
    let producer = switchyard::connect(&url).await.expect("producer connects");
    let topic = "trace.queued";
    let t = Topic::new(topic).expect("topic");
    let mut sub = producer
        .subscribe(Subscription::new(t.clone()))
        .await
        .expect("subscribe");

    let mut acks = Vec::new();
    for n in 0..3u8 {
        acks.push(
            producer
                .publish_queued(Message::new(t.clone(), vec![n]))
                .await
                .expect("queued"),
        );
    }
    let dropped = producer
        .publish_queued(Message::new(t.clone(), vec![3u8]))
        .await
        .expect("queued");
    drop(dropped);
    let mut ids = Vec::new();
    for ack in acks {
        ids.push(ack.await.expect("acknowledged"));
    }
    let mut parents = Vec::new();
    for _ in 0..4 {
        let d = recv(&mut sub).await;
        parents.push((
            d.id(),
            d.headers().get(header::TRACEPARENT).map(str::to_owned),
        ));
    }

    let spans = spans_of(topic, |s| {
        named(s, &format!("send {topic}")).len() == 4
            && named(s, &format!("process {topic}")).len() == 4
    });
    let sends = named(&spans, &format!("send {topic}"));
    for id in &ids {
        let send = sends
            .iter()
            .find(|s| attr_str(s, "messaging.message.id") == Some(id.to_string()))
            .unwrap_or_else(|| panic!("a send span records {id}: {sends:#?}"));
        assert_eq!(send.span_kind, SpanKind::Producer);
        let (_, traceparent) = parents.iter().find(|(d, _)| d == id).expect("delivered");
        assert_eq!(
            traceparent.as_deref(),
            Some(
                format!(
                    "00-{}-{}-01",
                    send.span_context.trace_id(),
                    send.span_context.span_id()
                )
                .as_str()
            )
        );
    }
    // The dropped ack's span ended without an id.
    assert_eq!(
        sends
            .iter()
            .filter(|s| attr_str(s, "messaging.message.id").is_none())
            .count(),
        1
    );
    sub.close().await.expect("close subscriber");
    producer.close().await.expect("close producer");
}
