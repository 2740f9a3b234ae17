//! Metrics through the [`metrics`](https://docs.rs/metrics) facade crate
//! (feature `metrics`): counters, gauges and a publish latency histogram
//! for whatever recorder the application installs (the Prometheus
//! exporter `metrics-exporter-prometheus`, StatsD, an OpenTelemetry
//! bridge...). Without a recorder every update is a no-op.
//!
//! Why `metrics` and not OpenTelemetry metrics: it is the facade most Rust
//! services already use (as `tracing` is for logs), a library only calls
//! `counter!`/`gauge!`/`histogram!` and leaves the exporter to the
//! application, it adds one small dependency, and it costs next to nothing
//! until a recorder is installed. OpenTelemetry users bridge it to an OTLP
//! exporter with `metrics-exporter-opentelemetry`.
//!
//! Three pieces, each optional:
//! - [`instrument`] wraps a transport: publishes are counted and timed per
//!   topic, and each subscriber's counters ([`SubscriberStats`]) become
//!   counters labelled by topic filter and group.
//! - [`record_stats`] turns [`Transport::stats`] (reconnects, breaker,
//!   outbox drops, every adapter-specific counter such as `pubsub.gaps`)
//!   into counters and gauges. The instrumented transport calls it on every
//!   [`stats`](Transport::stats) call.
//! - [`collect_lag`] sets consumer lag and pending gauges from
//!   [`Transport::topics`] (Redis Streams: `XINFO GROUPS`). It asks the
//!   backend, so it runs on demand (before a scrape) or periodically with
//!   [`spawn_collector`], which also calls [`record_stats`].
//!
//! Every metric, its type and labels are listed in [`names`]. Labels:
//! `adapter` (`memory`, `redis-streams`, `redis-pubsub`), `topic` (a topic,
//! or for subscribers the filter as written: `orders.*`, `a,b`) and `group`
//! (empty for fan-out subscribers). A transport keeps at most
//! [`MetricsConfig::max_topics`] distinct `topic` values (default
//! [`MetricsConfig::DEFAULT_MAX_TOPICS`]); the others are counted under
//! `topic="other"`, so a service that publishes to a topic per user cannot
//! flood the metrics backend.
//!
//! Install the recorder before instrumenting: handles are taken when a
//! topic or subscriber is first seen.
//!
//! ```
//! use switchyard::metrics::{MetricsConfig, instrument_with};
//! use switchyard::{Message, Topic};
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> switchyard::Result<()> {
//! // metrics::set_global_recorder(...) first (e.g. a Prometheus recorder).
//! let transport = instrument_with(
//!     switchyard::connect("memory://").await?,
//!     MetricsConfig::new().with_max_topics(50),
//! )?;
//! transport.publish(Message::new(Topic::new("orders")?, "hi")).await?;
//! # Ok(())
//! # }
//! ```
//!
//! [`SubscriberStats`]: crate::SubscriberStats

mod collect;
mod labels;
pub mod names;
mod subscriber;
mod transport;

pub use collect::{
    MAX_COLLECT_INTERVAL, MIN_COLLECT_INTERVAL, collect_lag, record_stats, spawn_collector,
};
pub use transport::Metered;

use std::sync::Arc;

use crate::{Error, Result, Transport};

/// Settings of the instrumentation.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct MetricsConfig {
    /// Most distinct `topic` label values one instrumented transport (or
    /// one [`collect_lag`] call) uses; the rest go to `topic="other"`.
    /// 1 ..= [`MAX_MAX_TOPICS`](Self::MAX_MAX_TOPICS).
    pub max_topics: usize,
}

impl MetricsConfig {
    /// Default [`max_topics`](Self::max_topics): 100.
    pub const DEFAULT_MAX_TOPICS: usize = 100;
    /// Largest accepted [`max_topics`](Self::max_topics): 10,000.
    pub const MAX_MAX_TOPICS: usize = 10_000;
    /// The `topic` label value of the topics past the limit.
    pub const OTHER_TOPIC: &'static str = "other";

    /// The defaults.
    pub fn new() -> Self {
        MetricsConfig {
            max_topics: Self::DEFAULT_MAX_TOPICS,
        }
    }

    /// Sets [`max_topics`](Self::max_topics).
    pub fn with_max_topics(mut self, max_topics: usize) -> Self {
        self.max_topics = max_topics;
        self
    }

    /// Checks every setting against its documented range.
    pub fn validate(&self) -> Result<()> {
        if !(1..=Self::MAX_MAX_TOPICS).contains(&self.max_topics) {
            return Err(Error::InvalidConfig(format!(
                "metrics max_topics is {}: use 1 ..= {} distinct topic labels (the rest are counted as \"{}\")",
                self.max_topics,
                Self::MAX_MAX_TOPICS,
                Self::OTHER_TOPIC
            )));
        }
        Ok(())
    }
}

impl Default for MetricsConfig {
    fn default() -> Self {
        Self::new()
    }
}

/// Wraps `transport` with the default [`MetricsConfig`]: see the
/// [module](self) docs.
pub fn instrument(transport: Arc<dyn Transport>) -> Arc<dyn Transport> {
    Arc::new(Metered::new(transport, MetricsConfig::new()))
}

/// Wraps `transport` with `config` (checked first): see the
/// [module](self) docs.
pub fn instrument_with(
    transport: Arc<dyn Transport>,
    config: MetricsConfig,
) -> Result<Arc<dyn Transport>> {
    config.validate()?;
    Ok(Arc::new(Metered::new(transport, config)))
}

/// [`instrument_with`] as a [`Layer`](crate::Layer), to stack with the
/// others (`switchyard::layers().with(MetricsLayer::new(config)?)…`).
///
/// ```
/// use switchyard::metrics::{MetricsConfig, MetricsLayer};
///
/// # async fn run() -> switchyard::Result<()> {
/// let bus = switchyard::layers()
///     .with(MetricsLayer::new(MetricsConfig::new().with_max_topics(500))?)
///     .apply(switchyard::connect("memory://").await?);
/// # drop(bus);
/// # Ok(()) }
/// ```
#[derive(Clone, Debug)]
pub struct MetricsLayer {
    config: MetricsConfig,
}

impl MetricsLayer {
    /// A layer instrumenting with `config` (checked here).
    pub fn new(config: MetricsConfig) -> Result<Self> {
        config.validate()?;
        Ok(MetricsLayer { config })
    }
}

impl crate::Layer for MetricsLayer {
    fn layer(&self, inner: Arc<dyn Transport>) -> Arc<dyn Transport> {
        Arc::new(Metered::new(inner, self.config.clone()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_layer_checks_its_config() {
        assert!(MetricsLayer::new(MetricsConfig::new()).is_ok());
        assert!(MetricsLayer::new(MetricsConfig::new().with_max_topics(0)).is_err());
    }

    #[test]
    fn max_topics_range() {
        assert!(MetricsConfig::new().validate().is_ok());
        assert!(MetricsConfig::new().with_max_topics(1).validate().is_ok());
        assert!(
            MetricsConfig::new()
                .with_max_topics(10_000)
                .validate()
                .is_ok()
        );
        for bad in [0, 10_001] {
            let e = MetricsConfig::new()
                .with_max_topics(bad)
                .validate()
                .unwrap_err();
            assert!(e.to_string().contains("1 ..= 10000"), "{e}");
        }
    }
}
