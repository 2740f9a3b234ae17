//! Events library: the Redis Streams transport of an events library, on
//! switchyard. Streams under a prefix, consumer groups with named
//! consumers, ack/nack, dead letters carrying the error and the original
//! event type, `MAXLEN ~` trimming, the circuit breaker's stats, and
//! backpressure with drop counters.
//!
//! - **Stream prefix.** Every stream lives under the URL's `namespace=`
//!   (the library's stream prefix): `<namespace>:{billing.invoices}`. A URL
//!   without one gets `namespace=events-<run id>` (see [`shared_url`]).
//! - **Consumer groups.** The publisher puts [`INVOICES`] events on
//!   `billing.invoices` and [`PARCELS`] on `shipping.parcels`, each with the
//!   application header [`EVENT_TYPE`] (`InvoiceIssued`, `ParcelShipped`).
//!   Group `ledger` (consumers `ledger-1`, `ledger-2`) handles the invoices,
//!   group `dispatch` (consumer `dispatch-1`) the parcels. Handlers `ack`;
//!   a flaky invoice ([`is_flaky`]) is nacked once with `Retry::Now` and
//!   acked on its second delivery; invalid events ([`is_invalid`]) are
//!   nacked with `Retry::DeadLetter(error)`.
//! - **Dead letters.** They land on `<topic>:dlq` with the error
//!   (`sy-dlq-reason`) and the original `event-type` header. One pattern
//!   subscription, `>:dlq`, follows every dead-letter topic of the
//!   namespace, both topics' included.
//! - **Trimming.** A transport opened with `maxlen=` [`TRIM_MAXLEN`] (on
//!   memory: a hub of its own with `retention=`) writes [`TRIM_EVENTS`]
//!   samples on `metrics.samples`; every `XADD` carries `MAXLEN ~ N`, so
//!   the stream keeps about N entries (Redis trims whole nodes: N to about
//!   N + 100; memory keeps exactly N).
//! - **Backpressure.** Two slow fan-out subscribers on `audit.trail` with a
//!   buffer of [`SLOW_BUFFER`] read nothing while [`AUDIT_EVENTS`] arrive:
//!   `Overflow::DropOldest` keeps the newest, `Overflow::DropNewest` the
//!   first; both count the rest in `SubscriberStats::dropped`.
//! - **Circuit breaker.** The publisher's breaker (redis-streams guards its
//!   publishes with one) is shown from `stats().breaker`: state,
//!   consecutive failures, total and rejected requests, last change. The
//!   memory adapter has none (n/a).
//!
//! Needs consumer groups and dead letters: the Pub/Sub backplane is refused
//! with a clear error.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::{Context, bail};
use serde::{Deserialize, Serialize};
use switchyard::SubscriberStats;
use switchyard::prelude::*;
use tokio::sync::watch;
use tokio::task::JoinHandle;

mod report;

pub use report::{DeadLetter, GroupReport, SlowReport, Summary};

use crate::{
    PHASE_TIMEOUT, connect_as, is_redis, lock, memory_hub_name, param, scheme, shared_url,
    wait_until, with_param,
};

/// The application header carrying the original event type.
pub const EVENT_TYPE: &str = "event-type";
/// The invoices topic.
pub const INVOICES_TOPIC: &str = "billing.invoices";
/// The parcels topic.
pub const PARCELS_TOPIC: &str = "shipping.parcels";
/// The pattern that follows every dead-letter topic of the namespace.
pub const DEAD_LETTER_PATTERN: &str = ">:dlq";
/// Invoice events published.
pub const INVOICES: u64 = 8;
/// Parcel events published.
pub const PARCELS: u64 = 4;
/// The trimmed topic.
pub const TRIM_TOPIC: &str = "metrics.samples";
/// `maxlen=` (memory: `retention=`) of the trimming transport.
pub const TRIM_MAXLEN: u64 = 50;
/// Samples written to the trimmed topic.
pub const TRIM_EVENTS: u64 = 500;
/// The audit topic the slow subscribers read.
pub const AUDIT_TOPIC: &str = "audit.trail";
/// Audit events published while the slow subscribers read nothing.
pub const AUDIT_EVENTS: u64 = 40;
/// The slow subscribers' buffer.
pub const SLOW_BUFFER: usize = 8;

/// One domain event.
#[derive(Serialize, Deserialize, Debug, Clone, PartialEq)]
pub struct Event {
    /// Sequence number within its topic, from 1.
    pub seq: u64,
    /// Amount in cents (invoices) or weight in grams (parcels).
    pub value: i64,
}

/// Invoice 4 meets a busy ledger once: nacked with `Retry::Now`, acked on
/// its second delivery.
pub const fn is_flaky(topic_is_invoices: bool, seq: u64) -> bool {
    topic_is_invoices && seq == 4
}

/// Invoices 3 and 6 have a negative amount, parcel 2 an unknown address:
/// dead-lettered with the error.
pub const fn is_invalid(topic_is_invoices: bool, seq: u64) -> bool {
    if topic_is_invoices {
        seq == 3 || seq == 6
    } else {
        seq == 2
    }
}

/// The trimming transport's URL and a description of its setting.
fn trim_url(url: &str) -> (String, String) {
    if scheme(url) == "memory" {
        let trimmed = format!(
            "memory://{}-trimmed?retention={TRIM_MAXLEN}",
            memory_hub_name(url)
        );
        let what = format!("retention={TRIM_MAXLEN} (a memory hub of its own)");
        return (trimmed, what);
    }
    if let Some(maxlen) = param(url, "maxlen") {
        return (url.to_owned(), format!("maxlen={maxlen} (from the URL)"));
    }
    (
        with_param(url, "maxlen", TRIM_MAXLEN),
        format!("maxlen={TRIM_MAXLEN} (XADD ... MAXLEN ~ {TRIM_MAXLEN})"),
    )
}

/// Runs the example against `url` (see [`shared_url`]). Fails with a clear
/// error on an adapter without consumer groups or dead letters. Every wait
/// is bounded by [`PHASE_TIMEOUT`].
pub async fn run(url: &str) -> anyhow::Result<Summary> {
    let url = shared_url(url, "events");
    let publisher = connect_as(&url, "publisher").await?;
    let caps = publisher.capabilities();
    if !caps.consumer_groups || !caps.dead_letters {
        let name = publisher.name();
        let _ = publisher.close().await;
        bail!(
            "events_library needs consumer groups and dead letters, which the {name} adapter does not have \
             (capabilities: consumer_groups={}, dead_letters={}); use memory:// or redis+streams://",
            caps.consumer_groups,
            caps.dead_letters
        );
    }
    let handlers = connect_as(&url, "handlers").await?;
    let (trim_url, trim_setting) = trim_url(&url);
    let trimming = connect_as(&trim_url, "trimming publisher").await?;
    let prefix = if is_redis(&url) {
        let ns = param(&url, "namespace").unwrap_or("switchyard");
        format!("namespace={ns}: streams {ns}:{{{INVOICES_TOPIC}}}, {ns}:{{{PARCELS_TOPIC}}}, ...")
    } else {
        format!("memory hub {}", memory_hub_name(&url))
    };
    let result = script(&publisher, &handlers, &trimming, trim_setting, prefix).await;
    let closed = crate::close_all(&[&publisher, &handlers, &trimming]).await;
    let summary = result?;
    closed?;
    Ok(summary)
}

async fn script(
    publisher: &Arc<dyn Transport>,
    handlers: &Arc<dyn Transport>,
    trimming: &Arc<dyn Transport>,
    trim_setting: String,
    prefix: String,
) -> anyhow::Result<Summary> {
    let invoices = Topic::new(INVOICES_TOPIC)?;
    let parcels = Topic::new(PARCELS_TOPIC)?;

    // Every dead letter of the namespace, through one pattern subscription,
    // opened first so that it sees the dead-letter topics appear.
    let mut dead_letters = handlers
        .subscribe(Subscription::to(DEAD_LETTER_PATTERN)?.start(Start::Earliest))
        .await?;

    // The groups and their named consumers.
    let (stop_tx, stop_rx) = watch::channel(false);
    let settled = Arc::new(Mutex::new([0_u64; 2]));
    let mut consumers: Vec<(usize, JoinHandle<ConsumerResult>)> = Vec::new();
    let groups = [
        ("ledger", &invoices, &["ledger-1", "ledger-2"][..]),
        ("dispatch", &parcels, &["dispatch-1"][..]),
    ];
    for (index, (group, topic, names)) in groups.iter().enumerate() {
        for name in *names {
            let sub = handlers
                .subscribe(
                    Subscription::new((*topic).clone())
                        .group_member(*group, *name)
                        .start(Start::Earliest)
                        .max_attempts(5),
                )
                .await?;
            consumers.push((
                index,
                tokio::spawn(consumer(
                    (*name).to_owned(),
                    index,
                    sub,
                    settled.clone(),
                    stop_rx.clone(),
                )),
            ));
        }
    }

    // The slow audit subscribers: small buffers, nothing read yet.
    let audit = Topic::new(AUDIT_TOPIC)?;
    let mut slow = Vec::new();
    for (policy, overflow) in [
        ("DropOldest", Overflow::DropOldest),
        ("DropNewest", Overflow::DropNewest),
    ] {
        let sub = handlers
            .subscribe(
                Subscription::new(audit.clone())
                    .buffer(SLOW_BUFFER)
                    .overflow(overflow),
            )
            .await?;
        slow.push((policy, sub));
    }

    // Publish the domain events, one by one, each with its event type.
    let bus = Bus::new(publisher.clone());
    for (topic, count, event_type) in [
        (&invoices, INVOICES, "InvoiceIssued"),
        (&parcels, PARCELS, "ParcelShipped"),
    ] {
        for seq in 1..=count {
            let value = if is_invalid(topic == &invoices, seq) {
                -1
            } else {
                100 * i64::try_from(seq).unwrap_or(0)
            };
            let message = bus
                .message(topic, &Event { seq, value })?
                .with_header(EVENT_TYPE, event_type);
            publisher.publish(message).await?;
        }
    }
    // The audit trail, in one batch.
    let audit_batch = (1..=AUDIT_EVENTS)
        .map(|seq| bus.message(&audit, &Event { seq, value: 0 }))
        .collect::<Result<Vec<_>>>()?;
    publisher.publish_batch(audit_batch).await?;
    // The samples of the trimmed topic, in batches of 100.
    let samples = Topic::new(TRIM_TOPIC)?;
    let trim_bus = Bus::new(trimming.clone());
    for chunk in 0..TRIM_EVENTS.div_ceil(100) {
        let batch = (chunk * 100 + 1..=((chunk + 1) * 100).min(TRIM_EVENTS))
            .map(|seq| trim_bus.message(&samples, &Event { seq, value: 0 }))
            .collect::<Result<Vec<_>>>()?;
        trimming.publish_batch(batch).await?;
    }

    // Dead letters: the invalid invoices and parcels.
    let expected_dead = (1..=INVOICES).filter(|s| is_invalid(true, *s)).count()
        + (1..=PARCELS).filter(|s| is_invalid(false, *s)).count();
    let mut letters = Vec::new();
    let deadline = tokio::time::Instant::now() + PHASE_TIMEOUT;
    while letters.len() < expected_dead {
        let now = tokio::time::Instant::now();
        if now >= deadline {
            bail!(
                "timed out after {PHASE_TIMEOUT:?}: {} of {expected_dead} dead letters seen on {DEAD_LETTER_PATTERN}",
                letters.len()
            );
        }
        for item in dead_letters
            .recv_batch(16, (deadline - now).min(Duration::from_millis(100)))
            .await
        {
            let d = item.context("reading the dead letters")?;
            let event: Event = bus
                .codec()
                .decode(d.payload())
                .context("a dead letter that is not an event")?;
            let h = d.headers();
            letters.push(DeadLetter {
                topic: d.topic().to_string(),
                origin: h.get(header::DLQ_TOPIC).unwrap_or("?").to_owned(),
                event_type: h.get(EVENT_TYPE).unwrap_or("?").to_owned(),
                error: h.get(header::DLQ_REASON).unwrap_or("?").to_owned(),
                seq: event.seq,
            });
        }
    }
    letters.sort_by(|a, b| (&a.topic, a.seq).cmp(&(&b.topic, b.seq)));
    dead_letters.close().await?;

    // Every event settled (acked or dead-lettered): stop the consumers.
    let waited = wait_until(
        PHASE_TIMEOUT,
        || *lock(&settled) == [INVOICES, PARCELS],
        || {
            let s = *lock(&settled);
            format!(
                "settled {} of {INVOICES} invoices and {} of {PARCELS} parcels",
                s[0], s[1]
            )
        },
    )
    .await;
    let _ = stop_tx.send(true);
    waited?;
    let mut reports = vec![
        GroupReport {
            group: "ledger",
            topic: INVOICES_TOPIC,
            published: INVOICES,
            received: 0,
            acked: 0,
            nacked: 0,
            redelivered: 0,
            dead_lettered: 0,
            per_consumer: Vec::new(),
        },
        GroupReport {
            group: "dispatch",
            topic: PARCELS_TOPIC,
            published: PARCELS,
            received: 0,
            acked: 0,
            nacked: 0,
            redelivered: 0,
            dead_lettered: 0,
            per_consumer: Vec::new(),
        },
    ];
    for (index, handle) in consumers {
        let (name, handled, stats) = handle.await.context("a consumer panicked")??;
        if let Some(r) = reports.get_mut(index) {
            r.received += stats.received;
            r.acked += stats.acked;
            r.nacked += stats.nacked;
            r.redelivered += stats.redelivered;
            r.dead_lettered += stats.dead_lettered;
            r.per_consumer.push((name, handled));
        }
    }

    // Backpressure: wait until each slow subscriber has seen every audit
    // event (kept or dropped), then read what it kept.
    let mut slow_reports = Vec::new();
    for (policy, mut sub) in slow {
        let deadline = tokio::time::Instant::now() + PHASE_TIMEOUT;
        loop {
            let s = sub.stats();
            if s.buffered + s.dropped >= AUDIT_EVENTS {
                break;
            }
            if tokio::time::Instant::now() >= deadline {
                bail!(
                    "timed out after {PHASE_TIMEOUT:?}: the {policy} subscriber holds {} and dropped {} of {AUDIT_EVENTS} audit events",
                    s.buffered,
                    s.dropped
                );
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        let at_rest = sub.stats();
        let mut seqs = Vec::new();
        while (seqs.len() as u64) < at_rest.buffered {
            let batch = sub.recv_batch(SLOW_BUFFER, Duration::from_secs(2)).await;
            if batch.is_empty() {
                bail!(
                    "the {policy} subscriber reported {} buffered but handed out only {}",
                    at_rest.buffered,
                    seqs.len()
                );
            }
            for item in batch {
                let d = item.context("reading the audit trail")?;
                let event: Event = bus.codec().decode(d.payload())?;
                seqs.push(event.seq);
            }
        }
        let stats = sub.stats();
        slow_reports.push(SlowReport {
            policy,
            buffered: at_rest.buffered,
            capacity: at_rest.capacity,
            dropped: stats.dropped,
            kept: (
                seqs.first().copied().unwrap_or(0),
                seqs.last().copied().unwrap_or(0),
            ),
            received: seqs.len() as u64,
        });
        sub.close().await?;
    }

    let trim_retained = trimming
        .topics(&TopicFilter::from(samples.clone()))
        .await?
        .iter()
        .find(|t| t.topic == samples)
        .map_or(0, |t| t.length);

    Ok(Summary {
        adapter: publisher.name(),
        prefix,
        groups: reports,
        dead_letters: letters,
        trim_setting,
        trim_written: TRIM_EVENTS,
        trim_retained,
        slow: slow_reports,
        breaker: publisher.stats().breaker,
        health: format!("{:?}", publisher.health().await),
    })
}

/// What a consumer returns: its name, the events it acked, its stats.
type ConsumerResult = anyhow::Result<(String, u64, SubscriberStats)>;

/// One named consumer of a group: handles deliveries until the script says
/// stop (once every event of both groups is settled), then returns its
/// name, the events it acked and its stats. Each settled event (acked or
/// dead-lettered) is counted in `settled[group]`.
async fn consumer(
    name: String,
    group: usize,
    mut sub: Box<dyn Subscriber>,
    settled: Arc<Mutex<[u64; 2]>>,
    mut stop: watch::Receiver<bool>,
) -> ConsumerResult {
    let invoices = group == 0;
    let mut handled = 0;
    loop {
        let item = tokio::select! {
            _ = stop.changed() => break,
            item = sub.recv() => item,
        };
        let Some(item) = item else { break };
        let delivery = item.with_context(|| format!("{name}: receiving"))?;
        let event: Event = Codec::Json
            .decode(delivery.payload())
            .with_context(|| format!("{name}: an event that does not decode"))?;
        if is_invalid(invoices, event.seq) {
            let error = if invoices {
                format!(
                    "validation error: invoice {} has a negative amount",
                    event.seq
                )
            } else {
                format!("routing error: parcel {} has an unknown address", event.seq)
            };
            delivery.nack(Retry::DeadLetter(error)).await?;
        } else if is_flaky(invoices, event.seq) && delivery.attempt() == 1 {
            // A busy ledger: give it back at once, it comes again.
            delivery.nack(Retry::Now).await?;
            continue;
        } else {
            delivery.ack().await?;
            handled += 1;
        }
        if let Some(n) = lock(&settled).get_mut(group) {
            *n += 1;
        }
    }
    let stats = sub.stats();
    sub.close().await?;
    Ok((name, handled, stats))
}
