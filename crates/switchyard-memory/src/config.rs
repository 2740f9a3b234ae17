//! Configuration of a memory hub.

use std::time::Duration;

use switchyard_core::{Error, Result};

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
    /// what is retained.
    pub retention: usize,
    /// Most messages retained per dead-letter topic (`{topic}:dlq`): 1 to
    /// [`MemoryConfig::MAX_RETENTION`] (default 100 000).
    pub dead_letter_retention: usize,
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
    /// (1 to [`MemoryConfig::MAX_RETENTION`]).
    pub fn with_retention(mut self, messages: usize) -> Self {
        self.retention = messages.clamp(1, Self::MAX_RETENTION);
        self
    }

    /// Sets [`dead_letter_retention`](MemoryConfig::dead_letter_retention),
    /// brought into its range (1 to [`MemoryConfig::MAX_RETENTION`]).
    pub fn with_dead_letter_retention(mut self, messages: usize) -> Self {
        self.dead_letter_retention = messages.clamp(1, Self::MAX_RETENTION);
        self
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
        }
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
        assert_eq!(c.dead_letter_retention, 1);
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
    }
}
