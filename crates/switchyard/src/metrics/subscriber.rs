//! A subscriber whose [`SubscriberStats`] feed counters and gauges.

use std::sync::Mutex;
use std::task::{Context, Poll};

use ::metrics::{Counter, Gauge, Label};

use super::names;
use crate::{Delivery, Result, Subscriber, SubscriberStats};

/// Deliveries between two stats syncs while deliveries keep coming (the
/// stats are also synced whenever the subscriber waits).
const SYNC_EVERY: u32 = 64;

/// The metric handles of one (adapter, topic, group).
pub(super) struct SubscriberHandles {
    counters: [Counter; 10],
    buffered: Gauge,
    capacity: Gauge,
}

/// Counter names in [`SubscriberStats::counters`] order.
const COUNTER_NAMES: [&str; 10] = [
    names::DELIVERED,
    names::ACKED,
    names::NACKED,
    names::REDELIVERED,
    names::DEAD_LETTERED,
    names::DROPPED,
    names::DECODE_ERRORS,
    names::MALFORMED,
    names::LOST,
    names::LOST_TO_RETENTION,
];

impl SubscriberHandles {
    pub(super) fn new(adapter: &'static str, topic: String, group: String) -> Self {
        let labels = [
            Label::new("adapter", adapter),
            Label::new("topic", topic),
            Label::new("group", group),
        ];
        SubscriberHandles {
            counters: COUNTER_NAMES.map(|name| ::metrics::counter!(name, labels.iter())),
            buffered: ::metrics::gauge!(names::SUBSCRIBER_BUFFERED, labels.iter()),
            capacity: ::metrics::gauge!(names::SUBSCRIBER_CAPACITY, labels.iter()),
        }
    }
}

/// Wraps a subscriber; its counters go to the metrics as deltas, so the
/// counters of subscribers sharing labels add up. Synced when the
/// subscriber waits for a delivery, every [`SYNC_EVERY`] deliveries, on
/// `stats()`, on close and on drop.
pub(super) struct MeteredSubscriber {
    inner: Box<dyn Subscriber>,
    handles: SubscriberHandles,
    /// What was reported so far.
    last: Mutex<SubscriberStats>,
    since_sync: u32,
}

impl MeteredSubscriber {
    pub(super) fn new(inner: Box<dyn Subscriber>, handles: SubscriberHandles) -> Self {
        let s = MeteredSubscriber {
            inner,
            handles,
            last: Mutex::new(SubscriberStats::default()),
            since_sync: 0,
        };
        s.sync();
        s
    }

    /// Reports what changed since the last sync; returns the new stats.
    fn sync(&self) -> SubscriberStats {
        let now = self.inner.stats();
        self.sync_from(now);
        now
    }

    /// Reports what changed from the last reported stats to `now`.
    fn sync_from(&self, now: SubscriberStats) {
        let mut last = self.last.lock().unwrap_or_else(|e| e.into_inner());
        for ((counter, (_, new)), (_, old)) in self
            .handles
            .counters
            .iter()
            .zip(now.counters())
            .zip(last.counters())
        {
            // A counter never goes down; if an adapter's did, skip it.
            if new > old {
                counter.increment(new - old);
            }
        }
        move_gauge(&self.handles.buffered, last.buffered, now.buffered);
        move_gauge(&self.handles.capacity, last.capacity, now.capacity);
        *last = now;
    }

    /// Takes this subscriber's share out of the summed gauges.
    fn leave(&self) {
        let last = self.last.lock().unwrap_or_else(|e| e.into_inner());
        move_gauge(&self.handles.buffered, last.buffered, 0);
        move_gauge(&self.handles.capacity, last.capacity, 0);
    }
}

/// Moves a summed gauge by `new - old`.
fn move_gauge(gauge: &Gauge, old: u64, new: u64) {
    if new > old {
        gauge.increment((new - old) as f64);
    } else if old > new {
        gauge.decrement((old - new) as f64);
    }
}

#[crate::async_trait]
impl Subscriber for MeteredSubscriber {
    fn poll_recv(&mut self, cx: &mut Context<'_>) -> Poll<Option<Result<Delivery>>> {
        let polled = self.inner.poll_recv(cx);
        match &polled {
            Poll::Ready(Some(_)) => {
                self.since_sync += 1;
                if self.since_sync >= SYNC_EVERY {
                    self.since_sync = 0;
                    self.sync();
                }
            }
            Poll::Ready(None) | Poll::Pending => {
                self.since_sync = 0;
                self.sync();
            }
        }
        polled
    }

    fn stats(&self) -> SubscriberStats {
        self.sync()
    }

    async fn close(self: Box<Self>) -> Result<()> {
        let mut this = self;
        let inner = std::mem::replace(&mut this.inner, Box::new(Closed));
        // What happened since the last sync counts; the gauges drop this
        // subscriber's share when `this` is dropped.
        this.sync_from(inner.stats());
        inner.close().await
    }
}

impl Drop for MeteredSubscriber {
    fn drop(&mut self) {
        self.sync();
        self.leave();
    }
}

/// Stands in for a subscriber that was closed.
struct Closed;

#[crate::async_trait]
impl Subscriber for Closed {
    fn poll_recv(&mut self, _cx: &mut Context<'_>) -> Poll<Option<Result<Delivery>>> {
        Poll::Ready(None)
    }

    fn stats(&self) -> SubscriberStats {
        SubscriberStats::default()
    }

    async fn close(self: Box<Self>) -> Result<()> {
        Ok(())
    }
}
