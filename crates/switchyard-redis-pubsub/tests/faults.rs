//! Faults: Redis restarting under load, the subscribing connection killed
//! by the server, and a half-open (black-holed) connection.

mod support;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context as _, ensure};
use switchyard_core::{Health, Message, Subscription, Topic, Transport};
use switchyard_redis_pubsub::RedisPubSubTransport;
use switchyard_testkit::{FaultProxy, RedisServer};
use tokio::task::JoinHandle;

use support::{
    Seen, namespace, publish_range, pubsub_url, read_quiet, read_until, replica, wait_health,
};

const WAIT: Duration = Duration::from_secs(20);
const QUIET: Duration = Duration::from_millis(300);

/// Publishes `tag-0`, `tag-1`, ... every `every` until `stop`; the counter
/// says how many were published (locally delivered and enqueued).
fn publish_on_schedule(
    t: Arc<RedisPubSubTransport>,
    topic: Topic,
    tag: &'static str,
    every: Duration,
    stop: Arc<AtomicBool>,
    count: Arc<AtomicU64>,
) -> JoinHandle<anyhow::Result<()>> {
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(every);
        // Bounded: at most 20 s worth of messages.
        for i in 0..(20_000 / every.as_millis().max(1) as u64) {
            if stop.load(Ordering::Relaxed) {
                break;
            }
            tick.tick().await;
            t.publish(Message::new(topic.clone(), format!("{tag}-{i}")))
                .await
                .with_context(|| format!("publish {tag}-{i}"))?;
            count.store(i + 1, Ordering::Relaxed);
        }
        Ok(())
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_restart_under_load_resumes_and_reports_gaps() -> anyhow::Result<()> {
    support::init_tracing();
    let mut server = RedisServer::start()?;
    // A short outbox TTL, so that what is published during the outage
    // expires and is lost for the other replica (and reported).
    let url = pubsub_url(&server.url(), &namespace(), "outbox_ttl=300ms");
    let (a, b) = (replica(&url).await?, replica(&url).await?);
    let topic = Topic::new("feed")?;
    let mut sub_a = a.subscribe(Subscription::new(topic.clone())).await?;
    let mut sub_b = b.subscribe(Subscription::new(topic.clone())).await?;
    let stop = Arc::new(AtomicBool::new(false));
    let (count_a, count_b) = (Arc::new(AtomicU64::new(0)), Arc::new(AtomicU64::new(0)));
    let every = Duration::from_millis(5);
    let pa = publish_on_schedule(
        a.clone(),
        topic.clone(),
        "a",
        every,
        stop.clone(),
        count_a.clone(),
    );
    let pb = publish_on_schedule(
        b.clone(),
        topic.clone(),
        "b",
        every,
        stop.clone(),
        count_b.clone(),
    );
    let named = [("a", &*a), ("b", &*b)];
    let (mut seen_a, mut seen_b) = (Seen::new(&named), Seen::new(&named));

    // Both directions work before the outage.
    read_until(
        &mut sub_a,
        &mut seen_a,
        WAIT,
        "a's subscriber to hear b",
        |s| s.count("b") >= 20,
    )
    .await?;
    read_until(
        &mut sub_b,
        &mut seen_b,
        WAIT,
        "b's subscriber to hear a",
        |s| s.count("a") >= 20,
    )
    .await?;

    tokio::task::block_in_place(|| server.stop())?;
    wait_health(&b, WAIT, "b degraded while redis is down", |h| {
        matches!(h, Health::Degraded(_))
    })
    .await?;
    let during = (
        count_a.load(Ordering::Relaxed),
        count_b.load(Ordering::Relaxed),
    );
    // Keep publishing through the outage: local delivery goes on.
    support::wait_until(WAIT, "publishing during the outage", || async {
        count_a.load(Ordering::Relaxed) >= during.0 + 100
            && count_b.load(Ordering::Relaxed) >= during.1 + 100
    })
    .await?;
    read_until(
        &mut sub_a,
        &mut seen_a,
        WAIT,
        "a's own messages during the outage",
        |s| s.count("a") as u64 >= during.0 + 100,
    )
    .await?;
    read_until(
        &mut sub_b,
        &mut seen_b,
        WAIT,
        "b's own messages during the outage",
        |s| s.count("b") as u64 >= during.1 + 100,
    )
    .await?;

    tokio::task::block_in_place(|| server.start_again())?;
    let back = Instant::now();
    let (mark_a, mark_b) = (
        count_a.load(Ordering::Relaxed),
        count_b.load(Ordering::Relaxed),
    );
    // Every subscriber hears the other replica again within 2 s of Redis returning.
    read_until(
        &mut sub_b,
        &mut seen_b,
        Duration::from_secs(2),
        "b's subscriber to resume",
        |s| {
            s.received
                .get("a")
                .and_then(|v| v.last())
                .is_some_and(|&i| i >= mark_a)
        },
    )
    .await?;
    read_until(
        &mut sub_a,
        &mut seen_a,
        Duration::from_secs(2).saturating_sub(back.elapsed()),
        "a's subscriber to resume",
        |s| {
            s.received
                .get("b")
                .and_then(|v| v.last())
                .is_some_and(|&i| i >= mark_b)
        },
    )
    .await?;
    let resumed = back.elapsed();
    ensure!(
        resumed <= Duration::from_secs(2),
        "resumed after {resumed:?}"
    );

    stop.store(true, Ordering::Relaxed);
    pa.await??;
    pb.await??;
    let (na, nb) = (
        count_a.load(Ordering::Relaxed),
        count_b.load(Ordering::Relaxed),
    );
    read_until(
        &mut sub_a,
        &mut seen_a,
        WAIT,
        "a's subscriber to account for everything",
        |s| s.count("a") as u64 == na && s.accounted("b") == nb,
    )
    .await?;
    read_until(
        &mut sub_b,
        &mut seen_b,
        WAIT,
        "b's subscriber to account for everything",
        |s| s.count("b") as u64 == nb && s.accounted("a") == na,
    )
    .await?;
    read_quiet(&mut sub_a, &mut seen_a, QUIET).await;
    read_quiet(&mut sub_b, &mut seen_b, QUIET).await;
    // Local: everything, exactly once. Remote: received + lost == published,
    // nothing twice, and the outage did lose something.
    let (local_a, lost) = seen_a.check_accounting("a", na)?;
    ensure!(local_a == na && lost == 0);
    let (local_b, lost) = seen_b.check_accounting("b", nb)?;
    ensure!(local_b == nb && lost == 0);
    let (_, lost_b_at_a) = seen_a.check_accounting("b", nb)?;
    let (_, lost_a_at_b) = seen_b.check_accounting("a", na)?;
    ensure!(
        lost_b_at_a > 0 && lost_a_at_b > 0,
        "the outage lost nothing? {lost_b_at_a} {lost_a_at_b}"
    );
    ensure!(b.pubsub_stats().reconnects >= 1 && a.pubsub_stats().outbox_expired > 0);
    ensure!(
        b.pubsub_stats().lost == lost_a_at_b,
        "{:?}",
        b.pubsub_stats()
    );
    wait_health(&a, WAIT, "a healthy again", Health::is_ok).await?;
    Ok(())
}

/// The number of clients of the given type (`pubsub`, `normal`).
fn client_count(server: &RedisServer, kind: &str) -> anyhow::Result<usize> {
    let list = server.cmd(&["CLIENT", "LIST", "TYPE", kind])?;
    Ok(list.as_str().map_or(0, |s| s.lines().count()))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn killed_subscribing_connection_resubscribes_and_reports_the_gap() -> anyhow::Result<()> {
    support::init_tracing();
    let server = RedisServer::start()?;
    let url = pubsub_url(&server.url(), &namespace(), "");
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
    // Only b's connection is in subscribed state (a subscribes to nothing).
    ensure!(killed.as_int() == Some(1), "killed {killed:?}");
    wait_health(&b, WAIT, "b degraded", |h| matches!(h, Health::Degraded(_))).await?;
    publish_range(&a, &topic, "a", 20..30).await?;
    // All 30 accepted by Redis (the last 10 while b was not subscribed).
    support::wait_until(WAIT, "a's 10 to reach redis", || async {
        a.pubsub_stats().published == 30
    })
    .await?;
    ensure!(matches!(b.health().await, Health::Degraded(_)));
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
    ensure!(
        sub.stats().lost == 10 && sub.stats().received == 30,
        "{:?}",
        sub.stats()
    );
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn half_open_connection_is_noticed_within_the_probe_bound() -> anyhow::Result<()> {
    support::init_tracing();
    let server = RedisServer::start()?;
    let proxy = FaultProxy::start(server.addr()).await?;
    let ns = namespace();
    // probe_interval 250 ms + probe_timeout 500 ms (support::TEST_PARAMS).
    let bound = Duration::from_millis(750);
    let a = replica(&pubsub_url(&server.url(), &ns, "")).await?;
    let b = replica(&pubsub_url(&server.url_for(proxy.addr()), &ns, "")).await?;
    let topic = Topic::new("ticks")?;
    let mut sub = b.subscribe(Subscription::new(topic.clone())).await?;
    let mut seen = Seen::new(&[("a", &a)]);
    publish_range(&a, &topic, "a", 0..5).await?;
    read_until(&mut sub, &mut seen, WAIT, "the first 5", |s| {
        s.count("a") == 5
    })
    .await?;
    ensure!(b.health().await.is_ok());

    proxy.stall(true);
    let took = wait_health(&b, WAIT, "b degraded during the stall", |h| {
        matches!(h, Health::Degraded(_))
    })
    .await?;
    ensure!(
        took <= bound + Duration::from_millis(500),
        "noticed after {took:?}, bound {bound:?}"
    );
    // Health turns degraded as soon as the connection stops answering; the
    // receiving loop gives the connection up a little later (later still
    // when this process is starved of CPU). Publish only once it has, so
    // that what follows is surely lost for b.
    // (A new connection through the stalled proxy does not count as a
    // reconnect: it never answers its PING.)
    wait_health(
        &b,
        WAIT,
        "b to give up the half-open connection",
        |h| matches!(h, Health::Degraded(r) if r.contains("unreachable")),
    )
    .await?;
    publish_range(&a, &topic, "a", 5..10).await?;
    // `publish` returns once a message is queued for Redis; make sure these
    // reached Redis while b was cut off (a starved sender could otherwise
    // send them after b subscribed again).
    support::wait_until(WAIT, "a to hand messages 5..10 to redis", || async {
        a.pubsub_stats().published >= 10
    })
    .await?;
    proxy.stall(false);
    wait_health(&b, WAIT, "b healthy after the stall", Health::is_ok).await?;
    publish_range(&a, &topic, "a", 10..15).await?;
    read_until(&mut sub, &mut seen, WAIT, "messages after the stall", |s| {
        s.accounted("a") == 15
    })
    .await?;

    let reconnects = b.pubsub_stats().reconnects;
    proxy.cut();
    support::wait_until(WAIT, "b to reconnect after the cut", || async {
        b.pubsub_stats().reconnects > reconnects && b.health().await.is_ok()
    })
    .await?;
    publish_range(&a, &topic, "a", 15..20).await?;
    read_until(&mut sub, &mut seen, WAIT, "messages after the cut", |s| {
        s.accounted("a") == 20
    })
    .await?;
    read_quiet(&mut sub, &mut seen, QUIET).await;
    // What a published while b's connection was black-holed is lost for b,
    // and reported.
    let (received, lost) = seen.check_accounting("a", 20)?;
    ensure!(
        received == 15 && lost == 5,
        "received {received}, lost {lost}"
    );
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn health_recovers_after_an_outage_without_further_traffic() -> anyhow::Result<()> {
    support::init_tracing();
    let mut server = RedisServer::start()?;
    let url = pubsub_url(&server.url(), &namespace(), "outbox_ttl=200ms");
    let a = replica(&url).await?;
    let topic = Topic::new("quiet")?;
    let mut sub = a.subscribe(Subscription::new(topic.clone())).await?;
    tokio::task::block_in_place(|| server.stop())?;
    wait_health(&a, WAIT, "degraded while redis is down", |h| {
        matches!(h, Health::Degraded(_))
    })
    .await?;
    // Published during the outage: delivered locally, expired for Redis.
    publish_range(&a, &topic, "a", 0..3).await?;
    let mut seen = Seen::new(&[("a", &a)]);
    read_until(&mut sub, &mut seen, WAIT, "local delivery", |s| {
        s.count("a") == 3
    })
    .await?;
    support::wait_until(WAIT, "the outbox to expire its messages", || async {
        a.pubsub_stats().outbox_expired == 3
    })
    .await?;
    tokio::task::block_in_place(|| server.start_again())?;
    // Nothing is published any more; health still comes back.
    wait_health(&a, Duration::from_secs(5), "healthy again", Health::is_ok).await?;
    ensure!(a.stats().dropped == 3, "{:?}", a.stats());
    Ok(())
}
