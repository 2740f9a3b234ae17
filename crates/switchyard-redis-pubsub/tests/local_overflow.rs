//! A local subscriber that never reads must not stall its replica's
//! publisher, nor through it the other replicas: local delivery never waits.
//! Under `Block` the stuck subscriber keeps its buffer and gets one gap
//! signal for the rest; `DropOldest` / `DropNewest` are unchanged.

mod support;

use std::time::Duration;

use anyhow::{bail, ensure};
use switchyard_core::{
    Error, Message, Overflow, Subscriber, SubscriberStats, Subscription, Topic, Transport,
};
use switchyard_testkit::RedisServer;
use tokio::task::JoinHandle;

use support::{namespace, pubsub_url, replica, wait_until};

const N: u64 = 3_000;
const STUCK_BUFFER: usize = 16;
/// A hang check, not a timing goal.
const PUBLISH_BOUND: Duration = Duration::from_secs(60);
/// Buffers that hold all `N`, so readers racing the publisher lose nothing.
const ROOMY: usize = 4_096;

/// Reads until `N` messages arrived (or 60 s passed), checking that they are
/// `0..N` in order and that no error item came.
fn read_all(mut sub: Box<dyn Subscriber>, who: &'static str) -> JoinHandle<anyhow::Result<u64>> {
    tokio::spawn(async move {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
        let mut next = 0;
        while next < N {
            let item = tokio::time::timeout_at(deadline, sub.recv()).await;
            let Ok(Some(item)) = item else {
                bail!("{who}: stopped after {next} of {N}: {item:?}");
            };
            let d = item.map_err(|e| anyhow::anyhow!("{who}: error item {e}"))?;
            let i: u64 = String::from_utf8_lossy(d.payload()).parse()?;
            ensure!(i == next, "{who}: expected message {next}, got {i}");
            next += 1;
        }
        let st = sub.stats();
        ensure!(st.dropped == 0 && st.lost == 0, "{who}: {st:?}");
        Ok(next)
    })
}

/// Takes `n` messages, checking their payloads are `first..first + n`.
async fn take(sub: &mut Box<dyn Subscriber>, first: u64, n: u64, who: &str) -> anyhow::Result<()> {
    for i in first..first + n {
        let item = tokio::time::timeout(Duration::from_secs(5), sub.recv()).await;
        let Ok(Some(Ok(d))) = item else {
            bail!("{who}: expected message {i}, got {item:?}");
        };
        let got: u64 = String::from_utf8_lossy(d.payload()).parse()?;
        ensure!(got == i, "{who}: expected message {i}, got {got}");
    }
    Ok(())
}

/// Checks that nothing more is waiting.
async fn nothing_more(sub: &mut Box<dyn Subscriber>, who: &str) -> anyhow::Result<()> {
    let next = tokio::time::timeout(Duration::from_millis(300), sub.recv()).await;
    ensure!(next.is_err(), "{who}: expected nothing more, got {next:?}");
    Ok(())
}

fn counts(st: &SubscriberStats) -> (u64, u64, u64) {
    (st.received, st.dropped, st.lost)
}

/// Publishes `0..N` on `topic` from `t`, bounded by [`PUBLISH_BOUND`].
async fn publish_all(t: &impl Transport, topic: &Topic) -> anyhow::Result<()> {
    let published = tokio::time::timeout(PUBLISH_BOUND, async {
        for i in 0..N {
            t.publish(Message::new(topic.clone(), i.to_string()))
                .await?;
        }
        anyhow::Ok(())
    })
    .await;
    match published {
        Ok(r) => r,
        Err(_) => bail!(
            "publishing {N} did not finish within {PUBLISH_BOUND:?}: a stuck local subscriber stalled the publisher"
        ),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stuck_local_block_subscriber_stalls_neither_the_publisher_nor_other_replicas()
-> anyhow::Result<()> {
    support::init_tracing();
    let server = RedisServer::start()?;
    let ns = namespace();
    // The outbox waits for room rather than drop: the other replica must
    // get every message.
    let a = replica(&pubsub_url(&server.url(), &ns, "outbox_wait=10s")).await?;
    let b = replica(&pubsub_url(&server.url(), &ns, "")).await?;
    let topic = Topic::new("rooms.stuck")?;
    // The default overflow, Block, and a subscriber that never reads.
    let mut stuck = a
        .subscribe(Subscription::new(topic.clone()).buffer(STUCK_BUFFER))
        .await?;
    let local = read_all(
        a.subscribe(Subscription::new(topic.clone()).buffer(ROOMY))
            .await?,
        "local reader",
    );
    let remote = read_all(
        b.subscribe(Subscription::new(topic.clone()).buffer(ROOMY))
            .await?,
        "reader on the other replica",
    );

    publish_all(&*a, &topic).await?;
    ensure!(local.await?? == N);
    ensure!(remote.await?? == N);
    // The sender counts a PUBLISH once Redis' reply is read, which may be
    // after the other replica got the message.
    wait_until(
        Duration::from_secs(10),
        "every PUBLISH confirmed",
        || async { a.pubsub_stats().published == N },
    )
    .await?;
    let s = a.pubsub_stats();
    ensure!(
        s.published == N && s.outbox_full == 0 && s.outbox_expired == 0,
        "{s:?}"
    );
    let s = b.pubsub_stats();
    ensure!(s.received == N && s.gaps == 0, "{s:?}");

    // The stuck one holds its buffer; the rest was dropped and counted.
    let dropped = N - STUCK_BUFFER as u64;
    ensure!(
        counts(&stuck.stats()) == (0, dropped, 0),
        "{:?}",
        stuck.stats()
    );
    take(&mut stuck, 0, STUCK_BUFFER as u64, "stuck").await?;
    // Then one gap signal in place of the rest: the local message ids
    // (0-1 .. 0-N) of what it missed, from this replica on this topic.
    let item = tokio::time::timeout(Duration::from_secs(5), stuck.recv()).await;
    let Ok(Some(Err(Error::Lost { origin, from, to }))) = item else {
        bail!("stuck: expected a gap signal, got {item:?}");
    };
    ensure!(
        origin == format!("{}/rooms.stuck", a.instance_id()),
        "gap origin {origin}"
    );
    ensure!(
        (from, to) == (STUCK_BUFFER as u64 + 1, N),
        "gap {from}..={to}"
    );
    ensure!(to - from + 1 == dropped);
    nothing_more(&mut stuck, "stuck").await?;
    // Each message counted once: received or dropped, not again as lost.
    ensure!(
        counts(&stuck.stats()) == (STUCK_BUFFER as u64, dropped, 0),
        "{:?}",
        stuck.stats()
    );
    // With room again it receives the next message normally.
    a.publish(Message::new(topic.clone(), N.to_string()))
        .await?;
    take(&mut stuck, N, 1, "stuck after draining").await?;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stuck_local_drop_policy_subscribers_are_unchanged() -> anyhow::Result<()> {
    support::init_tracing();
    let server = RedisServer::start()?;
    let ns = namespace();
    let a = replica(&pubsub_url(&server.url(), &ns, "outbox_wait=10s")).await?;
    let b = replica(&pubsub_url(&server.url(), &ns, "")).await?;
    let topic = Topic::new("rooms.drops")?;
    let stuck = |overflow| {
        Subscription::new(topic.clone())
            .buffer(STUCK_BUFFER)
            .overflow(overflow)
    };
    let mut oldest = a.subscribe(stuck(Overflow::DropOldest)).await?;
    let mut newest = a.subscribe(stuck(Overflow::DropNewest)).await?;
    let remote = read_all(
        b.subscribe(Subscription::new(topic.clone()).buffer(ROOMY))
            .await?,
        "reader on the other replica",
    );

    publish_all(&*a, &topic).await?;
    ensure!(remote.await?? == N);
    let dropped = N - STUCK_BUFFER as u64;
    take(&mut oldest, dropped, STUCK_BUFFER as u64, "DropOldest").await?;
    take(&mut newest, 0, STUCK_BUFFER as u64, "DropNewest").await?;
    // No gap signals: a drop policy reports drops in its counters only.
    nothing_more(&mut oldest, "DropOldest").await?;
    nothing_more(&mut newest, "DropNewest").await?;
    for (who, sub) in [("DropOldest", &oldest), ("DropNewest", &newest)] {
        ensure!(
            counts(&sub.stats()) == (STUCK_BUFFER as u64, dropped, 0),
            "{who}: {:?}",
            sub.stats()
        );
    }
    Ok(())
}
