//! switchyard's adapters through the `Transport` contract, measured the way
//! the peers are: publish from P tasks, consume + ack a pre-filled backlog,
//! fan-out end to end, latency at a fixed offered rate.

use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context as _, Result, bail};
use switchyard::{Message, Start, Subscription, Topic, TopicFilter, Transport};

use crate::harness::{Kind, Latency, Readers, Row, histogram, payload, share, spawn_pacer};

/// How long readers may go without a delivery before a run fails.
const IDLE: Duration = Duration::from_secs(30);

/// A fresh topic.
pub(crate) fn topic(what: &str) -> Result<Topic> {
    Ok(Topic::new(format!(
        "cmp-{}.{what}",
        crate::raw::rand_suffix()
    ))?)
}

/// `n` messages of `size` bytes published from `publishers` tasks, one
/// `publish` each, round robin over `topics`. Returns the seconds taken.
pub(crate) async fn publish(
    t: &Arc<dyn Transport>,
    topics: &[Topic],
    size: usize,
    n: u64,
    publishers: u64,
) -> Result<f64> {
    let body = payload(size);
    let topics: Arc<[Topic]> = topics.into();
    let started = Instant::now();
    let mut joins = Vec::new();
    for i in 0..publishers {
        let (t, body, topics) = (t.clone(), body.clone(), topics.clone());
        let mine = share(n, publishers, i);
        joins.push(tokio::spawn(async move {
            for k in 0..mine {
                let topic = &topics
                    [usize::try_from((k * publishers + i) % topics.len() as u64).unwrap_or(0)];
                t.publish(Message::new(topic.clone(), body.clone())).await?;
            }
            Ok::<_, switchyard::Error>(())
        }));
    }
    for j in joins {
        j.await.context("a publisher panicked")??;
    }
    Ok(started.elapsed().as_secs_f64())
}

/// `n` messages in `publish_batch`es of `batch` from one task.
pub(crate) async fn publish_batches(
    t: &Arc<dyn Transport>,
    topic: &Topic,
    size: usize,
    n: u64,
    batch: u64,
) -> Result<f64> {
    let body = payload(size);
    let started = Instant::now();
    let mut sent = 0;
    while sent < n {
        let k = (n - sent).min(batch);
        let messages = (0..k)
            .map(|_| Message::new(topic.clone(), body.clone()))
            .collect();
        t.publish_batch(messages).await?;
        sent += k;
    }
    Ok(started.elapsed().as_secs_f64())
}

/// Acks a single task keeps waiting at most in [`publish_queued_loop`]:
/// when that many are outstanding it awaits the oldest before queuing more.
pub(crate) const QUEUED_WINDOW: usize = 4096;

/// `n` messages from one task with `publish_queued` in a loop: each call
/// returns once the message is queued; the acks are awaited oldest first,
/// at most [`QUEUED_WINDOW`] outstanding. Returns the seconds until the
/// last ack.
pub(crate) async fn publish_queued_loop(
    t: &Arc<dyn Transport>,
    topic: &Topic,
    size: usize,
    n: u64,
) -> Result<f64> {
    let body = payload(size);
    let started = Instant::now();
    let mut acks = std::collections::VecDeque::with_capacity(QUEUED_WINDOW);
    for _ in 0..n {
        if acks.len() >= QUEUED_WINDOW
            && let Some(ack) = acks.pop_front()
        {
            ack.await?;
        }
        acks.push_back(
            t.publish_queued(Message::new(topic.clone(), body.clone()))
                .await?,
        );
    }
    for ack in acks {
        ack.await?;
    }
    Ok(started.elapsed().as_secs_f64())
}

/// A `publish_queued` row: one task, acks awaited afterwards.
pub(crate) async fn queued_row(
    section: &'static str,
    adapter: &str,
    t: &Arc<dyn Transport>,
    size: usize,
    n: u64,
) -> Result<Row> {
    let topic = topic("queued")?;
    let secs = publish_queued_loop(t, &topic, size, n).await?;
    Ok(Row {
        section,
        name: format!("switchyard {adapter}, 1 task, publish_queued loop"),
        kind: Kind::Ours,
        messages: n,
        size,
        secs,
        runs: Vec::new(),
        latency: None,
        note: format!("every ack resolved (at most {QUEUED_WINDOW} outstanding)"),
    })
}

/// A publish row.
pub(crate) async fn publish_row(
    section: &'static str,
    adapter: &str,
    t: &Arc<dyn Transport>,
    size: usize,
    n: u64,
    publishers: u64,
) -> Result<Row> {
    let topic = topic("publish")?;
    let secs = publish(t, &[topic], size, n, publishers).await?;
    Ok(Row {
        section,
        name: format!("switchyard {adapter}, {publishers} publisher(s)"),
        kind: Kind::Ours,
        messages: n,
        size,
        secs,
        runs: Vec::new(),
        latency: None,
        note: "publish returned (accepted)".into(),
    })
}

/// A `publish_batch` row.
pub(crate) async fn batch_row(
    section: &'static str,
    adapter: &str,
    t: &Arc<dyn Transport>,
    size: usize,
    n: u64,
    batch: u64,
) -> Result<Row> {
    let topic = topic("batch")?;
    let secs = publish_batches(t, &topic, size, n, batch).await?;
    Ok(Row {
        section,
        name: format!("switchyard {adapter}, publish_batch of {batch} (1 task)"),
        kind: Kind::Ours,
        messages: n,
        size,
        secs,
        runs: Vec::new(),
        latency: None,
        note: "publish_batch returned".into(),
    })
}

/// A backlog of `n` messages (published untimed), then a consumer group
/// of `members` on `consumer_side` consuming and acking all of it from the
/// start. Seconds from the first subscribe to the last ack.
pub(crate) async fn group_row(
    section: &'static str,
    adapter: &str,
    publisher: &Arc<dyn Transport>,
    consumer_side: &Arc<dyn Transport>,
    size: usize,
    n: u64,
    members: usize,
) -> Result<Row> {
    let topic = topic("group")?;
    publish_batches(publisher, &topic, size, n, 500).await?;
    let epoch = Instant::now();
    let mut subs = Vec::new();
    for i in 0..members {
        let s = Subscription::new(topic.clone())
            .group_member("g", format!("c{i}"))
            .start(Start::Earliest)
            .buffer(4096);
        subs.push(consumer_side.subscribe(s).await?);
    }
    let readers = Readers::start(subs, epoch);
    readers.wait_for(n, IDLE).await?;
    let secs = readers.last_arrival().as_secs_f64();
    let got = readers.stop().await?;
    if got != n {
        bail!("the group received {got} of {n}");
    }
    Ok(Row {
        section,
        name: format!("switchyard {adapter}, group of {members}, consume + ack"),
        kind: Kind::Ours,
        messages: n,
        size,
        secs,
        runs: Vec::new(),
        latency: None,
        note: "backlog pre-filled; each delivery acked".into(),
    })
}

/// The shape of a fan-out run.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Fanout {
    /// Fan-out subscribers, each subscribed to every topic.
    pub(crate) subscribers: usize,
    /// Publishing tasks.
    pub(crate) publishers: u64,
    /// Topics the messages are spread over, round robin.
    pub(crate) topics: usize,
}

/// `subscribers` fan-out subscribers on `subscriber_side`, then `n`
/// messages published from `publishers` tasks; seconds from the first
/// publish to the last delivery, counting `n * subscribers` deliveries.
pub(crate) async fn fanout_row(
    section: &'static str,
    adapter: &str,
    publisher: &Arc<dyn Transport>,
    subscriber_side: &Arc<dyn Transport>,
    size: usize,
    n: u64,
    shape: Fanout,
) -> Result<Row> {
    let Fanout {
        subscribers,
        publishers,
        topics,
    } = shape;
    let topics: Vec<Topic> = (0..topics.max(1))
        .map(|i| topic(&format!("fanout{i}")))
        .collect::<Result<_>>()?;
    let filter = if topics.len() == 1 {
        TopicFilter::Exact(topics[0].clone())
    } else {
        TopicFilter::list(topics.iter().cloned())?
    };
    let mut subs = Vec::new();
    for _ in 0..subscribers {
        subs.push(
            subscriber_side
                .subscribe(Subscription::new(filter.clone()).buffer(4096))
                .await?,
        );
    }
    let epoch = Instant::now();
    let readers = Readers::start(subs, epoch);
    let publish_secs = publish(publisher, &topics, size, n, publishers).await?;
    let target = n * subscribers as u64;
    let at_most_once = subscriber_side.capabilities().gap_signals;
    // At-most-once (Pub/Sub): a message lost on the way is allowed, so wait
    // until deliveries stop for a second and count what arrived.
    let idle = if at_most_once {
        Duration::from_secs(1)
    } else {
        IDLE
    };
    let waited = readers.wait_for(target, idle).await;
    if !at_most_once {
        waited?;
    }
    let secs = readers.last_arrival().as_secs_f64().max(publish_secs);
    let lost_signalled = readers.lost();
    let got = readers.stop().await?;
    if got > target || (!at_most_once && got != target) {
        bail!("fan-out delivered {got} of {target}");
    }
    let lost = target - got;
    Ok(Row {
        section,
        name: format!(
            "switchyard {adapter}, {subscribers} subscriber(s), {publishers} publisher(s){}",
            if topics.len() > 1 {
                format!(", {} topics", topics.len())
            } else {
                String::new()
            }
        ),
        kind: Kind::Ours,
        messages: got,
        size,
        secs,
        runs: Vec::new(),
        latency: None,
        note: format!(
            "deliveries/s, end to end (publish alone: {:.0} msg/s){}",
            n as f64 / publish_secs,
            if lost > 0 {
                format!(
                    "; {lost} of {target} lost in transit ({:.2} %, {lost_signalled} announced by Lost signals; Pub/Sub is at-most-once)",
                    lost as f64 * 100.0 / target as f64
                )
            } else {
                String::new()
            }
        ),
    })
}

/// `n` messages offered at `rate` msg/s from a pacing thread; each carries
/// its intended send time, and latency is arrival minus that time (no
/// coordinated omission), in an HDR histogram.
pub(crate) async fn latency_row(
    section: &'static str,
    adapter: &str,
    publisher: &Arc<dyn Transport>,
    subscriber_side: &Arc<dyn Transport>,
    size: usize,
    rate: u64,
    n: u64,
) -> Result<Row> {
    let topic = topic("latency")?;
    let mut sub = subscriber_side
        .subscribe(Subscription::new(topic.clone()).buffer(4096))
        .await?;
    let epoch = Instant::now();
    let handle = tokio::runtime::Handle::current();
    let (p, t) = (publisher.clone(), topic.clone());
    let size = size.max(8);
    // The pacing thread queues each message itself (`publish_queued`: no
    // task per message, no wait for Redis' answer); a task awaits the acks
    // in order, so a failed publish fails the run.
    let (acks_tx, mut acks_rx) = tokio::sync::mpsc::channel(usize::try_from(n).unwrap_or(1).max(1));
    let pacer = spawn_pacer(n, rate, size, epoch, move |body| {
        let ack = handle.block_on(p.publish_queued(Message::new(t.clone(), body)))?;
        acks_tx
            .blocking_send(ack)
            .map_err(|_| anyhow::anyhow!("the ack checker stopped"))
    });
    let checker = tokio::spawn(async move {
        while let Some(ack) = acks_rx.recv().await {
            ack.await?;
        }
        anyhow::Ok(())
    });
    let mut h = histogram()?;
    let mut got = 0;
    while got < n {
        let items = sub.recv_batch(1024, IDLE).await;
        if items.is_empty() {
            bail!("latency run stalled at {got} of {n}");
        }
        let now = u64::try_from(epoch.elapsed().as_nanos()).unwrap_or(u64::MAX);
        for item in items {
            let d = item?;
            let due = d
                .payload()
                .get(..8)
                .and_then(|b| b.try_into().ok())
                .map(u64::from_le_bytes)
                .context("a foreign payload")?;
            h.saturating_record(now.saturating_sub(due).max(1));
            got += 1;
        }
    }
    pacer.await.context("the pacing thread panicked")??;
    checker.await.context("the ack checker panicked")??;
    let _ = sub.close().await;
    Ok(Row {
        section,
        name: format!("switchyard {adapter}, latency at {rate} msg/s"),
        kind: Kind::Ours,
        messages: n,
        size,
        secs: n as f64 / rate as f64,
        runs: Vec::new(),
        latency: Some(Latency::from_histogram(&h)),
        note: "from the intended send time to arrival at the subscriber".into(),
    })
}
