//! Faults over TLS (a TLS-only server with AOF, requiring a client
//! certificate): Redis restarts under a publisher and a group member. The
//! writer's connection is the same hand-written code over TLS as over TCP
//! (before, TLS publishing went through redis-rs pipelines instead, and no
//! test had run it); after the restart it reconnects with TLS, publishing
//! and consuming resume, and nothing acked comes back.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::{Duration, Instant};

use switchyard_core::{Delivery, Message, Subscriber, Subscription, Topic, Transport};
use switchyard_redis_streams::{RedisStreamsTransport, StreamsConfig};
use switchyard_testkit::{Persistence, RedisOptions, RedisServer, TlsClientAuth, TlsOptions};

const WAIT: Duration = Duration::from_secs(20);
/// Messages per phase.
const N: usize = 1000;

fn tls_server() -> RedisServer {
    RedisServer::start_with(
        RedisOptions::default().persistence(Persistence::Aof).tls(
            TlsOptions::default()
                .client_auth(TlsClientAuth::Required)
                .tls_only(true),
        ),
    )
    .expect("redis-server must be installed (scripts/test installs it)")
}

fn tls_url(server: &RedisServer) -> String {
    let ca = server.tls_ca_cert_path().unwrap();
    let client = server.tls_client_paths().unwrap();
    format!(
        "rediss+streams://127.0.0.1:{}?namespace=tlsfault&block=200ms&connect_timeout=1s&breaker_cool_down=100ms&tls_ca={}&tls_cert={}&tls_key={}",
        server.tls_port().unwrap(),
        ca.display(),
        client.cert.display(),
        client.key.display()
    )
}

async fn publish_range(t: &Arc<dyn Transport>, topic: &Topic, range: std::ops::Range<usize>) {
    let batch: Vec<Message> = range
        .map(|i| Message::new(topic.clone(), format!("m-{i:06}")))
        .collect();
    t.publish_batch(batch).await.expect("publish");
}

fn index(d: &Delivery) -> usize {
    std::str::from_utf8(d.payload())
        .ok()
        .and_then(|s| s.strip_prefix("m-"))
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("unexpected payload in {d:?}"))
}

/// Receives and acks until `want` distinct indexes arrived; returns them
/// and the number of deliveries.
async fn consume(sub: &mut Box<dyn Subscriber>, want: usize) -> (BTreeSet<usize>, usize) {
    let deadline = Instant::now() + WAIT;
    let mut seen = BTreeSet::new();
    let mut deliveries = 0;
    while seen.len() < want {
        let left = deadline.saturating_duration_since(Instant::now());
        let d = match tokio::time::timeout(left, sub.recv()).await {
            Ok(Some(Ok(d))) => d,
            other => panic!(
                "after {} of {want}: expected a delivery, got {other:?}",
                seen.len()
            ),
        };
        deliveries += 1;
        seen.insert(index(&d));
        d.ack().await.expect("ack");
    }
    (seen, deliveries)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn restart_over_tls_resumes_publishing_and_consuming() {
    let mut server = tls_server();
    let url = tls_url(&server);
    let t: Arc<dyn Transport> = Arc::new(
        RedisStreamsTransport::connect(StreamsConfig::from_url(&url).unwrap())
            .await
            .unwrap(),
    );
    let topic = Topic::new("orders").unwrap();
    let mut sub = t
        .subscribe(
            Subscription::new(topic.clone())
                .group_member("workers", "w1")
                .ack_timeout(Duration::from_secs(30)),
        )
        .await
        .unwrap();
    publish_range(&t, &topic, 0..N).await;
    let (first, deliveries) = consume(&mut sub, N).await;
    assert_eq!(first, (0..N).collect::<BTreeSet<_>>());
    assert_eq!(deliveries, N);

    tokio::task::block_in_place(|| server.restart()).unwrap();

    // The writer finds its TLS connection gone and opens a new one: poll
    // with a probe topic until a publish goes through (bounded).
    let probe = Topic::new("probe").unwrap();
    let deadline = Instant::now() + WAIT;
    loop {
        match t.publish(Message::new(probe.clone(), "probe")).await {
            Ok(_) => break,
            Err(e) => {
                assert!(e.is_transient(), "{e}");
                assert!(Instant::now() < deadline, "publishing did not resume: {e}");
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
    }
    publish_range(&t, &topic, N..2 * N).await;
    let (second, deliveries) = consume(&mut sub, N).await;
    // Exactly the new ones, each once: nothing acked before the restart
    // came back.
    assert_eq!(second, (N..2 * N).collect::<BTreeSet<_>>());
    assert_eq!(deliveries, N);
    let key = "tlsfault:{orders}";
    assert_eq!(
        server.cmd(&["XLEN", key]).unwrap().as_int(),
        Some(2 * N as i64)
    );
    sub.close().await.unwrap();
    t.close().await.unwrap();
}
