//! One trace across two OS processes: this test binary starts itself again
//! as the publisher (the ignored case `publisher_process`, run with
//! `--ignored --exact`), which publishes one message through
//! `switchyard::connect` with the W3C propagator and prints the trace and
//! span id of its `send` span. The consumer here, a different process,
//! receives the message over Redis (Streams, and the Pub/Sub backplane) and
//! its `process` span must be a child of that `send` span: same trace id,
//! parent span id = the publisher's span id.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::process::{Command, Stdio};

use std::time::{Duration, Instant};

use opentelemetry_sdk::trace::SpanData;
use switchyard::prelude::*;
use switchyard_testkit::RedisServer;

#[path = "support/otel.rs"]
mod otel;
use otel::exporter;

const WAIT: Duration = Duration::from_secs(20);
/// The publisher process reads its URL and topic from these.
const URL_ENV: &str = "SWITCHYARD_TRACE_PUBLISHER_URL";
const TOPIC_ENV: &str = "SWITCHYARD_TRACE_PUBLISHER_TOPIC";

/// The finished span named `name`, polled until a deadline.
fn finished(name: &str) -> SpanData {
    let deadline = Instant::now() + WAIT;
    loop {
        if let Some(span) = exporter()
            .get_finished_spans()
            .expect("in-memory exporter")
            .into_iter()
            .find(|s| s.name == name)
        {
            return span;
        }
        assert!(
            Instant::now() < deadline,
            "no finished span {name:?} within {WAIT:?}"
        );
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// The publisher's side, run only as a child process of
/// `trace_crosses_processes` (it needs the URL and topic it is given).
#[tokio::test]
#[ignore = "the publisher process of the cross-process trace tests, started by them with --ignored"]
async fn publisher_process() {
    let url = std::env::var(URL_ENV).expect("started by a cross-process trace test");
    let topic = Topic::new(std::env::var(TOPIC_ENV).expect("topic given")).expect("valid topic");
    exporter();
    let producer = switchyard::connect(&url).await.expect("publisher connects");
    producer
        .publish(Message::new(topic.clone(), "from another process"))
        .await
        .expect("publish");
    producer.close().await.expect("close");
    let send = finished(&format!("send {topic}"));
    println!(
        "PUBLISHED trace={} span={}",
        send.span_context.trace_id(),
        send.span_context.span_id()
    );
}

/// Starts `publisher_process` in a new process and returns the trace and
/// span id it printed.
fn run_publisher(url: &str, topic: &str) -> (String, String) {
    let exe = std::env::current_exe().expect("this test binary");
    let out = Command::new(exe)
        .args([
            "--ignored",
            "--exact",
            "publisher_process",
            "--nocapture",
            "--test-threads=1",
        ])
        .env(URL_ENV, url)
        .env(TOPIC_ENV, topic)
        .stdin(Stdio::null())
        .output()
        .expect("the publisher process starts");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "publisher process failed: {stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let line = stdout
        .lines()
        // The test harness prints `test publisher_process ... ` first.
        .find_map(|l| l.split_once("PUBLISHED ").map(|(_, rest)| rest))
        .unwrap_or_else(|| panic!("no PUBLISHED line in: {stdout}"));
    let mut trace = None;
    let mut span = None;
    for part in line.split_whitespace() {
        if let Some(t) = part.strip_prefix("trace=") {
            trace = Some(t.to_owned());
        } else if let Some(s) = part.strip_prefix("span=") {
            span = Some(s.to_owned());
        }
    }
    (trace.expect("trace id"), span.expect("span id"))
}

/// Subscribes here, lets another process publish, and checks that the
/// delivery's `process` span continues the publisher's trace.
async fn trace_crosses_processes(url: &str, topic: &str, group: bool) {
    exporter();
    let consumer = switchyard::connect(url).await.expect("consumer connects");
    let t = Topic::new(topic).expect("topic");
    let subscription = if group {
        Subscription::new(t.clone())
            .group("workers")
            .start(Start::Earliest)
    } else {
        Subscription::new(t.clone())
    };
    let mut sub = consumer.subscribe(subscription).await.expect("subscribe");
    let url_owned = url.to_owned();
    let topic_owned = topic.to_owned();
    let (trace, span) =
        tokio::task::spawn_blocking(move || run_publisher(&url_owned, &topic_owned))
            .await
            .expect("publisher runner");
    let delivery = tokio::time::timeout(WAIT, sub.recv())
        .await
        .expect("a delivery within the deadline")
        .expect("subscriber open")
        .expect("a delivery, not an error");
    assert_eq!(delivery.payload().as_ref(), b"from another process");
    assert_eq!(
        delivery.headers().get(header::TRACEPARENT),
        Some(format!("00-{trace}-{span}-01").as_str()),
        "the publisher process wrote its span into traceparent"
    );
    delivery.ack().await.expect("ack");
    let process = finished(&format!("process {topic}"));
    assert_eq!(process.span_context.trace_id().to_string(), trace);
    assert_eq!(process.parent_span_id.to_string(), span);
    sub.close().await.expect("close subscriber");
    consumer.close().await.expect("close consumer");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_trace_crosses_processes_over_redis_streams() {
    let server = RedisServer::start().expect("redis-server");
    let url = format!("redis+streams://{}?namespace=xp", server.addr());
    trace_crosses_processes(&url, "xp.streams", true).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_trace_crosses_processes_over_redis_pubsub() {
    let server = RedisServer::start().expect("redis-server");
    let url = format!("redis+pubsub://{}?namespace=xp", server.addr());
    trace_crosses_processes(&url, "xp.pubsub", false).await;
}
