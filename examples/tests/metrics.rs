//! `metrics` on memory, Redis Streams and the Pub/Sub backplane: after the
//! known workload, the scrape of the endpoint has exact values.

mod support;

use anyhow::ensure;
use switchyard_examples::metrics_endpoint::{self, ORDERS, REJECTED, Summary};

/// The sample line `name{labels} value` of the scrape, or an error.
fn sample(s: &Summary, name: &str, labels: &str) -> anyhow::Result<String> {
    let prefix = format!("{name}{{{labels}}} ");
    s.scrape
        .lines()
        .find_map(|l| l.strip_prefix(&prefix).map(str::to_owned))
        .ok_or_else(|| anyhow::anyhow!("no {prefix} in\n{}", s.scrape))
}

fn check_group(s: &Summary, adapter: &str) -> anyhow::Result<()> {
    ensure!(s.adapter == adapter, "{s}");
    ensure!(s.addr.ip().is_loopback() && s.addr.port() != 0, "{s}");
    ensure!(
        (s.published, s.received, s.acked, s.dead_lettered) == (100, 100, 90, 10),
        "{s}"
    );
    let topic = format!("adapter=\"{adapter}\",topic=\"{}\"", s.topic);
    let group = format!("{topic},group=\"fulfilment\"");
    for (name, labels, want) in [
        ("switchyard_published_total", &topic, ORDERS),
        ("switchyard_publish_errors_total", &topic, 0),
        ("switchyard_publish_duration_seconds_count", &topic, ORDERS),
        ("switchyard_delivered_total", &group, ORDERS),
        ("switchyard_acked_total", &group, ORDERS - REJECTED),
        ("switchyard_nacked_total", &group, REJECTED),
        ("switchyard_dead_lettered_total", &group, REJECTED),
        ("switchyard_redelivered_total", &group, 0),
        ("switchyard_subscriber_buffered", &group, 0),
        ("switchyard_consumer_lag", &group, 0),
        ("switchyard_consumer_pending", &group, 0),
    ] {
        ensure!(
            sample(s, name, labels)? == want.to_string(),
            "{name}{{{labels}}} is not {want}:\n{}",
            s.scrape
        );
    }
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn memory() -> anyhow::Result<()> {
    let s = metrics_endpoint::run("memory://").await?;
    check_group(&s, "memory")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_streams() -> anyhow::Result<()> {
    let server = support::redis()?;
    let s = metrics_endpoint::run(&support::url(&server, "redis+streams")).await?;
    check_group(&s, "redis-streams")?;
    ensure!(
        sample(&s, "switchyard_breaker_open", "adapter=\"redis-streams\"")? == "0",
        "{s}"
    );
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_pubsub() -> anyhow::Result<()> {
    let server = support::redis()?;
    let s = metrics_endpoint::run(&support::url(&server, "redis+pubsub")).await?;
    ensure!(s.adapter == "redis-pubsub" && s.group.is_empty(), "{s}");
    ensure!((s.received, s.acked) == (100, 0), "{s}");
    let topic = format!("adapter=\"redis-pubsub\",topic=\"{}\"", s.topic);
    ensure!(
        sample(&s, "switchyard_published_total", &topic)? == "100",
        "{s}"
    );
    ensure!(
        sample(
            &s,
            "switchyard_delivered_total",
            &format!("{topic},group=\"\"")
        )? == "100",
        "{s}"
    );
    // The backplane's own counters, by their pubsub.* names.
    ensure!(
        sample(
            &s,
            "switchyard_pubsub_publishes_total",
            "adapter=\"redis-pubsub\""
        )? == "100",
        "{s}"
    );
    ensure!(
        sample(
            &s,
            "switchyard_pubsub_gaps_total",
            "adapter=\"redis-pubsub\""
        )? == "0",
        "{s}"
    );
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn other_paths_are_404() -> anyhow::Result<()> {
    let handle = metrics_endpoint::recorder()?;
    let listener = tokio::net::TcpListener::bind(("127.0.0.1", 0)).await?;
    let addr = listener.local_addr()?;
    let server = tokio::spawn(metrics_endpoint::serve(listener, handle));
    use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
    let mut stream = tokio::net::TcpStream::connect(addr).await?;
    stream.write_all(b"GET / HTTP/1.1\r\n\r\n").await?;
    let mut response = String::new();
    stream.read_to_string(&mut response).await?;
    server.abort();
    ensure!(response.starts_with("HTTP/1.1 404 "), "{response}");
    Ok(())
}
