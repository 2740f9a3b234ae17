//! Gap and drop accounting against frames that are replayed, stale or
//! forged (published straight to the channel, as anyone with access to the
//! Redis can), and against a subscriber's own overflow.
//!
//! Frames are captured from the channel with a plain subscribing
//! connection and edited at the offsets of `docs/wire-format.md` (boot
//! epoch at 12, topic sequence number at 28, both little-endian u64).

mod support;

use std::time::Duration;

use anyhow::{Context as _, bail, ensure};
use switchyard_core::{Delivery, Error, Overflow, Subscriber, Subscription, Topic, Transport};
use switchyard_redis_pubsub::RedisPubSubTransport;
use switchyard_testkit::{RedisServer, RespConnection};

use support::{namespace, publish_range, pubsub_url, replica, wait_until};

const WAIT: Duration = Duration::from_secs(20);
const QUIET: Duration = Duration::from_millis(300);
const EPOCH: std::ops::Range<usize> = 12..20;
const TOPIC_SEQ: std::ops::Range<usize> = 28..36;

/// A plain subscribing connection that captures the frames of one channel.
struct Tap(RespConnection);

impl Tap {
    fn new(server: &RedisServer, channel: &str) -> anyhow::Result<Tap> {
        let mut conn = server.connect()?;
        conn.send(&["SUBSCRIBE", channel])?;
        let confirmed = conn.read_reply()?;
        ensure!(confirmed.as_array().is_some(), "{confirmed:?}");
        Ok(Tap(conn))
    }

    /// The next frame published on the channel.
    fn next(&mut self) -> anyhow::Result<Vec<u8>> {
        let push = tokio::task::block_in_place(|| self.0.read_reply())?;
        let parts = push.as_array().context("not a push frame")?;
        ensure!(parts.len() == 3, "{push:?}");
        Ok(parts[2].as_bytes().context("no payload")?.to_vec())
    }
}

fn publish_raw(server: &RedisServer, channel: &str, frame: &[u8]) -> anyhow::Result<()> {
    let mut conn = server.connect()?;
    let n = conn.command(&[b"PUBLISH".as_slice(), channel.as_bytes(), frame])?;
    ensure!(n.as_int() == Some(2), "PUBLISH reached {n:?} subscribers");
    Ok(())
}

fn field(frame: &[u8], at: std::ops::Range<usize>) -> anyhow::Result<u64> {
    let bytes = frame.get(at).context("frame too short")?;
    Ok(u64::from_le_bytes(bytes.try_into()?))
}

fn with_topic_seq(frame: &[u8], seq: u64) -> Vec<u8> {
    let mut f = frame.to_vec();
    f[TOPIC_SEQ].copy_from_slice(&seq.to_le_bytes());
    f
}

/// The next item of `sub`, within 5 s.
async fn next(sub: &mut Box<dyn Subscriber>) -> anyhow::Result<Result<Delivery, Error>> {
    tokio::time::timeout(Duration::from_secs(5), sub.recv())
        .await
        .context("no item within 5 s")?
        .context("the subscriber ended")
}

/// The next item must be the message `payload` with id `0-seq`.
async fn expect_message(
    sub: &mut Box<dyn Subscriber>,
    payload: &str,
    seq: u64,
) -> anyhow::Result<()> {
    match next(sub).await? {
        Ok(d) => {
            ensure!(
                d.payload() == payload.as_bytes() && d.id().seq == seq,
                "expected {payload} 0-{seq}, got {:?} {}",
                String::from_utf8_lossy(d.payload()),
                d.id()
            );
            Ok(())
        }
        Err(e) => bail!("expected {payload} 0-{seq}, got {e}"),
    }
}

/// Nothing more arrives for a moment.
async fn expect_quiet(sub: &mut Box<dyn Subscriber>) -> anyhow::Result<()> {
    if let Ok(item) = tokio::time::timeout(QUIET, sub.recv()).await {
        bail!("unexpected item {item:?}");
    }
    Ok(())
}

async fn pair(
    server: &RedisServer,
    extra_a: &str,
) -> anyhow::Result<(
    String,
    std::sync::Arc<RedisPubSubTransport>,
    std::sync::Arc<RedisPubSubTransport>,
)> {
    let ns = namespace();
    let a = replica(&pubsub_url(&server.url(), &ns, extra_a)).await?;
    let b = replica(&pubsub_url(&server.url(), &ns, "")).await?;
    Ok((ns, a, b))
}

/// Reproduction: after message 1, one forged frame numbered u64::MAX
/// announced messages 2..=u64::MAX-1 lost to every subscriber, and the
/// `lost` counters took it (and wrapped after a few more).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_forged_huge_gap_is_not_reported_and_counting_goes_on() -> anyhow::Result<()> {
    support::init_tracing();
    let server = RedisServer::start()?;
    let (ns, a, b) = pair(&server, "").await?;
    let topic = Topic::new("forged")?;
    let channel = format!("{ns}:forged");
    let mut tap = Tap::new(&server, &channel)?;
    let mut sub = b.subscribe(Subscription::new(topic.clone())).await?;

    publish_range(&a, &topic, "a", 0..1).await?;
    let frame = tap.next()?;
    expect_message(&mut sub, "a-0", 1).await?;

    publish_raw(&server, &channel, &with_topic_seq(&frame, u64::MAX))?;
    let _ = tap.next()?;
    // Delivered like the first message of a new epoch, without a gap.
    expect_message(&mut sub, "a-0", u64::MAX).await?;
    publish_range(&a, &topic, "a", 1..3).await?;
    expect_message(&mut sub, "a-1", 2).await?;
    expect_message(&mut sub, "a-2", 3).await?;
    expect_quiet(&mut sub).await?;

    let s = b.pubsub_stats();
    ensure!(s.gaps == 0 && s.lost == 0, "{s:?}");
    // Up to u64::MAX, and back down to 2.
    ensure!(s.implausible_gaps == 2, "{s:?}");
    ensure!(s.received == 4, "{s:?}");
    let st = sub.stats();
    ensure!(
        st.lost == 0 && st.received == 4 && st.dropped == 0,
        "{st:?}"
    );

    // A real gap is still reported, exactly.
    publish_raw(&server, &channel, &with_topic_seq(&frame, 10))?;
    let Err(Error::Lost { from, to, .. }) = next(&mut sub).await? else {
        bail!("no gap signal for 4..=9");
    };
    ensure!((from, to) == (4, 9), "gap {from}..={to}");
    expect_message(&mut sub, "a-0", 10).await?;
    let s = b.pubsub_stats();
    ensure!(s.gaps == 1 && s.lost == 6, "{s:?}");
    ensure!(sub.stats().lost == 6, "{:?}", sub.stats());
    Ok(())
}

/// Reproduction: with origin X's epoch-2 frames tracked, one frame of X's
/// older epoch 1 reset gap tracking; then a resent epoch-2 frame counted as
/// the start of a new epoch and was delivered a second time (`0-1`
/// delivered twice).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_older_epoch_is_dropped_and_a_resent_frame_stays_a_duplicate() -> anyhow::Result<()> {
    support::init_tracing();
    let server = RedisServer::start()?;
    let ns = namespace();
    let url = pubsub_url(&server.url(), &ns, "instance_id=00000000000000aa");
    let topic = Topic::new("epochs")?;
    let channel = format!("{ns}:epochs");
    let mut tap = Tap::new(&server, &channel)?;

    // The origin's first run.
    let first = replica(&url).await?;
    publish_range(&first, &topic, "old", 0..1).await?;
    let old = tap.next()?;
    first.close().await?;
    drop(first);

    // Its second run, with the same instance id and a newer epoch.
    let second = replica(&url).await?;
    let b = replica(&pubsub_url(&server.url(), &ns, "")).await?;
    let mut sub = b.subscribe(Subscription::new(topic.clone())).await?;
    publish_range(&second, &topic, "new", 0..1).await?;
    let new = tap.next()?;
    ensure!(
        field(&new, EPOCH)? > field(&old, EPOCH)?,
        "the second run's epoch is not newer"
    );
    expect_message(&mut sub, "new-0", 1).await?;

    publish_raw(&server, &channel, &old)?;
    publish_raw(&server, &channel, &new)?;
    wait_until(WAIT, "both replayed frames handled", || async {
        let s = b.pubsub_stats();
        s.stale + s.duplicates == 2
    })
    .await?;
    publish_range(&second, &topic, "new", 1..2).await?;
    expect_message(&mut sub, "new-1", 2).await?;
    expect_quiet(&mut sub).await?;
    let s = b.pubsub_stats();
    ensure!(s.stale == 1 && s.duplicates == 1, "{s:?}");
    ensure!(s.received == 2 && s.gaps == 0, "{s:?}");
    ensure!(sub.stats().received == 2, "{:?}", sub.stats());
    Ok(())
}

/// Reproduction: under `Overflow::Block` the messages a full subscriber
/// dropped were counted in its `dropped` and, once their gap signal was
/// taken, in its `lost` as well (98,976 each in a 100,000-message run).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_block_subscriber_counts_each_drop_once() -> anyhow::Result<()> {
    support::init_tracing();
    let server = RedisServer::start()?;
    let (ns, a, b) = pair(&server, "").await?;
    let topic = Topic::new("overflow")?;
    let channel = format!("{ns}:overflow");
    let mut tap = Tap::new(&server, &channel)?;
    let mut sub = b
        .subscribe(
            Subscription::new(topic.clone())
                .buffer(10)
                .overflow(Overflow::Block),
        )
        .await?;
    publish_range(&a, &topic, "a", 0..100).await?;
    let mut last = Vec::new();
    for _ in 0..100 {
        last = tap.next()?;
    }
    wait_until(WAIT, "b to handle all 100", || async {
        b.pubsub_stats().received == 100
    })
    .await?;
    for i in 0..10 {
        expect_message(&mut sub, &format!("a-{i}"), i + 1).await?;
    }
    let Err(Error::Lost { from, to, .. }) = next(&mut sub).await? else {
        bail!("no gap signal in place of the dropped messages");
    };
    ensure!((from, to) == (11, 100), "gap {from}..={to}");
    let st = sub.stats();
    ensure!(
        st.received == 10 && st.dropped == 90 && st.lost == 0,
        "{st:?}"
    );

    // Then 5 lost in transit: those count as lost, the drops stay dropped.
    publish_raw(&server, &channel, &with_topic_seq(&last, 106))?;
    let Err(Error::Lost { from, to, .. }) = next(&mut sub).await? else {
        bail!("no gap signal for 101..=105");
    };
    ensure!((from, to) == (101, 105), "gap {from}..={to}");
    expect_message(&mut sub, "a-99", 106).await?;
    expect_quiet(&mut sub).await?;
    let st = sub.stats();
    ensure!(
        st.received == 11 && st.dropped == 90 && st.lost == 5,
        "{st:?}"
    );
    let s = b.pubsub_stats();
    ensure!(
        s.remote_dropped == 90 && s.lost == 5 && s.gaps == 1,
        "{s:?}"
    );
    Ok(())
}
