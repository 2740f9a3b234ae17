//! What a run of [`events_library`](super) saw, and how it is printed.

use std::fmt;
use std::time::SystemTime;

use switchyard::BreakerStats;

use super::{DEAD_LETTER_PATTERN, EVENT_TYPE};

/// What one group did (summed over its consumers' `SubscriberStats`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GroupReport {
    /// The group.
    pub group: &'static str,
    /// The topic it consumes.
    pub topic: &'static str,
    /// Events published on the topic.
    pub published: u64,
    /// Deliveries handed to the group's consumers.
    pub received: u64,
    /// Acked.
    pub acked: u64,
    /// Nacked (`Retry::Now` and dead-letter requests).
    pub nacked: u64,
    /// Redelivered (`attempt > 1`).
    pub redelivered: u64,
    /// Dead-lettered.
    pub dead_lettered: u64,
    /// Events acked per consumer.
    pub per_consumer: Vec<(String, u64)>,
}

/// One dead letter as the `>:dlq` subscription saw it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeadLetter {
    /// The dead-letter topic it came on.
    pub topic: String,
    /// `sy-dlq-topic`: where it was first published.
    pub origin: String,
    /// The original `event-type` header.
    pub event_type: String,
    /// `sy-dlq-reason`: the error.
    pub error: String,
    /// The event's sequence number.
    pub seq: u64,
}

/// One slow subscriber.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SlowReport {
    /// Its overflow policy.
    pub policy: &'static str,
    /// Buffered when the publisher finished (`stats().buffered`).
    pub buffered: u64,
    /// Its buffer (`stats().capacity`).
    pub capacity: u64,
    /// Dropped by the policy (`stats().dropped`).
    pub dropped: u64,
    /// Received once it read: first and last sequence number.
    pub kept: (u64, u64),
    /// Received in all.
    pub received: u64,
}

/// What a run of the example saw.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Summary {
    /// The adapter's name.
    pub adapter: &'static str,
    /// The stream prefix (`namespace=`) or memory hub.
    pub prefix: String,
    /// The two groups.
    pub groups: Vec<GroupReport>,
    /// Dead letters read through `>:dlq`, sorted by topic and seq.
    pub dead_letters: Vec<DeadLetter>,
    /// The trimming setting in effect.
    pub trim_setting: String,
    /// Samples written to the trimmed topic.
    pub trim_written: u64,
    /// Samples it retains afterwards (`topics()`).
    pub trim_retained: u64,
    /// The slow subscribers: DropOldest, then DropNewest.
    pub slow: Vec<SlowReport>,
    /// The publisher's circuit breaker, `None` where the adapter has none.
    pub breaker: Option<BreakerStats>,
    /// `health()` of the publisher.
    pub health: String,
}

impl fmt::Display for Summary {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(f, "events_library on {}:", self.adapter)?;
        writeln!(f, "  stream prefix:  {}", self.prefix)?;
        for g in &self.groups {
            let per: Vec<String> = g
                .per_consumer
                .iter()
                .map(|(c, n)| format!("{c}={n}"))
                .collect();
            writeln!(
                f,
                "  group {:<9} {}: {} published, {} received, {} acked ({}), {} nacked, {} redelivered, {} dead-lettered",
                g.group,
                g.topic,
                g.published,
                g.received,
                g.acked,
                per.join(", "),
                g.nacked,
                g.redelivered,
                g.dead_lettered
            )?;
        }
        writeln!(
            f,
            "  {DEAD_LETTER_PATTERN} (one pattern subscription): {} dead letters",
            self.dead_letters.len()
        )?;
        for d in &self.dead_letters {
            writeln!(
                f,
                "    {} #{} {EVENT_TYPE}={} error={:?}",
                d.topic, d.seq, d.event_type, d.error
            )?;
        }
        writeln!(
            f,
            "  trimming:       {}: {} of {} samples retained",
            self.trim_setting, self.trim_retained, self.trim_written
        )?;
        for s in &self.slow {
            writeln!(
                f,
                "  backpressure:   {:<10} buffer {}/{}, dropped {}, then read {} (#{}..#{})",
                s.policy, s.buffered, s.capacity, s.dropped, s.received, s.kept.0, s.kept.1
            )?;
        }
        match &self.breaker {
            Some(b) => writeln!(
                f,
                "  breaker:        {:?}, {} consecutive failures, {} requests, {} rejected, opened {} times, last change {}",
                b.state,
                b.consecutive_failures,
                b.total_requests,
                b.rejected_requests,
                b.times_opened,
                b.last_state_change.map_or_else(
                    || "never".to_owned(),
                    |t| format!(
                        "{:?} ago",
                        SystemTime::now().duration_since(t).unwrap_or_default()
                    )
                )
            )?,
            None => writeln!(
                f,
                "  breaker:        n/a (the {} adapter has no circuit breaker)",
                self.adapter
            )?,
        }
        write!(f, "  health:         {}", self.health)
    }
}
