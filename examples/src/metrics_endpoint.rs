//! Metrics of a small order pipeline, exposed to Prometheus.
//!
//! Installs a Prometheus recorder (`metrics-exporter-prometheus`),
//! instruments the transport with [`switchyard::metrics::instrument`], runs
//! a known workload (100 orders published; one consumer group acks 90 and
//! dead-letters 10; on the Pub/Sub backplane, which has no groups, a
//! fan-out subscriber receives the 100), collects consumer lag and the
//! transport's counters, then serves the rendered text at
//! `http://127.0.0.1:PORT/metrics` (loopback, a free port) and scrapes it
//! once over HTTP.
//!
//! The endpoint is a few lines of tokio instead of the exporter's own HTTP
//! listener, which would bring in hyper: it reads one request (at most
//! [`MAX_REQUEST`] bytes within [`REQUEST_TIMEOUT`]), answers `GET
//! /metrics` with the text and anything else with 404, and serves at most
//! [`MAX_CONNECTIONS`] connections at once.

use std::fmt;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use anyhow::{Context as _, anyhow, bail};
use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};
use switchyard::metrics::{MetricsConfig, collect_lag, instrument, names, record_stats};
use switchyard::{Error, Message, Retry, Start, Subscription, Topic, TopicFilter, Transport};
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Semaphore;

use crate::PHASE_TIMEOUT;

/// Messages the workload publishes.
pub const ORDERS: u64 = 100;
/// Of those, the group dead-letters the last this many.
pub const REJECTED: u64 = 10;
/// Longest request head the endpoint reads.
pub const MAX_REQUEST: usize = 8 * 1024;
/// How long the endpoint waits for a request head.
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(5);
/// Connections the endpoint serves at once; more wait.
pub const MAX_CONNECTIONS: usize = 64;

/// What a run did and what the scrape returned.
#[derive(Debug)]
pub struct Summary {
    /// The adapter's name.
    pub adapter: &'static str,
    /// The topic of the workload (`metrics-<run id>.orders`).
    pub topic: String,
    /// The consumer group, empty on the backplane (fan-out).
    pub group: String,
    /// Where the endpoint listened (`127.0.0.1:PORT`).
    pub addr: std::net::SocketAddr,
    /// Messages published.
    pub published: u64,
    /// Deliveries received.
    pub received: u64,
    /// Deliveries acked.
    pub acked: u64,
    /// Deliveries dead-lettered.
    pub dead_lettered: u64,
    /// The body of `GET /metrics`.
    pub scrape: String,
}

impl fmt::Display for Summary {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(
            f,
            "{} adapter, topic {}: {} published, {} received, {} acked, {} dead-lettered",
            self.adapter, self.topic, self.published, self.received, self.acked, self.dead_lettered
        )?;
        writeln!(f, "GET http://{}/metrics (switchyard_* lines):", self.addr)?;
        for line in self
            .scrape
            .lines()
            .filter(|l| l.starts_with("switchyard_") && l.contains(&self.topic))
        {
            writeln!(f, "{line}")?;
        }
        Ok(())
    }
}

/// The process's Prometheus recorder, installed on first use (a process has
/// one global recorder; later runs in the same process share it).
pub fn recorder() -> anyhow::Result<PrometheusHandle> {
    static HANDLE: Mutex<Option<PrometheusHandle>> = Mutex::new(None);
    let mut handle = HANDLE.lock().unwrap_or_else(PoisonError::into_inner);
    if let Some(h) = handle.as_ref() {
        return Ok(h.clone());
    }
    let h = PrometheusBuilder::new()
        .set_buckets_for_metric(
            Matcher::Full(names::PUBLISH_DURATION.to_owned()),
            &[0.0005, 0.001, 0.005, 0.01, 0.05, 0.1, 0.5, 1.0],
        )
        .context("could not set the publish latency buckets")?
        .install_recorder()
        .context("could not install the Prometheus recorder (another metrics recorder is installed in this process)")?;
    *handle = Some(h.clone());
    Ok(h)
}

/// Runs the workload on `url`, serves the metrics and scrapes them once.
pub async fn run(url: &str) -> anyhow::Result<Summary> {
    let handle = recorder()?;
    let raw = switchyard::connect(url).await?;
    let transport = instrument(raw);
    let result = workload(&transport).await;
    let closed = transport.close().await;
    let mut summary = result?;
    closed.context("could not close the transport")?;

    let listener = TcpListener::bind(("127.0.0.1", 0))
        .await
        .context("could not listen on 127.0.0.1")?;
    summary.addr = listener.local_addr()?;
    let server = tokio::spawn(serve(listener, handle));
    let scraped = tokio::time::timeout(PHASE_TIMEOUT, scrape(summary.addr)).await;
    server.abort();
    summary.scrape = scraped
        .map_err(|_| anyhow!("the metrics endpoint did not answer within {PHASE_TIMEOUT:?}"))??;
    Ok(summary)
}

async fn workload(transport: &Arc<dyn Transport>) -> anyhow::Result<Summary> {
    let topic = Topic::new(format!("metrics-{}.orders", crate::run_id()))?;
    let groups = transport.capabilities().consumer_groups;
    let group = if groups { "fulfilment" } else { "" };
    let mut subscription = Subscription::new(topic.clone()).start(Start::Latest);
    if groups {
        subscription = subscription.group_member(group, "worker-1");
    }
    let mut sub = transport.subscribe(subscription).await?;
    for i in 0..ORDERS {
        transport
            .publish(Message::new(topic.clone(), format!("{{\"order\":{i}}}")))
            .await?;
    }
    let (mut received, mut acked, mut dead_lettered) = (0, 0, 0);
    while received < ORDERS {
        let delivery = tokio::time::timeout(PHASE_TIMEOUT, sub.recv())
            .await
            .map_err(|_| anyhow!("{received} of {ORDERS} orders arrived within {PHASE_TIMEOUT:?}"))?
            .ok_or_else(|| anyhow!("the subscriber closed after {received} orders"))??;
        received += 1;
        if !groups {
            continue;
        }
        if received <= ORDERS - REJECTED {
            delivery.ack().await?;
            acked += 1;
        } else {
            delivery
                .nack(Retry::DeadLetter("rejected by the example".into()))
                .await?;
            dead_lettered += 1;
        }
    }
    sub.close().await?;
    // Lag and pending per group (where the adapter keeps topics), and the
    // transport's own counters.
    match collect_lag(
        transport.as_ref(),
        &TopicFilter::Exact(topic.clone()),
        &MetricsConfig::new(),
    )
    .await
    {
        Ok(_) | Err(Error::Unsupported { .. }) => {}
        Err(e) => return Err(e.into()),
    }
    record_stats(transport.as_ref());
    Ok(Summary {
        adapter: transport.name(),
        topic: topic.as_str().to_owned(),
        group: group.to_owned(),
        addr: ([127, 0, 0, 1], 0).into(),
        published: ORDERS,
        received,
        acked,
        dead_lettered,
        scrape: String::new(),
    })
}

/// Serves `GET /metrics` until aborted.
pub async fn serve(listener: TcpListener, handle: PrometheusHandle) {
    let permits = Arc::new(Semaphore::new(MAX_CONNECTIONS));
    loop {
        let Ok(permit) = permits.clone().acquire_owned().await else {
            return;
        };
        let (stream, _) = match listener.accept().await {
            Ok(conn) => conn,
            // Out of file descriptors or the like: wait a little instead
            // of spinning.
            Err(_) => {
                tokio::time::sleep(Duration::from_millis(10)).await;
                continue;
            }
        };
        let handle = handle.clone();
        tokio::spawn(async move {
            let _permit = permit;
            let _ = tokio::time::timeout(REQUEST_TIMEOUT, answer(stream, &handle)).await;
        });
    }
}

/// Reads one request head and answers it.
async fn answer(mut stream: TcpStream, handle: &PrometheusHandle) -> std::io::Result<()> {
    let mut head = Vec::with_capacity(1024);
    let mut buf = [0u8; 1024];
    while !head.windows(4).any(|w| w == b"\r\n\r\n") {
        let n = stream.read(&mut buf).await?;
        if n == 0 || head.len() + n > MAX_REQUEST {
            return Ok(());
        }
        head.extend_from_slice(&buf[..n]);
    }
    let line = head.split(|b| *b == b'\r').next().unwrap_or_default();
    let (status, body) = if line.starts_with(b"GET /metrics ") {
        ("200 OK", handle.render())
    } else {
        ("404 Not Found", "try GET /metrics\n".to_owned())
    };
    let response = format!(
        "HTTP/1.1 {status}\r\nContent-Type: text/plain; version=0.0.4\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    stream.write_all(response.as_bytes()).await?;
    stream.shutdown().await
}

/// `GET /metrics` from `addr`: the response body.
pub async fn scrape(addr: std::net::SocketAddr) -> anyhow::Result<String> {
    let mut stream = TcpStream::connect(addr)
        .await
        .with_context(|| format!("could not connect to the metrics endpoint {addr}"))?;
    stream
        .write_all(b"GET /metrics HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n")
        .await?;
    let mut response = String::new();
    stream.read_to_string(&mut response).await?;
    let Some((head, body)) = response.split_once("\r\n\r\n") else {
        bail!("the metrics endpoint answered without a header end");
    };
    if !head.starts_with("HTTP/1.1 200 ") {
        bail!(
            "the metrics endpoint answered {}",
            head.lines().next().unwrap_or("")
        );
    }
    Ok(body.to_owned())
}
