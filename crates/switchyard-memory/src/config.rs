//! Configuration of a memory hub.

use std::time::Duration;

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
    /// Most messages retained per topic (at least 1; default 100 000). Older
    /// ones are trimmed; replay (`Earliest`, `After`) and groups read from
    /// what is retained.
    pub retention: usize,
    /// Most messages retained per dead-letter topic (`{topic}:dlq`; at least
    /// 1; default 100 000).
    pub dead_letter_retention: usize,
    /// How often expired ack deadlines and due delayed retries are scanned
    /// (default 50 ms). A timed-out or `nack(After(d))` message comes back at
    /// most one tick late.
    pub redelivery_tick: Duration,
}

impl MemoryConfig {
    /// Default retained messages per topic.
    pub const DEFAULT_RETENTION: usize = 100_000;
    /// Default redelivery tick.
    pub const DEFAULT_REDELIVERY_TICK: Duration = Duration::from_millis(50);

    /// Sets [`retention`](MemoryConfig::retention) (values below 1 count as 1).
    pub fn with_retention(mut self, messages: usize) -> Self {
        self.retention = messages.max(1);
        self
    }

    /// Sets [`dead_letter_retention`](MemoryConfig::dead_letter_retention)
    /// (values below 1 count as 1).
    pub fn with_dead_letter_retention(mut self, messages: usize) -> Self {
        self.dead_letter_retention = messages.max(1);
        self
    }

    /// Sets [`redelivery_tick`](MemoryConfig::redelivery_tick) (at least 1 ms).
    pub fn with_redelivery_tick(mut self, tick: Duration) -> Self {
        self.redelivery_tick = tick.max(Duration::from_millis(1));
        self
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
