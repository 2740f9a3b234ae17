//! Counters of a backplane transport and rate-limited warnings.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use parking_lot::Mutex;
use switchyard_core::TransportStats;

/// Counters of a backplane transport, from
/// [`RedisPubSubTransport::pubsub_stats`](crate::RedisPubSubTransport::pubsub_stats).
/// All counts since the transport started; each saturates at `u64::MAX`
/// instead of wrapping.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct PubSubStats {
    /// Messages published by this transport (delivered locally, then enqueued).
    pub publishes: u64,
    /// Messages Redis accepted (`PUBLISH` succeeded).
    pub published: u64,
    /// Messages dropped because the outbox stayed full.
    pub outbox_full: u64,
    /// Messages dropped because Redis did not take them within `outbox_ttl`.
    pub outbox_expired: u64,
    /// Messages dropped because Redis refused them for good (e.g. an ACL).
    pub outbox_refused: u64,
    /// Pipelines to Redis that failed (and were retried while young).
    pub publish_errors: u64,
    /// Messages waiting in the outbox right now.
    pub outbox_len: u64,
    /// Times the subscribing connection was re-established.
    pub reconnects: u64,
    /// Times the receiving or sending loop panicked and was restarted.
    pub loop_restarts: u64,
    /// Frames received from other replicas and handed to local subscribers.
    pub received: u64,
    /// This transport's own messages coming back from Redis, dropped.
    pub self_echoes: u64,
    /// Frames seen twice (a retried publish, or a channel and a pattern
    /// matching the same message), dropped.
    pub duplicates: u64,
    /// Frames of an older boot epoch of an origin than one already seen
    /// from it (a stale or forged frame, or two transports sharing an
    /// instance id), dropped without touching gap tracking.
    pub stale: u64,
    /// Jumps in an origin's numbers on a topic too large to be real gaps
    /// (more than 2^32, either way): no gap reported, counting restarted
    /// there as for a new epoch; the frame is delivered.
    pub implausible_gaps: u64,
    /// Frames that were not valid envelopes (or whose boot epoch lies more
    /// than a day in the future), dropped.
    pub malformed: u64,
    /// Envelopes of an unknown version, dropped.
    pub unknown_version: u64,
    /// Gaps detected (each one a `Lost` item for the matching subscribers).
    pub gaps: u64,
    /// Messages of other replicas known to be lost (sum of the gap sizes).
    pub lost: u64,
    /// Remote messages dropped because a local subscriber's buffer was full.
    pub remote_dropped: u64,
}

impl PubSubStats {
    /// The names under which these counters appear in
    /// [`TransportStats::extra`](switchyard_core::TransportStats::extra)
    /// (through `Arc<dyn Transport>`), with their values. `published`,
    /// `publish_errors` and `reconnects` are the common fields there, and
    /// `dropped` is `outbox_full + outbox_expired + outbox_refused`.
    pub fn extra(&self) -> [(&'static str, u64); 15] {
        [
            ("pubsub.publishes", self.publishes),
            ("pubsub.outbox_full", self.outbox_full),
            ("pubsub.outbox_expired", self.outbox_expired),
            ("pubsub.outbox_refused", self.outbox_refused),
            ("pubsub.loop_restarts", self.loop_restarts),
            ("pubsub.received", self.received),
            ("pubsub.self_echoes", self.self_echoes),
            ("pubsub.duplicates", self.duplicates),
            ("pubsub.stale", self.stale),
            ("pubsub.implausible_gaps", self.implausible_gaps),
            ("pubsub.malformed", self.malformed),
            ("pubsub.unknown_version", self.unknown_version),
            ("pubsub.gaps", self.gaps),
            ("pubsub.lost", self.lost),
            ("pubsub.remote_dropped", self.remote_dropped),
        ]
    }

    /// These counters in the common shape every adapter returns from
    /// `Transport::stats()`: the common fields, every other counter in
    /// `extra` (see [`extra`](Self::extra) for the names) and
    /// `pubsub.outbox_len` in `extra_gauges`.
    pub fn to_transport_stats(&self) -> TransportStats {
        let mut s = TransportStats::default();
        s.published = self.published;
        s.publish_errors = self.publish_errors;
        s.dropped = self
            .outbox_full
            .saturating_add(self.outbox_expired)
            .saturating_add(self.outbox_refused);
        s.reconnects = self.reconnects;
        s.extra = self.extra().into_iter().collect();
        s.extra_gauges.insert("pubsub.outbox_len", self.outbox_len);
        s
    }
}

/// The live counters.
#[derive(Debug, Default)]
pub(crate) struct Counters {
    pub(crate) publishes: AtomicU64,
    pub(crate) published: AtomicU64,
    pub(crate) outbox_full: AtomicU64,
    pub(crate) outbox_expired: AtomicU64,
    pub(crate) outbox_refused: AtomicU64,
    pub(crate) publish_errors: AtomicU64,
    pub(crate) reconnects: AtomicU64,
    pub(crate) loop_restarts: AtomicU64,
    pub(crate) received: AtomicU64,
    pub(crate) self_echoes: AtomicU64,
    pub(crate) duplicates: AtomicU64,
    pub(crate) stale: AtomicU64,
    pub(crate) implausible_gaps: AtomicU64,
    pub(crate) malformed: AtomicU64,
    pub(crate) unknown_version: AtomicU64,
    pub(crate) gaps: AtomicU64,
    pub(crate) lost: AtomicU64,
    pub(crate) remote_dropped: AtomicU64,
}

/// Adds `n` to a counter, saturating at `u64::MAX`.
pub(crate) fn add(counter: &AtomicU64, n: u64) {
    // Never fails: the closure always returns Some.
    let _ = counter.fetch_update(Ordering::Relaxed, Ordering::Relaxed, |v| {
        Some(v.saturating_add(n))
    });
}

fn get(counter: &AtomicU64) -> u64 {
    counter.load(Ordering::Relaxed)
}

impl Counters {
    pub(crate) fn snapshot(&self, outbox_len: usize) -> PubSubStats {
        PubSubStats {
            publishes: get(&self.publishes),
            published: get(&self.published),
            outbox_full: get(&self.outbox_full),
            outbox_expired: get(&self.outbox_expired),
            outbox_refused: get(&self.outbox_refused),
            publish_errors: get(&self.publish_errors),
            outbox_len: outbox_len as u64,
            reconnects: get(&self.reconnects),
            loop_restarts: get(&self.loop_restarts),
            received: get(&self.received),
            self_echoes: get(&self.self_echoes),
            duplicates: get(&self.duplicates),
            stale: get(&self.stale),
            implausible_gaps: get(&self.implausible_gaps),
            malformed: get(&self.malformed),
            unknown_version: get(&self.unknown_version),
            gaps: get(&self.gaps),
            lost: get(&self.lost),
            remote_dropped: get(&self.remote_dropped),
        }
    }
}

/// What a warning is about; each kind is rate-limited on its own.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum WarnKind {
    Malformed,
    UnknownVersion,
    Gap,
    OutboxDrop,
    PublishError,
    Link,
}

const KINDS: usize = 6;

impl WarnKind {
    fn index(self) -> usize {
        self as usize
    }
}

/// At most one `warn!` per kind per interval; the rest go to `debug!` and
/// are summed up in the next warning.
#[derive(Debug)]
pub(crate) struct WarnLimiter {
    interval: Duration,
    slots: Mutex<[(Option<Instant>, u64); KINDS]>,
}

impl WarnLimiter {
    pub(crate) fn new(interval: Duration) -> Self {
        WarnLimiter {
            interval,
            slots: Mutex::new([(None, 0); KINDS]),
        }
    }

    /// Returns `Some(suppressed since the last warning)` when this event
    /// may be logged at warn level, `None` when it should go to debug.
    pub(crate) fn allow(&self, kind: WarnKind) -> Option<u64> {
        let now = Instant::now();
        let mut slots = self.slots.lock();
        let slot = &mut slots[kind.index()];
        match slot.0 {
            Some(last) if now.duration_since(last) < self.interval => {
                slot.1 += 1;
                None
            }
            _ => {
                slot.0 = Some(now);
                Some(std::mem::take(&mut slot.1))
            }
        }
    }
}

/// Logs at warn level at most once per interval per kind, else at debug.
macro_rules! limited_warn {
    ($limiter:expr, $kind:expr, $($arg:tt)+) => {
        match $limiter.allow($kind) {
            Some(suppressed) => tracing::warn!(suppressed, $($arg)+),
            None => tracing::debug!($($arg)+),
        }
    };
}
pub(crate) use limited_warn;

#[cfg(test)]
mod tests {
    use super::*;

    /// Reproduction: forged frames announcing huge gaps wrapped `lost`
    /// (13,596,533,905,323,207,646 after fuzzing).
    #[test]
    fn counters_saturate() {
        let c = AtomicU64::new(u64::MAX - 2);
        add(&c, 1);
        assert_eq!(c.load(Ordering::Relaxed), u64::MAX - 1);
        add(&c, u64::MAX - 5);
        assert_eq!(c.load(Ordering::Relaxed), u64::MAX);
        add(&c, 1);
        assert_eq!(c.load(Ordering::Relaxed), u64::MAX);
    }

    #[test]
    fn transport_stats_carry_every_counter() {
        let c = Counters::default();
        add(&c.self_echoes, 3);
        add(&c.gaps, 2);
        add(&c.outbox_full, 1);
        add(&c.outbox_refused, 4);
        add(&c.published, 7);
        let t = c.snapshot(5).to_transport_stats();
        assert_eq!(t.published, 7);
        assert_eq!(t.dropped, 5);
        assert_eq!(t.extra.len(), 15);
        assert_eq!(t.extra["pubsub.self_echoes"], 3);
        assert_eq!(t.extra["pubsub.gaps"], 2);
        assert_eq!(t.extra["pubsub.malformed"], 0);
        assert_eq!(t.extra_gauges["pubsub.outbox_len"], 5);
        assert_eq!(t.counters().len(), 5 + 15);
    }

    #[test]
    fn limiter() {
        let l = WarnLimiter::new(Duration::from_secs(3600));
        assert_eq!(l.allow(WarnKind::Malformed), Some(0));
        assert_eq!(l.allow(WarnKind::Malformed), None);
        assert_eq!(l.allow(WarnKind::Malformed), None);
        assert_eq!(l.allow(WarnKind::UnknownVersion), Some(0));
        let l = WarnLimiter::new(Duration::ZERO);
        assert_eq!(l.allow(WarnKind::Link), Some(0));
        assert_eq!(l.allow(WarnKind::Link), Some(0));
    }
}
