//! Metrics from a transport's stats and topics: [`record_stats`],
//! [`collect_lag`], [`spawn_collector`].

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use ::metrics::Label;

use super::labels::admit;
use super::{MetricsConfig, names};
use crate::{Error, Result, TopicFilter, Transport, TransportStats};

/// Sets the `adapter`-labelled metrics of [`names`] from
/// [`Transport::stats`]: the transport's own counters as absolute values
/// (reconnects, breaker rejections, outbox drops, every
/// `TransportStats::extra` counter as `switchyard_<name>_total`) and its
/// gauges (breaker open, every `extra_gauges` value). An instrumented
/// transport does this on each `stats()` call.
///
/// The labels name the adapter, not the transport: with two transports of
/// one adapter in a process, record one of them (or instrument one).
pub fn record_stats(transport: &dyn Transport) {
    record(transport.name(), &transport.stats());
}

/// [`record_stats`] from stats already read.
pub(super) fn record(adapter: &'static str, stats: &TransportStats) {
    let labels = [Label::new("adapter", adapter)];
    ::metrics::counter!(names::PUBLISH_DROPPED, labels.iter()).absolute(stats.dropped);
    ::metrics::counter!(names::RECONNECTS, labels.iter()).absolute(stats.reconnects);
    ::metrics::counter!(names::BREAKER_REJECTIONS, labels.iter())
        .absolute(stats.breaker_rejections);
    ::metrics::gauge!(names::BREAKER_OPEN, labels.iter())
        .set(f64::from(u8::from(stats.breaker_open)));
    for (name, value) in &stats.extra {
        ::metrics::counter!(names::extra_counter(name), labels.iter()).absolute(*value);
    }
    for (name, value) in &stats.extra_gauges {
        ::metrics::gauge!(names::extra_gauge(name), labels.iter()).set(*value as f64);
    }
}

/// Sets `switchyard_consumer_lag` and `switchyard_consumer_pending` for
/// every consumer group of the topics matching `filter`, from
/// [`Transport::topics`] (Redis Streams: `XINFO GROUPS`; lag only where
/// Redis reports it, 7.0 and later). At most `config.max_topics` topics get
/// their own `topic` label (in the sorted order `topics` returns); the
/// groups of the others are summed under `topic="other"`. Returns how many
/// (topic, group) series were set.
///
/// It asks the backend, so call it before a scrape or periodically
/// ([`spawn_collector`]), not per message. Adapters that keep no topics
/// (the Pub/Sub backplane) fail with `Error::Unsupported`.
pub async fn collect_lag(
    transport: &dyn Transport,
    filter: &TopicFilter,
    config: &MetricsConfig,
) -> Result<usize> {
    config.validate()?;
    let topics = transport.topics(filter).await?;
    let mut taken = Vec::new();
    // (topic label, group) -> (lag, any lag known, pending)
    let mut series: BTreeMap<(String, String), (u64, bool, u64)> = BTreeMap::new();
    for info in &topics {
        if info.groups.is_empty() {
            continue;
        }
        let label = admit(&mut taken, config.max_topics, info.topic.as_str()).to_owned();
        for g in &info.groups {
            let e = series
                .entry((label.clone(), g.name.clone()))
                .or_insert((0, false, 0));
            if let Some(lag) = g.lag {
                e.0 = e.0.saturating_add(lag);
                e.1 = true;
            }
            e.2 = e.2.saturating_add(g.pending);
        }
    }
    let adapter = transport.name();
    for ((topic, group), (lag, lag_known, pending)) in &series {
        let labels = [
            Label::new("adapter", adapter),
            Label::new("topic", topic.clone()),
            Label::new("group", group.clone()),
        ];
        if *lag_known {
            ::metrics::gauge!(names::CONSUMER_LAG, labels.iter()).set(*lag as f64);
        }
        ::metrics::gauge!(names::CONSUMER_PENDING, labels.iter()).set(*pending as f64);
    }
    Ok(series.len())
}

/// Shortest accepted [`spawn_collector`] interval: 100 ms.
pub const MIN_COLLECT_INTERVAL: Duration = Duration::from_millis(100);
/// Longest accepted [`spawn_collector`] interval: 1 hour.
pub const MAX_COLLECT_INTERVAL: Duration = Duration::from_secs(3600);

/// Every `interval` (100 ms ..= 1 h), [`record_stats`] and, when `filter`
/// is given, [`collect_lag`] (a failure is logged at debug level and the
/// next round tries again). Runs on the current tokio runtime until the
/// returned task is aborted: abort it when closing the transport. Fails at
/// once when `interval` or `config` is out of range.
pub fn spawn_collector(
    transport: Arc<dyn Transport>,
    filter: Option<TopicFilter>,
    config: MetricsConfig,
    interval: Duration,
) -> Result<tokio::task::JoinHandle<()>> {
    config.validate()?;
    if !(MIN_COLLECT_INTERVAL..=MAX_COLLECT_INTERVAL).contains(&interval) {
        return Err(Error::InvalidConfig(format!(
            "metrics collector interval is {interval:?}: use 100ms ..= 1h"
        )));
    }
    Ok(tokio::spawn(async move {
        let mut tick = tokio::time::interval(interval);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tick.tick().await;
            record_stats(transport.as_ref());
            if let Some(filter) = &filter
                && let Err(e) = collect_lag(transport.as_ref(), filter, &config).await
            {
                tracing::debug!(error = %e, "collecting consumer lag failed");
            }
        }
    }))
}
