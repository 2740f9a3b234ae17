//! The metric names, with their type and labels. Counters end in
//! `_total`; the Prometheus exporter renders them under these names.
//!
//! | name | type | labels | from |
//! |---|---|---|---|
//! | `switchyard_published_total` | counter | adapter, topic | each message a publish call got an id for |
//! | `switchyard_publish_errors_total` | counter | adapter, topic | each message of a failed publish call (refusals included) |
//! | `switchyard_publish_duration_seconds` | histogram | adapter, topic | one per `publish`; a `publish_batch` once per topic it carries |
//! | `switchyard_delivered_total` | counter | adapter, topic, group | `SubscriberStats::received` |
//! | `switchyard_acked_total` | counter | adapter, topic, group | `acked` |
//! | `switchyard_nacked_total` | counter | adapter, topic, group | `nacked` |
//! | `switchyard_redelivered_total` | counter | adapter, topic, group | `redelivered` |
//! | `switchyard_dead_lettered_total` | counter | adapter, topic, group | `dead_lettered` |
//! | `switchyard_dropped_total` | counter | adapter, topic, group | `dropped` (overflow policy) |
//! | `switchyard_decode_errors_total` | counter | adapter, topic, group | `decode_errors` |
//! | `switchyard_malformed_total` | counter | adapter, topic, group | `malformed` |
//! | `switchyard_lost_total` | counter | adapter, topic, group | `lost` (gap signals) |
//! | `switchyard_lost_to_retention_total` | counter | adapter, topic, group | `lost_to_retention` |
//! | `switchyard_subscriber_buffered` | gauge | adapter, topic, group | `buffered`, summed over the open subscribers |
//! | `switchyard_subscriber_capacity` | gauge | adapter, topic, group | `capacity`, summed; fill = buffered / capacity |
//! | `switchyard_publish_dropped_total` | counter | adapter | `TransportStats::dropped` (outbox full, expired, refused) |
//! | `switchyard_reconnects_total` | counter | adapter | `TransportStats::reconnects` |
//! | `switchyard_breaker_rejections_total` | counter | adapter | `TransportStats::breaker_rejections` |
//! | `switchyard_breaker_open` | gauge | adapter | 1 while the circuit breaker is open, else 0 |
//! | `switchyard_<extra>_total` | counter | adapter | each `TransportStats::extra` counter, `.` as `_`: `switchyard_pubsub_gaps_total`, `switchyard_pubsub_self_echoes_total`, `switchyard_pubsub_malformed_total`, ... |
//! | `switchyard_<extra>` | gauge | adapter | each `TransportStats::extra_gauges` value: `switchyard_pubsub_outbox_len` |
//! | `switchyard_consumer_lag` | gauge | adapter, topic, group | `GroupInfo::lag`: entries not yet delivered to the group (set where the backend knows it) |
//! | `switchyard_consumer_pending` | gauge | adapter, topic, group | `GroupInfo::pending`: delivered, not settled |
//!
//! The `adapter`-only metrics come from [`record_stats`](super::record_stats)
//! (absolute values of the transport's own counters); the lag and pending
//! gauges from [`collect_lag`](super::collect_lag).

/// Messages accepted (counter; adapter, topic).
pub const PUBLISHED: &str = "switchyard_published_total";
/// Messages whose publish failed (counter; adapter, topic).
pub const PUBLISH_ERRORS: &str = "switchyard_publish_errors_total";
/// Publish latency in seconds (histogram; adapter, topic).
pub const PUBLISH_DURATION: &str = "switchyard_publish_duration_seconds";
/// Deliveries handed to the application (counter; adapter, topic, group).
pub const DELIVERED: &str = "switchyard_delivered_total";
/// Deliveries acked (counter; adapter, topic, group).
pub const ACKED: &str = "switchyard_acked_total";
/// Deliveries nacked, dead-letter requests included (counter).
pub const NACKED: &str = "switchyard_nacked_total";
/// Deliveries with attempt > 1 (counter).
pub const REDELIVERED: &str = "switchyard_redelivered_total";
/// Messages moved to a dead-letter topic (counter).
pub const DEAD_LETTERED: &str = "switchyard_dead_lettered_total";
/// Messages dropped by a subscriber's overflow policy (counter).
pub const DROPPED: &str = "switchyard_dropped_total";
/// Payloads that failed to decode in the typed layer (counter).
pub const DECODE_ERRORS: &str = "switchyard_decode_errors_total";
/// Malformed entries skipped or dead-lettered (counter).
pub const MALFORMED: &str = "switchyard_malformed_total";
/// Messages reported lost by gap signals (counter).
pub const LOST: &str = "switchyard_lost_total";
/// Pending messages trimmed by retention before delivery (counter).
pub const LOST_TO_RETENTION: &str = "switchyard_lost_to_retention_total";
/// Deliveries in local buffers now (gauge; adapter, topic, group).
pub const SUBSCRIBER_BUFFERED: &str = "switchyard_subscriber_buffered";
/// Capacity of those local buffers (gauge; adapter, topic, group).
pub const SUBSCRIBER_CAPACITY: &str = "switchyard_subscriber_capacity";
/// Messages dropped before reaching the backend (counter; adapter).
pub const PUBLISH_DROPPED: &str = "switchyard_publish_dropped_total";
/// Reconnections (counter; adapter).
pub const RECONNECTS: &str = "switchyard_reconnects_total";
/// Publishes refused by the open circuit breaker (counter; adapter).
pub const BREAKER_REJECTIONS: &str = "switchyard_breaker_rejections_total";
/// 1 while the circuit breaker is open (gauge; adapter).
pub const BREAKER_OPEN: &str = "switchyard_breaker_open";
/// Entries not yet delivered to a group (gauge; adapter, topic, group).
pub const CONSUMER_LAG: &str = "switchyard_consumer_lag";
/// Deliveries of a group not settled yet (gauge; adapter, topic, group).
pub const CONSUMER_PENDING: &str = "switchyard_consumer_pending";

/// The counter name of an adapter-specific counter of
/// `TransportStats::extra`: `pubsub.gaps` → `switchyard_pubsub_gaps_total`.
pub fn extra_counter(name: &str) -> String {
    format!("switchyard_{}_total", sanitize(name))
}

/// The gauge name of an adapter-specific snapshot of
/// `TransportStats::extra_gauges`: `pubsub.outbox_len` →
/// `switchyard_pubsub_outbox_len`.
pub fn extra_gauge(name: &str) -> String {
    format!("switchyard_{}", sanitize(name))
}

/// Characters outside `[a-zA-Z0-9_]` as `_`.
fn sanitize(name: &str) -> String {
    name.chars()
        .map(|c| if c.is_ascii_alphanumeric() { c } else { '_' })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn extra_names() {
        assert_eq!(extra_counter("pubsub.gaps"), "switchyard_pubsub_gaps_total");
        assert_eq!(
            extra_gauge("pubsub.outbox_len"),
            "switchyard_pubsub_outbox_len"
        );
        assert_eq!(extra_counter("a-b.c"), "switchyard_a_b_c_total");
    }
}
