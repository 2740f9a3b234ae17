//! Configuration of a memory hub.

use std::time::Duration;

use switchyard_core::{Error, Result, Retention, RetentionRules, Topic, TopicFilter};

/// Settings of a memory hub. Every transport on the hub shares them.
///
/// ```
/// use std::time::Duration;
/// use switchyard_memory::MemoryConfig;
/// let cfg = MemoryConfig::default()
///     .with_retention(1_000)
///     .with_redelivery_tick(Duration::from_millis(10));
/// assert_eq!(cfg.retention, 1_000);
/// ```
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct MemoryConfig {
    /// Most messages retained per topic: 1 to
    /// [`MemoryConfig::MAX_RETENTION`] (100 000 000; default 100 000). Older
    /// ones are trimmed; replay (`Earliest`, `After`) and groups read from
    /// what is retained. In the URL and [`with_retention`](Self::with_retention),
    /// 0 means "no cap", which for this bounded adapter is
    /// [`MemoryConfig::MAX_RETENTION`]. The fallback for topics no
    /// [`topic_retention`](Self::topic_retention) rule matches.
    pub retention: usize,
    /// Most messages retained per dead-letter topic (`{topic}:dlq`): 1 to
    /// [`MemoryConfig::MAX_RETENTION`] (default 100 000; 0 in the URL and
    /// the builder means [`MemoryConfig::MAX_RETENTION`]).
    pub dead_letter_retention: usize,
    /// Per-topic retention (URL: repeated `retain=<filter>:<spec>`, see
    /// [`switchyard_core::retention`]; at most 256 rules). The most
    /// specific matching rule replaces `retention` for its topics: its
    /// length cap is exact, and one of 0, none, or above
    /// [`MemoryConfig::MAX_RETENTION`] keeps
    /// [`MemoryConfig::MAX_RETENTION`] messages (the hub stays bounded);
    /// its age cap drops messages older than the age when the topic is
    /// next published to, subscribed to or read by a group, so they are
    /// never replayed. Dead-letter topics follow a rule only when it names
    /// them (`orders:dlq`, `orders.*:dlq`), else `dead_letter_retention`.
    /// Rules apply to topics created after the hub (a named hub keeps the
    /// configuration it was created with). Default: no rules.
    pub topic_retention: RetentionRules,
    /// How often expired ack deadlines and due delayed retries are scanned:
    /// 1 ms to 1 min (default 50 ms). A timed-out or `nack(After(d))`
    /// message comes back at most one tick late.
    pub redelivery_tick: Duration,
}

impl MemoryConfig {
    /// Default retained messages per topic.
    pub const DEFAULT_RETENTION: usize = 100_000;
    /// Largest `retention` and `dead_letter_retention`.
    pub const MAX_RETENTION: usize = 100_000_000;
    /// Default redelivery tick.
    pub const DEFAULT_REDELIVERY_TICK: Duration = Duration::from_millis(50);
    /// Shortest redelivery tick.
    pub const MIN_REDELIVERY_TICK: Duration = Duration::from_millis(1);
    /// Longest redelivery tick.
    pub const MAX_REDELIVERY_TICK: Duration = Duration::from_secs(60);

    /// Sets [`retention`](MemoryConfig::retention), brought into its range
    /// (1 to [`MemoryConfig::MAX_RETENTION`]); 0 means no cap, which is
    /// [`MemoryConfig::MAX_RETENTION`].
    pub fn with_retention(mut self, messages: usize) -> Self {
        self.retention = bounded(messages);
        self
    }

    /// Sets [`dead_letter_retention`](MemoryConfig::dead_letter_retention),
    /// brought into its range (1 to [`MemoryConfig::MAX_RETENTION`]); 0
    /// means [`MemoryConfig::MAX_RETENTION`].
    pub fn with_dead_letter_retention(mut self, messages: usize) -> Self {
        self.dead_letter_retention = bounded(messages);
        self
    }

    /// Adds a per-topic retention rule (see
    /// [`topic_retention`](Self::topic_retention)). Fails when the filter
    /// already has a rule, past 256 rules, or on a cap out of range.
    ///
    /// ```
    /// use std::time::Duration;
    /// use switchyard_core::Retention;
    /// use switchyard_memory::MemoryConfig;
    /// let cfg = MemoryConfig::default()
    ///     .with_topic_retention("*/camera/rgb".parse()?, Retention::max_len_of(60))?
    ///     .with_topic_retention("*/scan".parse()?, Retention::max_age_of(Duration::from_secs(60)))?;
    /// assert_eq!(cfg.topic_retention.len(), 2);
    /// # Ok::<(), switchyard_core::Error>(())
    /// ```
    pub fn with_topic_retention(
        mut self,
        filter: TopicFilter,
        retention: Retention,
    ) -> Result<Self> {
        self.topic_retention.push(filter, retention)?;
        Ok(self)
    }

    /// The most messages kept on `topic` and the age past which they are
    /// dropped: its rule, else `retention` / `dead_letter_retention`.
    pub(crate) fn limits_for(&self, topic: &Topic) -> (usize, Option<Duration>) {
        match self.topic_retention.for_topic(topic) {
            Some(r) => {
                let count = r.max_len().map_or(Self::MAX_RETENTION, |n| {
                    usize::try_from(n).map_or(Self::MAX_RETENTION, bounded)
                });
                (count, r.max_age())
            }
            None if topic.is_dead_letter() => (self.dead_letter_retention, None),
            None => (self.retention, None),
        }
    }

    /// Sets [`redelivery_tick`](MemoryConfig::redelivery_tick), brought into
    /// its range (1 ms to 1 min).
    pub fn with_redelivery_tick(mut self, tick: Duration) -> Self {
        self.redelivery_tick = tick.clamp(Self::MIN_REDELIVERY_TICK, Self::MAX_REDELIVERY_TICK);
        self
    }

    /// Checks every value against its range. The `memory://` URL parser
    /// runs it (a value out of range in a URL is an error); a config built
    /// in code is brought into range instead when its hub is created (the
    /// builders above do the same), since `MemoryTransport::with_config`
    /// cannot fail.
    ///
    /// ```
    /// use switchyard_memory::MemoryConfig;
    /// let mut cfg = MemoryConfig::default();
    /// assert!(cfg.validate().is_ok());
    /// cfg.retention = usize::MAX;
    /// assert!(cfg.validate().is_err());
    /// ```
    pub fn validate(&self) -> Result<()> {
        for (name, value) in [
            ("retention", self.retention),
            ("dead_letter_retention", self.dead_letter_retention),
        ] {
            if !(1..=Self::MAX_RETENTION).contains(&value) {
                return Err(Error::InvalidConfig(format!(
                    "{name} must be 1 to {}, got {value}",
                    Self::MAX_RETENTION
                )));
            }
        }
        if !(Self::MIN_REDELIVERY_TICK..=Self::MAX_REDELIVERY_TICK).contains(&self.redelivery_tick)
        {
            return Err(Error::InvalidConfig(format!(
                "redelivery_tick must be 1ms to 1m (redelivery_tick_ms 1 to 60000), got {:?}",
                self.redelivery_tick
            )));
        }
        Ok(())
    }

    /// The same settings with every value in its valid range.
    pub(crate) fn normalized(self) -> Self {
        let tick = self.redelivery_tick;
        let (r, d) = (self.retention, self.dead_letter_retention);
        self.with_retention(r)
            .with_dead_letter_retention(d)
            .with_redelivery_tick(tick)
    }
}

impl Default for MemoryConfig {
    fn default() -> Self {
        MemoryConfig {
            retention: Self::DEFAULT_RETENTION,
            dead_letter_retention: Self::DEFAULT_RETENTION,
            redelivery_tick: Self::DEFAULT_REDELIVERY_TICK,
            topic_retention: RetentionRules::new(),
        }
    }
}

/// A count of messages in 1 to `MAX_RETENTION`, 0 meaning the largest.
fn bounded(messages: usize) -> usize {
    if messages == 0 {
        MemoryConfig::MAX_RETENTION
    } else {
        messages.min(MemoryConfig::MAX_RETENTION)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn builders_bring_values_into_range() {
        let c = MemoryConfig::default()
            .with_retention(usize::MAX)
            .with_dead_letter_retention(0)
            .with_redelivery_tick(Duration::MAX);
        assert_eq!(c.retention, MemoryConfig::MAX_RETENTION);
        // 0 means no cap: the largest retention.
        assert_eq!(c.dead_letter_retention, MemoryConfig::MAX_RETENTION);
        assert_eq!(c.redelivery_tick, MemoryConfig::MAX_REDELIVERY_TICK);
        assert!(c.validate().is_ok());
        let raw = MemoryConfig {
            redelivery_tick: Duration::MAX,
            retention: 0,
            ..MemoryConfig::default()
        };
        assert!(raw.validate().is_err());
        let n = raw.normalized();
        assert!(n.validate().is_ok());
        assert_eq!(n.redelivery_tick, MemoryConfig::MAX_REDELIVERY_TICK);
        assert_eq!(n.retention, MemoryConfig::MAX_RETENTION);
    }

    #[test]
    fn limits_per_topic() {
        let cfg = MemoryConfig::default()
            .with_retention(10)
            .with_dead_letter_retention(5)
            .with_topic_retention("*/rgb".parse().unwrap(), Retention::max_len_of(3))
            .unwrap()
            .with_topic_retention("a/rgb".parse().unwrap(), Retention::UNLIMITED)
            .unwrap()
            .with_topic_retention(
                "*/scan".parse().unwrap(),
                Retention::max_len_of(u64::MAX >> 1).with_max_age(Duration::from_secs(2)),
            )
            .unwrap()
            .with_topic_retention("x:dlq".parse().unwrap(), Retention::max_len_of(2))
            .unwrap();
        let of = |t: &str| cfg.limits_for(&Topic::new(t).unwrap());
        assert_eq!(of("r/rgb"), (3, None));
        assert_eq!(of("a/rgb"), (MemoryConfig::MAX_RETENTION, None));
        assert_eq!(
            of("r/scan"),
            (MemoryConfig::MAX_RETENTION, Some(Duration::from_secs(2)))
        );
        assert_eq!(of("odom"), (10, None));
        assert_eq!(of("odom:dlq"), (5, None));
        assert_eq!(of("x:dlq"), (2, None));
        assert!(cfg.clone().normalized() == cfg);
    }
}
