//! Settings of the Redis Streams adapter.

use std::time::Duration;

use switchyard_core::{Error, Result};
use switchyard_redis::RedisConfig;

/// URL parameters this adapter understands (beyond `namespace`,
/// `connect_timeout` and `response_timeout`, which [`RedisConfig`] takes).
pub const URL_PARAMS: &[&str] = &[
    "maxlen",
    "retention",
    "block",
    "read_count",
    "writer_queue",
    "writer_batch",
    "writer_in_flight",
    "claim_interval",
    "consumer_idle_cleanup",
    "pattern_rescan",
    "breaker_threshold",
    "breaker_cool_down",
];

/// Settings of a [`RedisStreamsTransport`](crate::RedisStreamsTransport).
///
/// Parse them from a URL with [`StreamsConfig::from_url`]:
///
/// ```text
/// redis+streams://[user[:password]@]host[:port][/db]?namespace=app&maxlen=100000&block=1s
/// ```
///
/// or build them in code:
///
/// ```
/// use std::time::Duration;
/// use switchyard_redis::RedisConfig;
/// use switchyard_redis_streams::StreamsConfig;
/// let cfg = StreamsConfig::new(RedisConfig::new("127.0.0.1", 6379).with_namespace("app"))
///     .with_maxlen(Some(100_000))
///     .with_block(Duration::from_millis(500));
/// assert_eq!(cfg.maxlen, Some(100_000));
/// ```
#[derive(Clone, Debug)]
#[non_exhaustive]
pub struct StreamsConfig {
    /// Where Redis is, credentials, namespace, connect and response timeouts.
    pub redis: RedisConfig,
    /// Approximate cap on each stream's length: `XADD ... MAXLEN ~ N`
    /// (URL `maxlen`). `None` (default): no length cap.
    pub maxlen: Option<u64>,
    /// Approximate age cap: `XADD ... MINID ~ <now - age>` (URL `retention`,
    /// e.g. `retention=1440m` for a day; units are `ms`, `s` and `m`).
    /// Ignored when `maxlen` is set. `None` (default): no age cap.
    pub min_id_age: Option<Duration>,
    /// How long one `XREAD`/`XREADGROUP` blocks waiting for entries
    /// (URL `block`, default 1 s). The dedicated reading connection's
    /// response timeout is this plus 2 s. It also bounds how long a reader
    /// takes to notice `close`.
    pub block: Duration,
    /// Entries fetched per read (`COUNT`, URL `read_count`, default 512).
    pub read_count: usize,
    /// Capacity of the bounded publish queue in front of the writer task
    /// (URL `writer_queue`, default 8192). When full, `publish` waits.
    pub writer_queue: usize,
    /// Most `XADD`s in one pipeline (URL `writer_batch`, default 512).
    pub writer_batch: usize,
    /// Most pipelines in flight at once (URL `writer_in_flight`, default 4).
    pub writer_in_flight: usize,
    /// How often a group consumer looks for stale entries of crashed
    /// members with `XAUTOCLAIM` (URL `claim_interval`). `None` (default):
    /// half the subscription's ack timeout, at most 1 s.
    pub claim_interval: Option<Duration>,
    /// Consumers with nothing pending that were idle longer than this are
    /// removed from their group (URL `consumer_idle_cleanup`, default 1 h).
    pub consumer_idle_cleanup: Duration,
    /// How often pattern subscriptions rescan for new streams with `SCAN`
    /// (URL `pattern_rescan`, default 1 s): a stream created after the
    /// subscription is found within about this delay.
    pub pattern_rescan: Duration,
    /// Consecutive failed publish pipelines that open the circuit breaker
    /// (URL `breaker_threshold`, default 5).
    pub breaker_threshold: u32,
    /// How long the open breaker refuses publishes before a trial
    /// (URL `breaker_cool_down`, default 1 s).
    pub breaker_cool_down: Duration,
}

impl StreamsConfig {
    /// Settings for `redis` with every adapter setting at its default.
    pub fn new(redis: RedisConfig) -> Self {
        StreamsConfig {
            redis,
            maxlen: None,
            min_id_age: None,
            block: Duration::from_secs(1),
            read_count: 512,
            writer_queue: 8192,
            writer_batch: 512,
            writer_in_flight: 4,
            claim_interval: None,
            consumer_idle_cleanup: Duration::from_secs(3600),
            pattern_rescan: Duration::from_secs(1),
            breaker_threshold: 5,
            breaker_cool_down: Duration::from_secs(1),
        }
    }

    /// Parses a `redis+streams://` or `rediss+streams://` URL, taking the
    /// parameters in [`URL_PARAMS`] and rejecting unknown ones.
    pub fn from_url(url: &str) -> Result<Self> {
        let mut redis = RedisConfig::from_url(url)?;
        let mut cfg = StreamsConfig::new(RedisConfig::new(String::new(), 0));
        cfg.maxlen = redis.take_u64("maxlen")?;
        cfg.min_id_age = redis.take_duration("retention")?;
        if let Some(v) = redis.take_duration("block")? {
            cfg.block = v;
        }
        if let Some(v) = redis.take_u64("read_count")? {
            cfg.read_count = to_usize("read_count", v)?;
        }
        if let Some(v) = redis.take_u64("writer_queue")? {
            cfg.writer_queue = to_usize("writer_queue", v)?;
        }
        if let Some(v) = redis.take_u64("writer_batch")? {
            cfg.writer_batch = to_usize("writer_batch", v)?;
        }
        if let Some(v) = redis.take_u64("writer_in_flight")? {
            cfg.writer_in_flight = to_usize("writer_in_flight", v)?;
        }
        cfg.claim_interval = redis.take_duration("claim_interval")?;
        if let Some(v) = redis.take_duration("consumer_idle_cleanup")? {
            cfg.consumer_idle_cleanup = v;
        }
        if let Some(v) = redis.take_duration("pattern_rescan")? {
            cfg.pattern_rescan = v;
        }
        if let Some(v) = redis.take_u64("breaker_threshold")? {
            cfg.breaker_threshold = u32::try_from(v).map_err(|_| {
                Error::InvalidConfig(format!("url parameter breaker_threshold: {v} is too large"))
            })?;
        }
        if let Some(v) = redis.take_duration("breaker_cool_down")? {
            cfg.breaker_cool_down = v;
        }
        redis.reject_unknown_params(URL_PARAMS)?;
        cfg.redis = redis;
        cfg.validate()?;
        Ok(cfg)
    }

    /// Checks the settings; [`connect`](crate::RedisStreamsTransport::connect) calls it.
    pub fn validate(&self) -> Result<()> {
        let positive = |name: &str, v: usize| {
            if v == 0 {
                Err(Error::InvalidConfig(format!("{name} must be at least 1")))
            } else {
                Ok(())
            }
        };
        positive("read_count", self.read_count)?;
        positive("writer_queue", self.writer_queue)?;
        positive("writer_batch", self.writer_batch)?;
        positive("writer_in_flight", self.writer_in_flight)?;
        if self.maxlen == Some(0) {
            return Err(Error::InvalidConfig(
                "maxlen must be at least 1 (leave it unset for no cap)".into(),
            ));
        }
        if self.block.is_zero() {
            // BLOCK 0 means "forever" to Redis: the reader could never notice close.
            return Err(Error::InvalidConfig("block must be positive".into()));
        }
        if self.pattern_rescan.is_zero() {
            return Err(Error::InvalidConfig(
                "pattern_rescan must be positive".into(),
            ));
        }
        if self.claim_interval.is_some_and(|d| d.is_zero()) {
            return Err(Error::InvalidConfig(
                "claim_interval must be positive".into(),
            ));
        }
        switchyard_redis::validate_namespace(&self.redis.namespace)
            .map_err(Error::InvalidConfig)?;
        Ok(())
    }

    /// Sets the approximate length cap (`MAXLEN ~ N`).
    pub fn with_maxlen(mut self, maxlen: Option<u64>) -> Self {
        self.maxlen = maxlen;
        self
    }

    /// Sets the approximate age cap (`MINID ~ now - age`).
    pub fn with_min_id_age(mut self, age: Option<Duration>) -> Self {
        self.min_id_age = age;
        self
    }

    /// Sets the XREAD / XREADGROUP block time.
    pub fn with_block(mut self, block: Duration) -> Self {
        self.block = block;
        self
    }

    /// Sets the entries fetched per read.
    pub fn with_read_count(mut self, count: usize) -> Self {
        self.read_count = count;
        self
    }

    /// Sets the capacity of the publish queue.
    pub fn with_writer_queue(mut self, capacity: usize) -> Self {
        self.writer_queue = capacity;
        self
    }

    /// Sets the most XADDs per pipeline.
    pub fn with_writer_batch(mut self, batch: usize) -> Self {
        self.writer_batch = batch;
        self
    }

    /// Sets the most pipelines in flight.
    pub fn with_writer_in_flight(mut self, in_flight: usize) -> Self {
        self.writer_in_flight = in_flight;
        self
    }

    /// Sets how often stale entries are claimed (`None`: from the ack timeout).
    pub fn with_claim_interval(mut self, interval: Option<Duration>) -> Self {
        self.claim_interval = interval;
        self
    }

    /// Sets after how long idle consumers with nothing pending are removed.
    pub fn with_consumer_idle_cleanup(mut self, idle: Duration) -> Self {
        self.consumer_idle_cleanup = idle;
        self
    }

    /// Sets the pattern rescan interval.
    pub fn with_pattern_rescan(mut self, interval: Duration) -> Self {
        self.pattern_rescan = interval;
        self
    }

    /// Sets the circuit breaker's failure threshold and cool-down.
    pub fn with_breaker(mut self, threshold: u32, cool_down: Duration) -> Self {
        self.breaker_threshold = threshold;
        self.breaker_cool_down = cool_down;
        self
    }

    /// The response timeout of a dedicated blocking connection: block + 2 s.
    pub fn blocking_response_timeout(&self) -> Duration {
        self.block.saturating_add(Duration::from_secs(2))
    }

    /// The claim interval for a subscription with `ack_timeout`.
    pub fn claim_interval_for(&self, ack_timeout: Duration) -> Duration {
        self.claim_interval
            .unwrap_or_else(|| (ack_timeout / 2).min(Duration::from_secs(1)))
            .max(Duration::from_millis(10))
    }
}

impl Default for StreamsConfig {
    /// `127.0.0.1:6379`, namespace `switchyard`, every setting at its default.
    fn default() -> Self {
        StreamsConfig::new(RedisConfig::new("127.0.0.1", RedisConfig::DEFAULT_PORT))
    }
}

fn to_usize(name: &str, v: u64) -> Result<usize> {
    usize::try_from(v)
        .map_err(|_| Error::InvalidConfig(format!("url parameter {name}: {v} is too large")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn url_params() {
        let c = StreamsConfig::from_url(
            "redis+streams://:pw@h:7000/2?namespace=n&maxlen=100&block=200ms&read_count=10&writer_queue=5&writer_batch=3&writer_in_flight=2&claim_interval=50ms&consumer_idle_cleanup=1m&pattern_rescan=100ms&breaker_threshold=2&breaker_cool_down=300ms&retention=5m",
        )
        .unwrap();
        assert_eq!(c.redis.port, 7000);
        assert_eq!(c.redis.namespace, "n");
        assert_eq!(c.maxlen, Some(100));
        assert_eq!(c.min_id_age, Some(Duration::from_secs(300)));
        assert_eq!(c.block, Duration::from_millis(200));
        assert_eq!(c.read_count, 10);
        assert_eq!(c.writer_queue, 5);
        assert_eq!(c.writer_batch, 3);
        assert_eq!(c.writer_in_flight, 2);
        assert_eq!(c.claim_interval, Some(Duration::from_millis(50)));
        assert_eq!(c.consumer_idle_cleanup, Duration::from_secs(60));
        assert_eq!(c.pattern_rescan, Duration::from_millis(100));
        assert_eq!(c.breaker_threshold, 2);
        assert_eq!(c.breaker_cool_down, Duration::from_millis(300));
    }

    #[test]
    fn rejects_unknown_and_bad_values() {
        for bad in [
            "redis+streams://:hunter2@h?maxlenn=1",
            "redis+streams://:hunter2@h?maxlen=0",
            "redis+streams://:hunter2@h?block=0",
            "redis+streams://:hunter2@h?read_count=x",
            "redis+streams://:hunter2@h?writer_batch=0",
        ] {
            let e = StreamsConfig::from_url(bad).unwrap_err();
            assert!(!format!("{e} {e:?}").contains("hunter2"), "{bad}");
        }
        let e = StreamsConfig::from_url("redis+streams://h?foo=1").unwrap_err();
        assert!(e.to_string().contains("foo"), "{e}");
    }

    #[test]
    fn defaults() {
        let c = StreamsConfig::from_url("redis+streams://127.0.0.1").unwrap();
        assert_eq!(c.block, Duration::from_secs(1));
        assert_eq!(c.blocking_response_timeout(), Duration::from_secs(3));
        assert_eq!(c.maxlen, None);
        assert_eq!(
            c.claim_interval_for(Duration::from_millis(300)),
            Duration::from_millis(150)
        );
        assert_eq!(
            c.claim_interval_for(Duration::from_secs(30)),
            Duration::from_secs(1)
        );
    }
}
