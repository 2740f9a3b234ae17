//! Strict start-up, subscribe and health against peers that are not a
//! working Redis.
//!
//! Reproduction of the defects these tests guard against: against a
//! listener that accepts and never answers, a server answering
//! `HTTP/1.1 400`, a peer that accepts then closes, or a SIGSTOPped
//! redis-server, `connect("redis+pubsub://…")` returned `Ok` in under 1 ms;
//! `subscribe` then returned `Ok` after about 6 s without any confirmation,
//! and `health()` said `Ok`. Against a server with `requirepass` and no
//! password in the URL, connect succeeded too and every publish was
//! silently refused (`NOAUTH`).

mod support;

use std::net::SocketAddr;
use std::process::Command;
use std::time::{Duration, Instant};

use anyhow::{Context as _, bail, ensure};
use switchyard_core::{Error, Health, Subscription, Topic, Transport};
use switchyard_redis_pubsub::{PubSubConfig, RedisPubSubTransport};
use switchyard_testkit::{RedisOptions, RedisServer};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;
use tokio::task::JoinHandle;

use support::{Seen, namespace, publish_range, pubsub_url, read_until, replica};

/// `connect_timeout` of these tests.
const CONNECT: Duration = Duration::from_millis(800);
/// Scheduling slack on a loaded machine.
const SLACK: Duration = Duration::from_millis(1500);
const WAIT: Duration = Duration::from_secs(20);

#[derive(Clone, Copy, Debug)]
enum Peer {
    /// Accepts and never answers.
    Silent,
    /// Answers like a web server.
    Http,
    /// Accepts and closes at once.
    Close,
}

/// A fake server on a free loopback port; serves at most 16 connections.
async fn fake(peer: Peer) -> anyhow::Result<(SocketAddr, JoinHandle<()>)> {
    let listener = TcpListener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?;
    let task = tokio::spawn(async move {
        let mut held = Vec::new();
        for _ in 0..16 {
            let Ok((mut s, _)) = listener.accept().await else {
                return;
            };
            match peer {
                Peer::Silent => held.push(s),
                Peer::Close => drop(s),
                Peer::Http => {
                    let mut b = [0u8; 512];
                    let _ = s.read(&mut b).await;
                    let _ = s
                        .write_all(b"HTTP/1.1 400 Bad Request\r\nConnection: close\r\n\r\n")
                        .await;
                    let _ = s.shutdown().await;
                }
            }
        }
    });
    Ok((addr, task))
}

fn url(addr: SocketAddr, userinfo: &str) -> String {
    pubsub_url(
        &format!("redis://{userinfo}{addr}"),
        &namespace(),
        &format!("connect_timeout={}ms", CONNECT.as_millis()),
    )
}

/// Connects through the URL entry point; returns the error and how long it
/// took, failing the test if it connected or took longer than the connect
/// timeout plus slack.
async fn start_fails(url: &str, addr: SocketAddr) -> anyhow::Result<Error> {
    let started = Instant::now();
    let Err(e) = switchyard_redis_pubsub::connect(url).await else {
        bail!("connected to {addr}");
    };
    let took = started.elapsed();
    ensure!(took < CONNECT + SLACK, "failed only after {took:?}: {e}");
    let text = e.to_string();
    ensure!(
        text.contains(&addr.to_string()),
        "the error does not name the address: {text}"
    );
    Ok(e)
}

fn timed_out(e: &Error) -> bool {
    matches!(e, Error::Connect { reason, .. } if reason.contains("timed out waiting for"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_silent_listener_fails_start_up_with_a_timeout() -> anyhow::Result<()> {
    support::init_tracing();
    let (addr, task) = fake(Peer::Silent).await?;
    let e = start_fails(&url(addr, ""), addr).await?;
    ensure!(timed_out(&e) && e.is_transient(), "{e}");
    task.abort();
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_http_server_fails_start_up_as_not_redis() -> anyhow::Result<()> {
    support::init_tracing();
    let (addr, task) = fake(Peer::Http).await?;
    let e = start_fails(&url(addr, ""), addr).await?;
    ensure!(
        matches!(&e, Error::Backend(t) if t.contains("does not answer like a Redis server")),
        "{e}"
    );
    ensure!(!e.is_transient(), "{e}");
    task.abort();
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_peer_that_closes_fails_start_up() -> anyhow::Result<()> {
    support::init_tracing();
    let (addr, task) = fake(Peer::Close).await?;
    let e = start_fails(&url(addr, ""), addr).await?;
    ensure!(
        matches!(&e, Error::Connect { reason, .. } if reason.contains("closed the connection")),
        "{e}"
    );
    task.abort();
    Ok(())
}

/// SIGSTOPs a redis-server; SIGCONTs it when dropped (or by `thaw`).
struct Frozen(Option<u32>);

impl Frozen {
    fn new(server: &RedisServer) -> anyhow::Result<Frozen> {
        let pid = server.pid().context("redis-server is not running")?;
        let status = Command::new("kill")
            .args(["-STOP", &pid.to_string()])
            .status()?;
        ensure!(status.success(), "kill -STOP {pid}: {status}");
        Ok(Frozen(Some(pid)))
    }

    fn thaw(&mut self) -> anyhow::Result<()> {
        if let Some(pid) = self.0.take() {
            let status = Command::new("kill")
                .args(["-CONT", &pid.to_string()])
                .status()?;
            ensure!(status.success(), "kill -CONT {pid}: {status}");
        }
        Ok(())
    }
}

impl Drop for Frozen {
    fn drop(&mut self) {
        let _ = self.thaw();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_frozen_redis_fails_start_up_with_a_timeout() -> anyhow::Result<()> {
    support::init_tracing();
    let server = RedisServer::start()?;
    let url = url(server.addr(), "");
    let mut frozen = Frozen::new(&server)?;
    let e = start_fails(&url, server.addr()).await?;
    ensure!(timed_out(&e), "{e}");
    frozen.thaw()?;
    // Thawed, the same URL starts.
    switchyard_redis_pubsub::connect(&url).await?;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_missing_password_fails_start_up_with_noauth() -> anyhow::Result<()> {
    support::init_tracing();
    let server = RedisServer::start_with(RedisOptions::default().password("s3cret"))?;
    let e = start_fails(&url(server.addr(), ""), server.addr()).await?;
    let text = e.to_string();
    ensure!(matches!(e, Error::Backend(_)), "{text}");
    ensure!(!e.is_transient(), "{text}");
    ensure!(text.contains("NOAUTH"), "{text}");
    ensure!(text.contains("put the password in the URL"), "{text}");
    // The right password starts.
    switchyard_redis_pubsub::connect(&url(server.addr(), ":s3cret@")).await?;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_user_without_ping_fails_start_up_with_noperm() -> anyhow::Result<()> {
    support::init_tracing();
    let server = RedisServer::start()?;
    server.cmd(&[
        "ACL", "SETUSER", "noping", "on", ">pw", "~*", "&*", "+@all", "-ping",
    ])?;
    let e = start_fails(&url(server.addr(), "noping:pw@"), server.addr()).await?;
    let text = e.to_string();
    ensure!(matches!(e, Error::Backend(_)), "{text}");
    ensure!(!e.is_transient(), "{text}");
    ensure!(text.contains("NOPERM") && text.contains("grant"), "{text}");
    Ok(())
}

/// Number of channels subscribed on the server.
fn channels(server: &RedisServer) -> anyhow::Result<usize> {
    let list = server.cmd(&["PUBSUB", "CHANNELS"])?;
    Ok(list.as_array().map_or(0, <[_]>::len))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn subscribe_and_health_on_a_frozen_redis_fail_within_their_bounds() -> anyhow::Result<()> {
    support::init_tracing();
    let server = RedisServer::start()?;
    // support::TEST_PARAMS: probe_timeout 500ms, response_timeout 2s;
    // connect_timeout 800ms here.
    let probe_timeout = Duration::from_millis(500);
    let subscribe_bound = CONNECT + Duration::from_secs(2);
    let url = url(server.addr(), "");
    let t = replica(&url).await?;
    ensure!(t.health().await.is_ok(), "{:?}", t.health().await);

    let mut frozen = Frozen::new(&server)?;
    let started = Instant::now();
    let health = t.health().await;
    let took = started.elapsed();
    // Degraded by the probe health sends, or (if the receiving loop's own
    // probe went unanswered first) because the connection was given up.
    ensure!(matches!(&health, Health::Degraded(_)), "{health:?}");
    ensure!(took < probe_timeout + SLACK, "health took {took:?}");

    let started = Instant::now();
    let topic = Topic::new("frozen.topic")?;
    let Err(e) = t.subscribe(Subscription::new(topic.clone())).await else {
        bail!("subscribe returned Ok without a confirmation");
    };
    let took = started.elapsed();
    ensure!(
        matches!(e, Error::Timeout { .. }) && e.is_transient(),
        "{e}"
    );
    ensure!(
        e.to_string().contains(&server.addr().to_string()),
        "the error does not name the address: {e}"
    );
    ensure!(
        took >= subscribe_bound && took < subscribe_bound + SLACK,
        "subscribe failed after {took:?}, bound {subscribe_bound:?}"
    );

    frozen.thaw()?;
    support::wait_health(&t, WAIT, "healthy after the thaw", Health::is_ok).await?;
    // The failed subscription left nothing behind on Redis (the connection
    // that may have sent its SUBSCRIBE before the freeze is gone).
    support::wait_until(WAIT, "no channel subscribed", || async {
        channels(&server).is_ok_and(|n| n == 0)
    })
    .await?;
    // And subscribing works again.
    let other = replica(&url).await?;
    let mut sub = t.subscribe(Subscription::new(topic.clone())).await?;
    ensure!(channels(&server)? == 1);
    publish_range(&other, &topic, "o", 0..3).await?;
    let mut seen = Seen::new(&[("o", &*other)]);
    read_until(&mut sub, &mut seen, WAIT, "3 messages", |s| {
        s.count("o") == 3
    })
    .await?;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refused_channel_fails_its_subscribe_only() -> anyhow::Result<()> {
    support::init_tracing();
    let server = RedisServer::start()?;
    let ns = namespace();
    // The user may only use channels of `{ns}:allowed.*`.
    let allowed = format!("&{ns}:allowed.*");
    server.cmd(&[
        "ACL",
        "SETUSER",
        "narrow",
        "on",
        ">pw",
        "~*",
        "resetchannels",
        &allowed,
        "+@all",
    ])?;
    let url = pubsub_url(&format!("redis://narrow:pw@{}", server.addr()), &ns, "");
    let t = replica(&url).await?;
    let started = Instant::now();
    let (good, bad) = tokio::join!(
        t.subscribe(Subscription::to("allowed.one")?),
        t.subscribe(Subscription::to("secret.one")?)
    );
    let Err(e) = bad else {
        bail!("a refused subscription returned Ok");
    };
    ensure!(started.elapsed() < SLACK * 2, "{:?}", started.elapsed());
    let text = e.to_string();
    ensure!(
        matches!(e, Error::Backend(_)) && !e.is_transient(),
        "{text}"
    );
    ensure!(
        text.contains("NOPERM") && text.contains("secret.one"),
        "{text}"
    );
    let mut good = good.context("the allowed subscription")?;
    support::wait_health(&t, WAIT, "healthy", Health::is_ok).await?;
    let publisher = replica(&pubsub_url(&server.url(), &ns, "")).await?;
    let topic = Topic::new("allowed.one")?;
    publish_range(&publisher, &topic, "p", 0..5).await?;
    let mut seen = Seen::new(&[("p", &*publisher)]);
    read_until(&mut good, &mut seen, WAIT, "5 messages", |s| {
        s.count("p") == 5
    })
    .await?;
    Ok(())
}

/// A `subscribe` waiting for a confirmation that cannot come ends with
/// `Error::Closed` as soon as the transport is closed, not at its bound.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn close_ends_a_waiting_subscribe() -> anyhow::Result<()> {
    support::init_tracing();
    let server = RedisServer::start()?;
    let t = replica(&url(server.addr(), "")).await?;
    let _frozen = Frozen::new(&server)?;
    let waiting = {
        let t = t.clone();
        tokio::spawn(async move { t.subscribe(Subscription::to("never.confirmed")?).await })
    };
    // Health needs a probe_timeout (500 ms) to see the freeze; by then the
    // subscribe has long registered and waits for its confirmation.
    support::wait_until(WAIT, "health to see the freeze", || async {
        matches!(t.health().await, Health::Degraded(_))
    })
    .await?;
    let started = Instant::now();
    t.close().await?;
    let result = tokio::time::timeout(WAIT, waiting).await??;
    let took = started.elapsed();
    ensure!(
        matches!(result, Err(Error::Closed)),
        "subscribe ended with {:?}",
        result.map(|_| "a subscriber")
    );
    // Well before its bound, connect_timeout + response_timeout (2.8 s).
    let bound = CONNECT + Duration::from_secs(2);
    ensure!(took < bound / 2, "ended {took:?} after close");
    Ok(())
}

/// `connect_retry`: a backplane started before its Redis connects once
/// Redis is up (off by default: strict start-up).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connect_retry_waits_for_redis_to_come_up() -> anyhow::Result<()> {
    let mut server = tokio::task::block_in_place(RedisServer::start)?;
    tokio::task::block_in_place(|| server.stop())?;
    let addr = server.addr();
    // Without it: fails at once.
    let e = RedisPubSubTransport::connect(PubSubConfig::from_url(&format!(
        "redis+pubsub://{addr}?connect_timeout=500ms"
    ))?)
    .await
    .err()
    .ok_or_else(|| anyhow::anyhow!("connected to a stopped server"))?;
    anyhow::ensure!(e.is_transient(), "{e}");
    let cfg = PubSubConfig::from_url(&format!(
        "redis+pubsub://{addr}?connect_timeout=500ms&connect_retry=30s&connect_retry_max_delay=100ms"
    ))?;
    let connecting = tokio::spawn(RedisPubSubTransport::connect(cfg));
    tokio::time::sleep(Duration::from_millis(400)).await;
    anyhow::ensure!(
        !connecting.is_finished(),
        "connect gave up while Redis was down"
    );
    tokio::task::block_in_place(|| server.start_again())?;
    let bus = tokio::time::timeout(Duration::from_secs(20), connecting).await???;
    anyhow::ensure!(bus.health().await == Health::Ok, "health after start-up");
    bus.close().await?;
    Ok(())
}
