//! Faults over TLS (a TLS-only server requiring a client certificate): the
//! subscribing connection killed by the server, and Redis restarting. The
//! backplane's connections are the same code over TLS as over TCP; these
//! show its reconnects, re-subscriptions and gap accounting hold over TLS.
//!
//! Before the TLS hot paths shared the TCP code, the subscribing connection
//! over TLS was redis-rs' `PubSub` (an unbounded queue of its own) and none
//! of this had ever run over TLS.

mod support;

use std::time::Duration;

use anyhow::ensure;
use switchyard_core::{Health, Subscription, Topic, Transport};
use switchyard_testkit::{RedisOptions, RedisServer, TlsClientAuth, TlsOptions};

use support::{
    Seen, namespace, publish_range, pubsub_url, read_quiet, read_until, replica, wait_health,
};

const WAIT: Duration = Duration::from_secs(20);
const QUIET: Duration = Duration::from_millis(300);

fn tls_server() -> anyhow::Result<RedisServer> {
    Ok(RedisServer::start_with(
        RedisOptions::default().tls(
            TlsOptions::default()
                .client_auth(TlsClientAuth::Required)
                .tls_only(true),
        ),
    )?)
}

/// The `rediss+pubsub://` URL of `server` with its CA and client
/// certificate, in a fresh namespace, plus `extra` parameters.
fn tls_url(server: &RedisServer, extra: &str) -> anyhow::Result<String> {
    let (Some(ca), Some(client)) = (server.tls_ca_cert_path(), server.tls_client_paths()) else {
        anyhow::bail!("the test server was not started with TLS");
    };
    let mut params = format!(
        "tls_ca={}&tls_cert={}&tls_key={}",
        ca.display(),
        client.cert.display(),
        client.key.display()
    );
    if !extra.is_empty() {
        params.push('&');
        params.push_str(extra);
    }
    let url = pubsub_url(&server.url(), &namespace(), &params);
    let rest = url
        .strip_prefix("redis+pubsub://")
        .ok_or_else(|| anyhow::anyhow!("unexpected url {url}"))?;
    Ok(format!("rediss+pubsub://{rest}"))
}

/// The number of clients of the given type (`pubsub`, `normal`).
fn client_count(server: &RedisServer, kind: &str) -> anyhow::Result<usize> {
    let list = server.cmd(&["CLIENT", "LIST", "TYPE", kind])?;
    Ok(list.as_str().map_or(0, |s| s.lines().count()))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn killed_subscribing_connection_resubscribes_over_tls() -> anyhow::Result<()> {
    support::init_tracing();
    let server = tls_server()?;
    let url = tls_url(&server, "")?;
    let (a, b) = (replica(&url).await?, replica(&url).await?);
    let topic = Topic::new("alerts")?;
    let mut sub = b.subscribe(Subscription::new(topic.clone())).await?;
    let mut seen = Seen::new(&[("a", &a)]);
    publish_range(&a, &topic, "a", 0..20).await?;
    read_until(&mut sub, &mut seen, WAIT, "the first 20", |s| {
        s.count("a") == 20
    })
    .await?;

    // Hold reconnects off (new connections are refused while maxclients is
    // low) so that what a publishes meanwhile deterministically misses b.
    let mut admin = server.connect()?;
    admin.command(&["CONFIG", "SET", "maxclients", "1"])?;
    let killed = admin.command(&["CLIENT", "KILL", "TYPE", "pubsub"])?;
    ensure!(killed.as_int() == Some(1), "killed {killed:?}");
    wait_health(&b, WAIT, "b degraded", |h| matches!(h, Health::Degraded(_))).await?;
    publish_range(&a, &topic, "a", 20..30).await?;
    support::wait_until(WAIT, "a's 10 to reach redis", || async {
        a.pubsub_stats().published == 30
    })
    .await?;
    admin.command(&["CONFIG", "SET", "maxclients", "10000"])?;

    wait_health(&b, WAIT, "b healthy again", Health::is_ok).await?;
    ensure!(client_count(&server, "pubsub")? == 1, "b subscribed again");
    publish_range(&a, &topic, "a", 30..40).await?;
    read_until(&mut sub, &mut seen, WAIT, "the last 10", |s| {
        s.count("a") == 30
    })
    .await?;
    read_quiet(&mut sub, &mut seen, QUIET).await;
    ensure!(
        seen.lost.get("a") == Some(&vec![(20, 29)]),
        "gap: {:?}",
        seen.lost
    );
    let (received, lost) = seen.check_accounting("a", 40)?;
    ensure!(received == 30 && lost == 10);
    let s = b.pubsub_stats();
    ensure!(s.reconnects >= 1 && s.gaps == 1 && s.lost == 10, "{s:?}");
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_restart_over_tls_resumes() -> anyhow::Result<()> {
    support::init_tracing();
    let mut server = tls_server()?;
    let url = tls_url(&server, "outbox_ttl=200ms")?;
    let (a, b) = (replica(&url).await?, replica(&url).await?);
    let topic = Topic::new("feed")?;
    let mut sub = b.subscribe(Subscription::new(topic.clone())).await?;
    let mut seen = Seen::new(&[("a", &a)]);
    publish_range(&a, &topic, "a", 0..10).await?;
    read_until(&mut sub, &mut seen, WAIT, "the first 10", |s| {
        s.count("a") == 10
    })
    .await?;
    tokio::task::block_in_place(|| server.stop())?;
    wait_health(&a, WAIT, "a degraded while redis is down", |h| {
        matches!(h, Health::Degraded(_))
    })
    .await?;
    tokio::task::block_in_place(|| server.start_again())?;
    wait_health(&a, WAIT, "a healthy again", Health::is_ok).await?;
    wait_health(&b, WAIT, "b healthy again", Health::is_ok).await?;
    publish_range(&a, &topic, "a", 10..20).await?;
    read_until(&mut sub, &mut seen, WAIT, "the next 10", |s| {
        s.count("a") == 20
    })
    .await?;
    read_quiet(&mut sub, &mut seen, QUIET).await;
    let (received, lost) = seen.check_accounting("a", 20)?;
    ensure!(received == 20 && lost == 0, "{received} {lost}");
    Ok(())
}
