//! Event bus: the Redis adapter of an event bus, on switchyard. A producer
//! publishes a pipelined batch with dedup ids derived from its own keys
//! (stable across retries), retries one publish, a pull consumer works
//! through the events with `fetch(max, wait)`, cursors replay from an id and
//! from the start, and the closed transport refuses work.
//!
//! - The producer publishes [`EVENTS`] [`BusEvent`]s on `bus.events` in one
//!   `publish_batch` (one pipeline of XADDs on Redis). Each message's dedup
//!   id is `DedupId::from_key("{PRODUCER}:{seq}")`, so a producer that
//!   rebuilds the message after a crash gets the same id.
//! - A foreign producer writes one event that is not JSON on the same topic
//!   (a corrupt payload). The consumer cannot decode it and dead-letters it
//!   with the decode error as the reason (`Retry::DeadLetter`): it is
//!   never processed, and it never wedges the cursor or the group. An entry
//!   the adapter itself cannot read (a foreign `XADD` on Redis) arrives as
//!   one `Error::Malformed` item, is counted and skipped; the adapter
//!   dead-letters it.
//! - Its last publish "times out" from the producer's point of view and is
//!   retried with a clone of the same `Message` (same dedup id). Neither
//!   memory nor Redis Streams drops the second copy when it is published:
//!   both are stored (`XLEN` is [`EVENTS`] + 1), and consumers drop the
//!   duplicate by its dedup id, as every consumer here does.
//! - A pull consumer (group `projector`, member `puller-1`) asks for
//!   [`FETCH_MAX`] deliveries at a time with `fetch(FETCH_MAX, FETCH_WAIT)`
//!   and acks each (`Fetched { items, more, closed }`).
//! - Cursors: a fan-out reader from `Start::After(id of event 5)` gets the
//!   events after it, and one from `Start::Earliest` gets everything.
//! - Redis command timeouts come from the URL: `response_timeout=` (the
//!   example sets [`RESPONSE_TIMEOUT`] when the URL does not).
//! - `health()` before and after `close()`; after `close()` a publish fails
//!   with `Error::Closed`.
//!
//! Needs consumer groups and replay: the Pub/Sub backplane is refused with
//! a clear error.

use std::collections::HashSet;
use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, bail};
use serde::{Deserialize, Serialize};
use switchyard::prelude::*;
use switchyard::{DedupId, Fetched};

use crate::{PHASE_TIMEOUT, connect_as, is_redis, param, shared_url, with_param};

/// The topic of the bus.
pub const TOPIC: &str = "bus.events";
/// Events in the producer's batch.
pub const EVENTS: u64 = 10;
/// The producer's name, the first part of every dedup key.
pub const PRODUCER: &str = "billing-producer";
/// Most deliveries one `fetch` returns.
pub const FETCH_MAX: usize = 4;
/// How long one `fetch` waits for its batch to fill.
pub const FETCH_WAIT: Duration = Duration::from_millis(300);
/// The replay cursor starts after this event (by sequence number).
pub const REPLAY_AFTER: u64 = 5;
/// The payload of the foreign producer's corrupt event.
pub const CORRUPT_PAYLOAD: &str = "{\"seq\": 11, \"kind\": \"invoice.vo";
/// The command timeout set on a Redis URL without `response_timeout=`.
pub const RESPONSE_TIMEOUT: &str = "2s";

/// One event of the bus.
#[derive(Serialize, Deserialize, Debug, Clone, PartialEq)]
pub struct BusEvent {
    /// The producer's sequence number, 1 to [`EVENTS`].
    pub seq: u64,
    /// What happened.
    pub kind: String,
}

/// The dedup key of event `seq`: stable across producer retries and
/// restarts (the dedup id is its FNV-1a hash, `DedupId::from_key`).
pub fn dedup_key(seq: u64) -> String {
    format!("{PRODUCER}:{seq}")
}

/// What a run of the example saw.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Summary {
    /// The adapter's name.
    pub adapter: &'static str,
    /// The command timeout in effect (`response_timeout=`), or why none.
    pub command_timeout: String,
    /// Events published in the one `publish_batch` call.
    pub batch_published: u64,
    /// Publishes of a message clone (producer retries).
    pub retries: u64,
    /// Whether the retry got the id of the first copy (the backend dropped
    /// it) or an id of its own (both copies stored).
    pub retry_stored_twice: bool,
    /// Messages the topic holds afterwards (`topics()`).
    pub stored: u64,
    /// Deliveries the pull consumer got.
    pub pulled: u64,
    /// Of those, distinct events processed.
    pub processed: u64,
    /// Of those, duplicates dropped by dedup id.
    pub duplicates_dropped: u64,
    /// Of those, corrupt payloads dead-lettered with their decode error.
    pub corrupt_dead_lettered: u64,
    /// `Error::Malformed` items (entries the adapter could not read), skipped.
    pub malformed_skipped: u64,
    /// The size of each fetch, in order, and whether it said `more`.
    pub fetches: Vec<(usize, bool)>,
    /// Deliveries of the cursor `Start::After(id of event REPLAY_AFTER)`.
    pub replay_after: u64,
    /// Of those, distinct events.
    pub replay_after_distinct: u64,
    /// Deliveries of the cursor `Start::Earliest`.
    pub replay_earliest: u64,
    /// Of those, distinct events.
    pub replay_earliest_distinct: u64,
    /// `health()` before closing.
    pub health_open: String,
    /// `health()` after closing.
    pub health_closed: String,
    /// What a publish after `close()` returned.
    pub after_close: String,
    /// Whether that was `Error::Closed`.
    pub refused_with_closed: bool,
}

impl fmt::Display for Summary {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(f, "event_bus on {}:", self.adapter)?;
        writeln!(f, "  command timeout:   {}", self.command_timeout)?;
        writeln!(
            f,
            "  publish_batch:     {} events in one pipelined call, dedup ids from \"{PRODUCER}:SEQ\"",
            self.batch_published
        )?;
        writeln!(
            f,
            "  producer retry:    {} clone of event {EVENTS} published again: {}",
            self.retries,
            if self.retry_stored_twice {
                "stored a second time (new id, same dedup id); consumers drop it"
            } else {
                "the backend returned the first copy's id"
            }
        )?;
        writeln!(f, "  stored on topic:   {}", self.stored)?;
        let sizes: Vec<String> = self
            .fetches
            .iter()
            .map(|(n, more)| format!("{n}{}", if *more { "+more" } else { "" }))
            .collect();
        writeln!(
            f,
            "  pull consumer:     {} pulled in {} fetches ({}), {} processed, {} duplicate dropped by dedup id",
            self.pulled,
            self.fetches.len(),
            sizes.join(", "),
            self.processed,
            self.duplicates_dropped
        )?;
        writeln!(
            f,
            "  corrupt entries:   {} payload not decodable, dead-lettered with the decode error; {} unreadable entry skipped (Error::Malformed)",
            self.corrupt_dead_lettered, self.malformed_skipped
        )?;
        writeln!(
            f,
            "  cursor After(#{REPLAY_AFTER}): {} deliveries, {} distinct events",
            self.replay_after, self.replay_after_distinct
        )?;
        writeln!(
            f,
            "  cursor Earliest:   {} deliveries, {} distinct events",
            self.replay_earliest, self.replay_earliest_distinct
        )?;
        writeln!(f, "  health:            {}", self.health_open)?;
        writeln!(f, "  after close():     health {}", self.health_closed)?;
        write!(f, "  publish after close: {}", self.after_close)
    }
}

/// The URL the example uses: a fresh space (see [`shared_url`]) and, on
/// Redis, `response_timeout=` [`RESPONSE_TIMEOUT`] unless the URL sets it.
/// Returns the URL and a description of the command timeout.
pub fn bus_url(url: &str) -> (String, String) {
    let url = shared_url(url, "bus");
    if !is_redis(&url) {
        return (url, "n/a (memory: no commands to time out)".to_owned());
    }
    if let Some(given) = param(&url, "response_timeout") {
        let what = format!("response_timeout={given} (from the URL)");
        return (url, what);
    }
    let what = format!("response_timeout={RESPONSE_TIMEOUT} (set by the example)");
    (with_param(&url, "response_timeout", RESPONSE_TIMEOUT), what)
}

/// Runs the example against `url`. Fails with a clear error on an adapter
/// without consumer groups or replay. Every wait is bounded by
/// [`PHASE_TIMEOUT`].
pub async fn run(url: &str) -> anyhow::Result<Summary> {
    let (url, command_timeout) = bus_url(url);
    let producer = connect_as(&url, "producer").await?;
    let caps = producer.capabilities();
    if !caps.consumer_groups || !caps.replay {
        let name = producer.name();
        let _ = producer.close().await;
        bail!(
            "event_bus needs consumer groups and replay, which the {name} adapter does not have \
             (capabilities: consumer_groups={}, replay={}); use memory:// or redis+streams://",
            caps.consumer_groups,
            caps.replay
        );
    }
    let consumer = connect_as(&url, "consumer").await?;
    let result = script(&producer, &consumer, command_timeout).await;
    let closed = consumer.close().await;
    // The producer was closed by the script (the refusal step); closing
    // again returns at once.
    let _ = producer.close().await;
    let summary = result?;
    closed.context("closing the consumer's transport")?;
    Ok(summary)
}

async fn script(
    producer: &Arc<dyn Transport>,
    consumer: &Arc<dyn Transport>,
    command_timeout: String,
) -> anyhow::Result<Summary> {
    let topic = Topic::new(TOPIC)?;
    let bus = Bus::new(producer.clone());

    // The pull consumer's group exists before anything is published
    // (Earliest: a group created later would see the events too).
    let mut puller = consumer
        .subscribe(
            Subscription::new(topic.clone())
                .group_member("projector", "puller-1")
                .start(Start::Earliest),
        )
        .await?;

    // One pipelined batch, dedup ids from the producer's own keys.
    let mut batch = Vec::new();
    for seq in 1..=EVENTS {
        let event = BusEvent {
            seq,
            kind: if seq % 2 == 0 {
                "invoice.paid"
            } else {
                "invoice.created"
            }
            .to_owned(),
        };
        let message = bus
            .message(&topic, &event)?
            .with_dedup_id(DedupId::from_key(&dedup_key(seq)));
        batch.push(message);
    }
    let last = batch.last().cloned().context("the batch is empty")?;
    let ids = producer
        .publish_batch(batch)
        .await
        .context("publishing the batch")?;
    let replay_from = ids
        .get(usize::try_from(REPLAY_AFTER - 1).unwrap_or(0))
        .copied()
        .context("publish_batch returned fewer ids than messages")?;
    let last_id = ids.last().copied().context("no ids")?;

    // A foreign producer writes an event that is not valid JSON.
    producer
        .publish(Message::new(topic.clone(), CORRUPT_PAYLOAD))
        .await
        .context("publishing the corrupt event")?;

    // The producer "timed out" waiting for the last event and retries it
    // with a clone: same payload, same dedup id.
    let retry_id = producer
        .publish(last.clone())
        .await
        .context("retrying the last event")?;
    // The batch, the corrupt event and the retry copy.
    let expected_deliveries = EVENTS + 2;

    // The pull consumer: fetch, process once per dedup id, ack everything.
    let mut seen: HashSet<DedupId> = HashSet::new();
    let mut pulled = 0;
    let mut duplicates = 0;
    let mut corrupt = 0;
    let mut malformed = 0;
    let mut fetches = Vec::new();
    let deadline = tokio::time::Instant::now() + PHASE_TIMEOUT;
    while pulled < expected_deliveries {
        if tokio::time::Instant::now() >= deadline {
            bail!(
                "timed out after {PHASE_TIMEOUT:?}: the pull consumer got {pulled} of {expected_deliveries} deliveries"
            );
        }
        let Fetched {
            items,
            more,
            closed,
            ..
        } = puller.fetch(FETCH_MAX, FETCH_WAIT).await;
        if !items.is_empty() {
            fetches.push((items.len(), more));
        }
        for item in items {
            let delivery = match item {
                Ok(delivery) => delivery,
                // Unreadable for the adapter: it dead-letters the entry
                // itself; the cursor goes on.
                Err(Error::Malformed { .. }) => {
                    malformed += 1;
                    continue;
                }
                Err(e) => return Err(e).context("the pull consumer's fetch"),
            };
            pulled += 1;
            // Processing needs the event; one that does not decode is
            // dead-lettered with the reason.
            let _event: BusEvent = match bus.codec().decode(delivery.payload()) {
                Ok(event) => event,
                Err(e) => {
                    corrupt += 1;
                    delivery
                        .nack(Retry::DeadLetter(format!("not a BusEvent: {e}")))
                        .await?;
                    continue;
                }
            };
            if !seen.insert(delivery.dedup_id()) {
                duplicates += 1;
            }
            delivery.ack().await?;
        }
        if closed {
            bail!("the pull consumer was closed after {pulled} deliveries");
        }
    }
    puller.close().await?;

    // Cursors: from an id, and from the start.
    let (replay_after, replay_after_distinct) = replay(
        consumer,
        &topic,
        Start::After(replay_from),
        last_id,
        retry_id,
        bus.codec(),
    )
    .await?;
    let (replay_earliest, replay_earliest_distinct) = replay(
        consumer,
        &topic,
        Start::Earliest,
        last_id,
        retry_id,
        bus.codec(),
    )
    .await?;

    let stored = consumer
        .topics(&TopicFilter::from(topic.clone()))
        .await?
        .iter()
        .find(|t| t.topic == topic)
        .map_or(0, |t| t.length);

    // Health, then shutdown: a closed transport refuses work.
    let health_open = format!("{:?}", producer.health().await);
    producer.close().await.context("closing the producer")?;
    let health_closed = format!("{:?}", producer.health().await);
    let refused = producer.publish(last).await;
    let refused_with_closed = matches!(refused, Err(Error::Closed));
    let after_close = match refused {
        Ok(id) => format!("accepted as {id} (not refused!)"),
        Err(e) => format!("Err({e:?}): {e}"),
    };

    Ok(Summary {
        adapter: producer.name(),
        command_timeout,
        batch_published: ids.len() as u64,
        retries: 1,
        retry_stored_twice: retry_id != last_id,
        stored,
        pulled,
        processed: seen.len() as u64,
        duplicates_dropped: duplicates,
        corrupt_dead_lettered: corrupt,
        malformed_skipped: malformed,
        fetches,
        replay_after,
        replay_after_distinct,
        replay_earliest,
        replay_earliest_distinct,
        health_open,
        health_closed,
        after_close,
        refused_with_closed,
    })
}

/// Reads `topic` from `start` with a fan-out cursor until the newest entry
/// (`max(last_id, retry_id)`) arrived; returns the deliveries and the
/// distinct events (by dedup id) among those that decode. Corrupt payloads
/// and `Error::Malformed` items are passed over: a cursor never wedges.
async fn replay(
    transport: &Arc<dyn Transport>,
    topic: &Topic,
    start: Start,
    last_id: MessageId,
    retry_id: MessageId,
    codec: Codec,
) -> anyhow::Result<(u64, u64)> {
    let newest = last_id.max(retry_id);
    let mut cursor = transport
        .subscribe(Subscription::new(topic.clone()).start(start))
        .await?;
    let mut deliveries = 0;
    let mut distinct = HashSet::new();
    let deadline = tokio::time::Instant::now() + PHASE_TIMEOUT;
    loop {
        let now = tokio::time::Instant::now();
        if now >= deadline {
            bail!(
                "timed out after {PHASE_TIMEOUT:?}: the {start:?} cursor got {deliveries} deliveries, not up to {newest}"
            );
        }
        let item = match tokio::time::timeout(deadline - now, cursor.recv()).await {
            Ok(Some(item)) => item,
            Ok(None) => bail!("the {start:?} cursor closed after {deliveries} deliveries"),
            Err(_) => continue,
        };
        let delivery = match item {
            Ok(delivery) => delivery,
            Err(Error::Malformed { .. }) => continue,
            Err(e) => return Err(e).with_context(|| format!("the {start:?} cursor")),
        };
        deliveries += 1;
        if codec.decode::<BusEvent>(delivery.payload()).is_ok() {
            distinct.insert(delivery.dedup_id());
        }
        if delivery.id() >= newest {
            break;
        }
    }
    cursor.close().await?;
    Ok((deliveries, distinct.len() as u64))
}
