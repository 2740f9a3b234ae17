//! The backplane through TLS sentinels that require a password: a primary,
//! a replica and three sentinels, all TLS-only on one CA with client
//! certificates (testkit `SentinelOptions::tls`), nodes and sentinels
//! sharing one password (`sentinel_auth=same`). Two transports on a
//! `rediss+pubsub+sentinel://` URL: a message crosses; after a
//! `SENTINEL FAILOVER` one crosses again.
//!
//! The backplane delivers at most once and a subscription takes effect
//! asynchronously, so each crossing publishes a fresh message every 50 ms
//! until the subscriber has one (within a deadline).

mod support;

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use anyhow::Context as _;
use switchyard_core::{Health, Message, Subscriber, Subscription, Topic, Transport};
use switchyard_redis_pubsub::RedisPubSubTransport;
use switchyard_testkit::{SentinelGroup, SentinelOptions};

use support::{TEST_PARAMS, namespace, replica};

const WAIT: Duration = Duration::from_secs(60);
const PASSWORD: &str = "shared-pw-31337";

fn url(group: &SentinelGroup, ns: &str) -> anyhow::Result<String> {
    let files = group.tls_files().context("a TLS group")?;
    let sentinels: Vec<String> = group
        .sentinel_addrs()
        .iter()
        .map(ToString::to_string)
        .collect();
    Ok(format!(
        "rediss+pubsub+sentinel://:{PASSWORD}@{}/{}?namespace={ns}&{}&sentinel_auth=same&sentinel_poll=50ms&tls_ca={}&tls_cert={}&tls_key={}",
        sentinels.join(","),
        group.master_name(),
        // Generous: on a loaded machine a TLS handshake with a starved
        // process takes a while.
        TEST_PARAMS.replace("connect_timeout=1s", "connect_timeout=5s"),
        files.ca_cert.display(),
        files.client.cert.display(),
        files.client.key.display()
    ))
}

/// Publishes a new numbered message (from `*next` on) every 50 ms until
/// the subscriber receives one of them; returns its number. Messages
/// published before (a crossing earlier may leave some in flight) are
/// skipped.
async fn cross(
    publisher: &RedisPubSubTransport,
    sub: &mut Box<dyn Subscriber>,
    topic: &Topic,
    next: &mut u64,
) -> anyhow::Result<u64> {
    let from = *next;
    let deadline = Instant::now() + WAIT;
    loop {
        anyhow::ensure!(
            Instant::now() < deadline,
            "no message from {from} on crossed"
        );
        let sent = *next;
        *next += 1;
        // A publish may fail while the primary moves; the next one counts.
        let _ = publisher
            .publish(Message::new(topic.clone(), sent.to_le_bytes().to_vec()))
            .await;
        let window = Instant::now() + Duration::from_millis(50);
        while let Ok(Some(d)) =
            tokio::time::timeout(window.saturating_duration_since(Instant::now()), sub.recv()).await
        {
            let d = d?;
            let p: [u8; 8] = d.message().payload[..]
                .try_into()
                .context("an 8-byte payload")?;
            let got = u64::from_le_bytes(p);
            anyhow::ensure!(got <= sent, "received {got}, never published");
            if got >= from {
                return Ok(got);
            }
        }
    }
}

async fn wait_healthy(t: &RedisPubSubTransport, what: &str) -> anyhow::Result<()> {
    support::wait_health(t, WAIT, what, |h| *h == Health::Ok)
        .await
        .map(drop)
}

fn is_replica(group: &SentinelGroup, addr: SocketAddr) -> bool {
    let Some(node) = group.nodes().iter().find(|n| n.addr() == addr) else {
        return false;
    };
    node.cmd(&["ROLE"]).ok().is_some_and(|reply| {
        reply
            .as_array()
            .and_then(|a| a.first()?.as_str().map(|r| r == "slave"))
            .unwrap_or(false)
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_backplane_crosses_tls_sentinels_before_and_after_a_failover() -> anyhow::Result<()> {
    support::init_tracing();
    let group = tokio::task::block_in_place(|| {
        SentinelGroup::start(
            SentinelOptions::default()
                .master_name("sy-pubsub-tls")
                .password(PASSWORD)
                .sentinel_password(PASSWORD)
                .tls(true),
        )
    })?;
    let url = url(&group, &namespace())?;
    let publisher = replica(&url).await?;
    let subscriber = replica(&url).await?;
    wait_healthy(&publisher, "the publisher healthy").await?;
    let topic = Topic::new("ticks")?;
    let mut sub = subscriber
        .subscribe(Subscription::new(topic.clone()))
        .await?;
    let mut next = 0;
    let first = cross(&publisher, &mut sub, &topic, &mut next).await?;

    let old = group.current_primary_addr()?;
    let new = tokio::task::block_in_place(|| {
        group
            .failover_and_wait(WAIT)
            .with_context(|| group.log_tails())
    })?;
    anyhow::ensure!(old != new);
    // The old primary serves until the sentinels demote it; then both
    // transports are on the new one.
    support::wait_until(WAIT, "the old primary demoted", || async {
        tokio::task::block_in_place(|| is_replica(&group, old))
    })
    .await?;
    wait_healthy(&publisher, "the publisher healthy after the failover").await?;
    wait_healthy(&subscriber, "the subscriber healthy after the failover").await?;
    let second = cross(&publisher, &mut sub, &topic, &mut next).await?;
    anyhow::ensure!(second > first, "{second} after {first}");
    sub.close().await?;
    publisher.close().await?;
    subscriber.close().await?;
    Ok(())
}
