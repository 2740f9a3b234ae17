//! `switchyard::metrics` end to end: a known workload on `memory://`, on
//! `redis+streams://` and on `redis+pubsub://` (testkit redis-server, free
//! loopback ports), and the exact values a Prometheus recorder then renders.
//!
//! One Prometheus recorder is installed for the whole test binary; every
//! test uses its own topic names, so the tests can share it.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::{Arc, OnceLock};
use std::time::Duration;

use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};
use switchyard::metrics::{MetricsConfig, collect_lag, instrument, instrument_with, names};
use switchyard::{Message, Retry, Start, Subscription, Topic, TopicFilter, Transport};
use switchyard_testkit::RedisServer;

fn recorder() -> &'static PrometheusHandle {
    static HANDLE: OnceLock<PrometheusHandle> = OnceLock::new();
    HANDLE.get_or_init(|| {
        let recorder = PrometheusBuilder::new()
            .set_buckets_for_metric(
                Matcher::Full(names::PUBLISH_DURATION.to_owned()),
                &[0.001, 0.01, 0.1, 1.0, 10.0],
            )
            .unwrap()
            .build_recorder();
        let handle = recorder.handle();
        metrics::set_global_recorder(recorder).unwrap();
        handle
    })
}

/// The value of the sample `name{labels}` in the rendered text.
fn sample(text: &str, name: &str, labels: &[(&str, &str)]) -> Option<f64> {
    let labels: Vec<String> = labels.iter().map(|(k, v)| format!("{k}=\"{v}\"")).collect();
    let prefix = format!("{name}{{{}}} ", labels.join(","));
    text.lines()
        .find_map(|l| l.strip_prefix(&prefix))
        .map(|v| v.parse().unwrap())
}

fn value(name: &str, labels: &[(&str, &str)]) -> f64 {
    let text = recorder().render();
    sample(&text, name, labels).unwrap_or_else(|| panic!("no {name} {labels:?} in:\n{text}"))
}

/// 100 published; one group member receives the 100, acks 90, sends 10 to
/// the dead letters. Lag and pending checked before and after.
async fn workload(raw: Arc<dyn Transport>, topic: &str) {
    let _ = recorder();
    let adapter = raw.name();
    let transport = instrument(raw);
    let topic = Topic::new(topic).unwrap();
    let filter = TopicFilter::Exact(topic.clone());
    let config = MetricsConfig::new();
    // Create the group, then publish with no member reading.
    let sub = transport
        .subscribe(
            Subscription::new(topic.clone())
                .group_member("g", "c1")
                .start(Start::Earliest),
        )
        .await
        .unwrap();
    sub.close().await.unwrap();
    for i in 0..100 {
        transport
            .publish(Message::new(topic.clone(), format!("m{i}")))
            .await
            .unwrap();
    }
    assert_eq!(
        collect_lag(transport.as_ref(), &filter, &config)
            .await
            .unwrap(),
        1
    );
    let labels = [
        ("adapter", adapter),
        ("topic", topic.as_str()),
        ("group", "g"),
    ];
    assert_eq!(value(names::CONSUMER_LAG, &labels), 100.0);
    assert_eq!(value(names::CONSUMER_PENDING, &labels), 0.0);

    let mut sub = transport
        .subscribe(
            Subscription::new(topic.clone())
                .group_member("g", "c1")
                .start(Start::Earliest),
        )
        .await
        .unwrap();
    for i in 0..100 {
        let d = tokio::time::timeout(Duration::from_secs(30), sub.recv())
            .await
            .expect("a delivery within 30 s")
            .expect("subscriber open")
            .unwrap();
        assert_eq!(d.attempt(), 1);
        if i < 90 {
            d.ack().await.unwrap();
        } else {
            d.nack(Retry::DeadLetter("rejected by the test".into()))
                .await
                .unwrap();
        }
    }
    let stats = sub.stats();
    assert_eq!((stats.received, stats.acked, stats.nacked), (100, 90, 10));
    sub.close().await.unwrap();
    assert_eq!(
        collect_lag(transport.as_ref(), &filter, &config)
            .await
            .unwrap(),
        1
    );

    let pub_labels = [("adapter", adapter), ("topic", topic.as_str())];
    assert_eq!(value(names::PUBLISHED, &pub_labels), 100.0);
    assert_eq!(
        value(&format!("{}_count", names::PUBLISH_DURATION), &pub_labels),
        100.0
    );
    for (name, want) in [
        (names::DELIVERED, 100.0),
        (names::ACKED, 90.0),
        (names::NACKED, 10.0),
        (names::DEAD_LETTERED, 10.0),
        (names::REDELIVERED, 0.0),
        (names::DROPPED, 0.0),
        (names::MALFORMED, 0.0),
        (names::LOST, 0.0),
        (names::SUBSCRIBER_BUFFERED, 0.0),
        (names::SUBSCRIBER_CAPACITY, 0.0),
        (names::CONSUMER_LAG, 0.0),
        (names::CONSUMER_PENDING, 0.0),
    ] {
        assert_eq!(value(name, &labels), want, "{name}");
    }
    transport.close().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn memory_workload_exact_values() {
    let raw = switchyard::connect("memory://metrics-memory")
        .await
        .unwrap();
    workload(raw, "metrics.memory").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_streams_workload_exact_values() {
    let server = RedisServer::start().expect("redis-server must be installed");
    let raw = switchyard::connect(&format!("redis+streams://{}", server.addr()))
        .await
        .unwrap();
    workload(raw.clone(), "metrics.streams").await;
    // The transport's own counters, from its stats.
    switchyard::metrics::record_stats(raw.as_ref());
    let adapter = [("adapter", "redis-streams")];
    assert_eq!(value(names::RECONNECTS, &adapter), 0.0);
    assert_eq!(value(names::BREAKER_OPEN, &adapter), 0.0);
    assert_eq!(value(names::BREAKER_REJECTIONS, &adapter), 0.0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_pubsub_counters_become_metrics() {
    let _ = recorder();
    let server = RedisServer::start().expect("redis-server must be installed");
    let raw = switchyard::connect(&format!("redis+pubsub://{}", server.addr()))
        .await
        .unwrap();
    let transport = instrument(raw);
    let topic = Topic::new("metrics.pubsub").unwrap();
    let mut sub = transport
        .subscribe(Subscription::new(topic.clone()))
        .await
        .unwrap();
    for i in 0..20 {
        transport
            .publish(Message::new(topic.clone(), format!("m{i}")))
            .await
            .unwrap();
    }
    for _ in 0..20 {
        tokio::time::timeout(Duration::from_secs(30), sub.recv())
            .await
            .expect("a delivery within 30 s")
            .expect("subscriber open")
            .unwrap();
    }
    // Every message comes back from Redis once, as a self-echo (it was
    // delivered locally already): poll until all 20 are counted.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    while transport.stats().extra["pubsub.self_echoes"] < 20 {
        assert!(tokio::time::Instant::now() < deadline, "echoes missing");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    // stats() of the instrumented transport records every counter.
    let stats = transport.stats();
    assert_eq!(stats.published, 20);
    let adapter = [("adapter", "redis-pubsub")];
    assert_eq!(value("switchyard_pubsub_publishes_total", &adapter), 20.0);
    assert_eq!(value("switchyard_pubsub_self_echoes_total", &adapter), 20.0);
    assert_eq!(value("switchyard_pubsub_gaps_total", &adapter), 0.0);
    assert_eq!(value("switchyard_pubsub_malformed_total", &adapter), 0.0);
    assert_eq!(value("switchyard_pubsub_outbox_len", &adapter), 0.0);
    assert_eq!(value(names::PUBLISH_DROPPED, &adapter), 0.0);
    let labels = [
        ("adapter", "redis-pubsub"),
        ("topic", "metrics.pubsub"),
        ("group", ""),
    ];
    sub.close().await.unwrap();
    assert_eq!(value(names::DELIVERED, &labels), 20.0);
    // The backplane keeps no topics: lag cannot be collected.
    let e = collect_lag(
        transport.as_ref(),
        &TopicFilter::Exact(topic),
        &MetricsConfig::new(),
    )
    .await
    .unwrap_err();
    assert!(matches!(e, switchyard::Error::Unsupported { .. }), "{e}");
    transport.close().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn topic_labels_past_the_limit_are_other() {
    let _ = recorder();
    let raw = switchyard::connect("memory://metrics-guard").await.unwrap();
    let transport = instrument_with(raw, MetricsConfig::new().with_max_topics(2)).unwrap();
    for (topic, n) in [
        ("guard.a", 1),
        ("guard.b", 2),
        ("guard.c", 3),
        ("guard.d", 4),
    ] {
        for _ in 0..n {
            transport
                .publish(Message::new(Topic::new(topic).unwrap(), "x"))
                .await
                .unwrap();
        }
    }
    let text = recorder().render();
    let published = |topic: &str| {
        sample(
            &text,
            names::PUBLISHED,
            &[("adapter", "memory"), ("topic", topic)],
        )
    };
    assert_eq!(published("guard.a"), Some(1.0));
    assert_eq!(published("guard.b"), Some(2.0));
    assert_eq!(published("guard.c"), None);
    assert_eq!(published("guard.d"), None);
    // Shared with other tests of this binary: only this one goes past its
    // limit on memory, so "other" holds exactly c's and d's.
    assert_eq!(published("other"), Some(7.0));
    assert!(
        instrument_with(
            switchyard::connect("memory://").await.unwrap(),
            MetricsConfig::new().with_max_topics(0)
        )
        .is_err()
    );
}

/// The exporter's text, line for line, after a known workload.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn prometheus_text_exact_lines() {
    let _ = recorder();
    let raw = switchyard::connect("memory://metrics-render")
        .await
        .unwrap();
    let transport = instrument(raw);
    let topic = Topic::new("render.orders").unwrap();
    let mut sub = transport
        .subscribe(Subscription::new(topic.clone()).group("billing"))
        .await
        .unwrap();
    transport
        .publish_batch(
            (0..5)
                .map(|i| Message::new(topic.clone(), format!("{i}")))
                .collect(),
        )
        .await
        .unwrap();
    for _ in 0..5 {
        let d = tokio::time::timeout(Duration::from_secs(10), sub.recv())
            .await
            .unwrap()
            .unwrap()
            .unwrap();
        d.ack().await.unwrap();
    }
    sub.close().await.unwrap();
    let text = recorder().render();
    for line in [
        "# TYPE switchyard_published_total counter",
        "switchyard_published_total{adapter=\"memory\",topic=\"render.orders\"} 5",
        "switchyard_delivered_total{adapter=\"memory\",topic=\"render.orders\",group=\"billing\"} 5",
        "switchyard_acked_total{adapter=\"memory\",topic=\"render.orders\",group=\"billing\"} 5",
        "switchyard_nacked_total{adapter=\"memory\",topic=\"render.orders\",group=\"billing\"} 0",
        "# TYPE switchyard_publish_duration_seconds histogram",
        "switchyard_publish_duration_seconds_bucket{adapter=\"memory\",topic=\"render.orders\",le=\"+Inf\"} 1",
        "switchyard_publish_duration_seconds_count{adapter=\"memory\",topic=\"render.orders\"} 1",
    ] {
        assert!(
            text.lines().any(|l| l == line),
            "no line {line:?} in:\n{text}"
        );
    }
}
