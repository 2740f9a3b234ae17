//! A subscriber that stops reading while 100,000 messages flow from
//! another replica: its memory stays bounded by its buffer, the other
//! subscribers keep up, and its drops are counted exactly (and, under
//! `Block`, reported as a gap signal).

mod support;

use std::time::Duration;

use anyhow::ensure;
use switchyard_core::{Error, Message, Overflow, Subscriber, Subscription, Topic, Transport};
use switchyard_testkit::RedisServer;
use tokio::task::JoinHandle;

use support::{namespace, pubsub_url, replica};

const N: u64 = 100_000;
const SLOW_BUFFER: usize = 1_000;

/// Counts deliveries until `n` arrived (or 120 s passed); returns how many.
fn count_all(mut sub: Box<dyn Subscriber>, n: u64) -> JoinHandle<anyhow::Result<u64>> {
    tokio::spawn(async move {
        let mut got = 0;
        let mut next = 0u64;
        let deadline = tokio::time::Instant::now() + Duration::from_secs(120);
        while got < n {
            let item = tokio::time::timeout_at(deadline, sub.recv()).await;
            let Ok(Some(item)) = item else {
                anyhow::bail!("stopped after {got} of {n}: {item:?}");
            };
            let d = item?;
            let i: u64 = String::from_utf8_lossy(d.payload()).parse()?;
            ensure!(i == next, "expected message {next}, got {i}");
            next += 1;
            got += 1;
        }
        ensure!(sub.stats().dropped == 0, "{:?}", sub.stats());
        Ok(got)
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stalled_subscriber_is_bounded_and_stalls_nobody() -> anyhow::Result<()> {
    support::init_tracing();
    let server = RedisServer::start()?;
    let ns = namespace();
    // The publisher may wait for room in its outbox rather than drop.
    let a = replica(&pubsub_url(&server.url(), &ns, "outbox_wait=10s")).await?;
    let b = replica(&pubsub_url(&server.url(), &ns, "")).await?;
    let topic = Topic::new("feed.firehose")?;
    // Default overflow (Block): for remote input it drops the new message.
    let mut slow = b
        .subscribe(Subscription::new(topic.clone()).buffer(SLOW_BUFFER))
        .await?;
    let mut slow_oldest = b
        .subscribe(
            Subscription::new(topic.clone())
                .buffer(SLOW_BUFFER)
                .overflow(Overflow::DropOldest),
        )
        .await?;
    let fast = b
        .subscribe(Subscription::new(topic.clone()).buffer(Subscription::MAX_BUFFER))
        .await?;
    let fast_pattern = b
        .subscribe(Subscription::to("feed.*")?.buffer(Subscription::MAX_BUFFER))
        .await?;
    let readers = [count_all(fast, N), count_all(fast_pattern, N)];

    for chunk in 0..(N / 1000) {
        let batch = (chunk * 1000..(chunk + 1) * 1000)
            .map(|i| Message::new(topic.clone(), i.to_string()))
            .collect();
        a.publish_batch(batch).await?;
    }
    for r in readers {
        ensure!(r.await?? == N);
    }
    let s = a.pubsub_stats();
    ensure!(
        s.published == N && s.outbox_full == 0 && s.outbox_expired == 0,
        "{s:?}"
    );
    let s = b.pubsub_stats();
    ensure!(s.received == N && s.gaps == 0, "{s:?}");

    // The slow ones held at most their buffer; everything else was dropped
    // and counted, exactly.
    let dropped = N - SLOW_BUFFER as u64;
    ensure!(slow.stats().dropped == dropped, "{:?}", slow.stats());
    ensure!(
        slow_oldest.stats().dropped == dropped,
        "{:?}",
        slow_oldest.stats()
    );
    ensure!(s.remote_dropped == 2 * dropped, "{s:?}");
    for (name, sub, first) in [
        ("Block", &mut slow, 0),
        ("DropOldest", &mut slow_oldest, dropped),
    ] {
        for k in 0..SLOW_BUFFER as u64 {
            let d = tokio::time::timeout(Duration::from_secs(5), sub.recv())
                .await?
                .ok_or_else(|| anyhow::anyhow!("{name}: ended"))??;
            let i: u64 = String::from_utf8_lossy(d.payload()).parse()?;
            ensure!(i == first + k, "{name}: expected {}, got {i}", first + k);
        }
        if name == "Block" {
            // Block promised not to lose anything: what it had to drop is
            // reported in its place, as one gap signal.
            let item = tokio::time::timeout(Duration::from_secs(5), sub.recv())
                .await?
                .ok_or_else(|| anyhow::anyhow!("{name}: ended"))?;
            let Err(Error::Lost { origin, from, to }) = item else {
                anyhow::bail!("{name}: expected a gap signal, got {item:?}");
            };
            ensure!(
                (from, to) == (SLOW_BUFFER as u64 + 1, N),
                "{name}: gap {from}..={to}"
            );
            ensure!(
                origin.ends_with("/feed.firehose"),
                "{name}: gap origin {origin}"
            );
        }
        ensure!(
            tokio::time::timeout(Duration::from_millis(300), sub.recv())
                .await
                .is_err(),
            "{name}: more than its buffer was held"
        );
        let st = sub.stats();
        ensure!(st.received + st.dropped == N, "{name}: {st:?}");
    }
    Ok(())
}
