//! Settings of the Redis Streams adapter.

use std::time::Duration;

use switchyard_core::{Error, Result, RetentionRules};
use switchyard_redis::RedisConfig;
use switchyard_redis::range::{
    DAY, HOUR, MILLISECOND, MINUTE, Origin, OutOfRange, check_count, check_duration,
};

/// URL parameters this adapter understands (beyond `namespace`,
/// `connect_timeout` and `response_timeout`, which [`RedisConfig`] takes).
pub const URL_PARAMS: &[&str] = &[
    "maxlen",
    "retention",
    "retain",
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
    "wait_replicas",
    "wait_timeout",
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
    /// (URL `maxlen`): 0 to 9223372036854775807 (`i64::MAX`, the largest
    /// Redis accepts), where 0 means no cap, like `None` (the default).
    /// The fallback for topics no [`topic_retention`](Self::topic_retention)
    /// rule matches.
    pub maxlen: Option<u64>,
    /// Approximate age cap: `XADD ... MINID ~ <now - age>` (URL `retention`,
    /// e.g. `retention=1440m` for a day; units are `ms`, `s` and `m`):
    /// 1 ms to 365 days (525600m). Ignored when `maxlen` is set (an XADD
    /// trims by one strategy). `None` (default): no age cap. The fallback
    /// for topics no rule matches.
    pub min_id_age: Option<Duration>,
    /// Per-topic retention (URL: repeated `retain=<filter>:<spec>`, see
    /// [`switchyard_core::retention`]; at most 256 rules). The most
    /// specific matching rule replaces `maxlen` and `min_id_age` for its
    /// topics; a rule with both caps trims by `MAXLEN` (an XADD takes one
    /// strategy). Dead-letter topics (`T:dlq`) follow a rule only when it
    /// names them (`T:dlq`, `orders.*:dlq`), else `maxlen` as before; on
    /// them only the rule's length cap applies. Default: no rules.
    pub topic_retention: RetentionRules,
    /// How long one `XREAD`/`XREADGROUP` blocks waiting for entries
    /// (URL `block`): 1 ms to 5 min, default 1 s. The dedicated reading connection's
    /// response timeout is this plus 2 s. It also bounds how long a reader
    /// takes to notice `close`.
    pub block: Duration,
    /// Entries fetched per read (`COUNT`, URL `read_count`): 1 to 100000,
    /// default 512.
    pub read_count: usize,
    /// Capacity of the bounded publish queue in front of the writer task
    /// (URL `writer_queue`): 1 to 1048576, default 8192. When full,
    /// `publish` waits.
    pub writer_queue: usize,
    /// Most `XADD`s in one pipeline (URL `writer_batch`): 1 to 100000,
    /// default 512.
    pub writer_batch: usize,
    /// Most pipelines in flight at once (URL `writer_in_flight`): 1 to 1024,
    /// default 4.
    pub writer_in_flight: usize,
    /// How often a group consumer looks for stale entries of crashed
    /// members with `XAUTOCLAIM` (URL `claim_interval`): 1 ms to 1 h.
    /// `None` (default): half the subscription's ack timeout, at most 1 s.
    pub claim_interval: Option<Duration>,
    /// Consumers with nothing pending that were idle longer than this are
    /// removed from their group (URL `consumer_idle_cleanup`): 1 ms to 30
    /// days (43200m), default 1 h.
    pub consumer_idle_cleanup: Duration,
    /// How often pattern subscriptions rescan for new streams with `SCAN`
    /// (URL `pattern_rescan`: 1 ms to 1 h, default 1 s): a stream created after the
    /// subscription is found within about this delay.
    pub pattern_rescan: Duration,
    /// Consecutive failed publish pipelines that open the circuit breaker
    /// (URL `breaker_threshold`): 1 to 1000000, default 5.
    pub breaker_threshold: u32,
    /// How long the open breaker refuses publishes before a trial
    /// (URL `breaker_cool_down`): 1 ms to 1 h, default 1 s.
    pub breaker_cool_down: Duration,
    /// After each publish pipeline, `WAIT wait_replicas wait_timeout`: a
    /// publish is acknowledged only once that many replicas have it, so a
    /// failover cannot lose it (URL `wait_replicas`): 0 to 64, default 0
    /// (off: acknowledged by the primary alone, as Redis does). When fewer
    /// replicas confirm within `wait_timeout`, the publishes of the
    /// pipeline fail with a transient error (they are on the primary and
    /// may be delivered; publishing again may duplicate them).
    pub wait_replicas: u32,
    /// Bound on each `WAIT` (URL `wait_timeout`): 1 ms to 1 min, and below
    /// the response timeout when `wait_replicas` is on; default 1 s.
    pub wait_timeout: Duration,
}

impl StreamsConfig {
    /// Settings for `redis` with every adapter setting at its default.
    pub fn new(redis: RedisConfig) -> Self {
        StreamsConfig {
            redis,
            maxlen: None,
            min_id_age: None,
            topic_retention: RetentionRules::new(),
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
            wait_replicas: 0,
            wait_timeout: Duration::from_secs(1),
        }
    }

    /// Largest `wait_replicas`.
    pub const MAX_WAIT_REPLICAS: u32 = 64;

    /// Acknowledges publishes only once `replicas` replicas have them
    /// (`WAIT replicas timeout` after each pipeline; 0 turns it off).
    pub fn with_wait_replicas(mut self, replicas: u32, timeout: Duration) -> Self {
        self.wait_replicas = replicas;
        self.wait_timeout = timeout;
        self
    }

    /// Parses a `redis+streams://` or `rediss+streams://` URL, taking the
    /// parameters in [`URL_PARAMS`] and rejecting unknown ones.
    pub fn from_url(url: &str) -> Result<Self> {
        let mut redis = RedisConfig::from_url(url)?;
        let mut cfg = StreamsConfig::new(RedisConfig::new(String::new(), 0));
        cfg.maxlen = redis.take_u64("maxlen")?.filter(|&n| n > 0);
        cfg.min_id_age = redis.take_duration("retention")?;
        for rule in redis.take_all("retain") {
            cfg.topic_retention.push_text(&rule).map_err(|e| match e {
                Error::InvalidConfig(reason) => {
                    Error::InvalidConfig(format!("url parameter retain: {reason}"))
                }
                other => other,
            })?;
        }
        if let Some(v) = redis.take_duration("block")? {
            cfg.block = v;
        }
        if let Some(v) = redis.take_u64("read_count")? {
            cfg.read_count = to_usize(v);
        }
        if let Some(v) = redis.take_u64("writer_queue")? {
            cfg.writer_queue = to_usize(v);
        }
        if let Some(v) = redis.take_u64("writer_batch")? {
            cfg.writer_batch = to_usize(v);
        }
        if let Some(v) = redis.take_u64("writer_in_flight")? {
            cfg.writer_in_flight = to_usize(v);
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
                check_count(
                    "breaker_threshold",
                    v,
                    1,
                    u64::from(Self::MAX_BREAKER_THRESHOLD),
                )
                .err()
                .map_or_else(
                    || Error::InvalidConfig(format!("breaker_threshold: {v} is too large")),
                    |e| e.into_error(Origin::Url),
                )
            })?;
        }
        if let Some(v) = redis.take_duration("breaker_cool_down")? {
            cfg.breaker_cool_down = v;
        }
        if let Some(v) = redis.take_u64("wait_replicas")? {
            cfg.wait_replicas = u32::try_from(v).unwrap_or(u32::MAX);
        }
        if let Some(v) = redis.take_duration("wait_timeout")? {
            cfg.wait_timeout = v;
        }
        redis.reject_unknown_params(URL_PARAMS)?;
        cfg.redis = redis;
        cfg.validate_from(Origin::Url)?;
        Ok(cfg)
    }

    /// Largest `maxlen`: `i64::MAX`, the largest count Redis accepts.
    pub const MAX_MAXLEN: u64 = i64::MAX as u64;
    /// Largest `breaker_threshold`.
    pub const MAX_BREAKER_THRESHOLD: u32 = 1_000_000;

    /// Checks every setting against its documented range (those of
    /// [`RedisConfig`] included, with the same rules as the backplane);
    /// [`connect`](crate::RedisStreamsTransport::connect) calls it, and so
    /// does [`from_url`](Self::from_url). Errors say the value was set in code.
    pub fn validate(&self) -> Result<()> {
        self.validate_from(Origin::Builder)
    }

    /// [`validate`](Self::validate), naming `origin` in the error.
    pub fn validate_from(&self, origin: Origin) -> Result<()> {
        self.redis.validate_from(origin)?;
        self.check_ranges().map_err(|e| e.into_error(origin))
    }

    fn check_ranges(&self) -> std::result::Result<(), OutOfRange> {
        if let Some(maxlen) = self.maxlen {
            check_count("maxlen", maxlen, 0, Self::MAX_MAXLEN)?;
        }
        if let Some(age) = self.min_id_age {
            check_duration(
                "retention",
                age,
                MILLISECOND,
                365 * DAY,
                "1ms to 365 days (525600m)",
            )?;
        }
        // BLOCK 0 means "forever" to Redis: the reader could never notice close.
        check_duration("block", self.block, MILLISECOND, 5 * MINUTE, "1ms to 5m")?;
        check_count("read_count", self.read_count, 1, 100_000)?;
        check_count("writer_queue", self.writer_queue, 1, 1 << 20)?;
        check_count("writer_batch", self.writer_batch, 1, 100_000)?;
        check_count("writer_in_flight", self.writer_in_flight, 1, 1024)?;
        check_count(
            "wait_replicas",
            self.wait_replicas,
            0,
            Self::MAX_WAIT_REPLICAS,
        )?;
        check_duration(
            "wait_timeout",
            self.wait_timeout,
            MILLISECOND,
            MINUTE,
            "1ms to 1m",
        )?;
        if self.wait_replicas > 0 && self.wait_timeout >= self.redis.response_timeout {
            return Err(OutOfRange {
                setting: "wait_timeout",
                message: format!(
                    "wait_timeout must be below response_timeout ({:?}), which bounds each publish pipeline and its WAIT, got {:?}",
                    self.redis.response_timeout, self.wait_timeout
                ),
            });
        }
        if let Some(every) = self.claim_interval {
            check_duration(
                "claim_interval",
                every,
                MILLISECOND,
                HOUR,
                "1ms to 1h (60m)",
            )?;
        }
        check_duration(
            "consumer_idle_cleanup",
            self.consumer_idle_cleanup,
            MILLISECOND,
            30 * DAY,
            "1ms to 30 days (43200m)",
        )?;
        check_duration(
            "pattern_rescan",
            self.pattern_rescan,
            MILLISECOND,
            HOUR,
            "1ms to 1h (60m)",
        )?;
        check_count(
            "breaker_threshold",
            self.breaker_threshold,
            1,
            Self::MAX_BREAKER_THRESHOLD,
        )?;
        check_duration(
            "breaker_cool_down",
            self.breaker_cool_down,
            MILLISECOND,
            HOUR,
            "1ms to 1h (60m)",
        )
    }

    /// Sets the approximate length cap (`MAXLEN ~ N`; 0 or `None`: no cap).
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

/// A count from the URL as `usize`; a value past `usize::MAX` (only on
/// 32-bit targets) saturates, and the range check then refuses it.
fn to_usize(v: u64) -> usize {
    usize::try_from(v).unwrap_or(usize::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `wait_replicas` and `wait_timeout` have ranges; a WAIT as long as
    /// the pipeline's response timeout could never be answered in time.
    #[test]
    fn wait_replicas_ranges() {
        let c = StreamsConfig::from_url("redis+streams://h?wait_replicas=2&wait_timeout=250ms")
            .unwrap();
        assert_eq!(c.wait_replicas, 2);
        assert_eq!(c.wait_timeout, Duration::from_millis(250));
        assert_eq!(
            StreamsConfig::from_url("redis+streams://h")
                .unwrap()
                .wait_replicas,
            0
        );
        for (url, needle) in [
            (
                "redis+streams://h?wait_replicas=65",
                "wait_replicas must be 0 to 64",
            ),
            (
                "redis+streams://h?wait_replicas=99999999999",
                "wait_replicas",
            ),
            (
                "redis+streams://h?wait_replicas=1&wait_timeout=0",
                "wait_timeout must be 1ms to 1m",
            ),
            (
                "redis+streams://h?wait_replicas=1&wait_timeout=2m",
                "wait_timeout must be 1ms to 1m",
            ),
            (
                "redis+streams://h?wait_replicas=1&wait_timeout=5s&response_timeout=5s",
                "wait_timeout must be below response_timeout",
            ),
        ] {
            let e = StreamsConfig::from_url(url).unwrap_err();
            assert!(e.to_string().contains(needle), "{url}: {e}");
        }
        let e = StreamsConfig::new(RedisConfig::new("h", 1))
            .with_wait_replicas(1, Duration::from_secs(10))
            .validate()
            .unwrap_err();
        assert!(e.to_string().contains("below response_timeout"), "{e}");
    }

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
            "redis+streams://:hunter2@h?retain=a.*:maxlen=x",
            "redis+streams://:hunter2@h?retain=a..b:maxlen=1",
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

    /// Each of these used to be accepted and then panic, abort or fail every
    /// call: `writer_queue=u64::MAX` panicked in `connect`,
    /// `writer_batch=1000000000` aborted on a 112 GB allocation,
    /// `writer_batch`/`writer_in_flight` of `u64::MAX` panicked the writer,
    /// `maxlen=u64::MAX` made every XADD fail; zero `connect_timeout`,
    /// `response_timeout`, `breaker_threshold`, `consumer_idle_cleanup`
    /// were accepted here but refused by the backplane.
    #[test]
    fn out_of_range_values_are_refused_with_their_range() {
        let max = u64::MAX;
        for (params, needle) in [
            (format!("writer_queue={max}"), "writer_queue must be 1 to 1048576, got 18446744073709551615 (url parameter writer_queue)".to_owned()),
            ("writer_batch=1000000000".to_owned(), "writer_batch must be 1 to 100000, got 1000000000".to_owned()),
            (format!("writer_batch={max}"), "writer_batch must be 1 to 100000".to_owned()),
            (format!("writer_in_flight={max}"), "writer_in_flight must be 1 to 1024".to_owned()),
            (format!("maxlen={max}"), "maxlen must be 0 to 9223372036854775807".to_owned()),
            ("maxlen=9223372036854775808".to_owned(), "maxlen".to_owned()),
            ("connect_timeout=0".to_owned(), "connect_timeout must be 1ms to 10m".to_owned()),
            ("response_timeout=0".to_owned(), "response_timeout".to_owned()),
            ("breaker_threshold=0".to_owned(), "breaker_threshold must be 1 to 1000000, got 0".to_owned()),
            (format!("breaker_threshold={max}"), "breaker_threshold must be 1 to 1000000, got 18446744073709551615".to_owned()),
            ("consumer_idle_cleanup=0".to_owned(), "consumer_idle_cleanup must be 1ms to 30 days".to_owned()),
            (format!("block={max}s"), "block must be 1ms to 5m".to_owned()),
            (format!("read_count={max}"), "read_count".to_owned()),
            (format!("claim_interval={max}m"), "claim_interval".to_owned()),
            (format!("pattern_rescan={max}ms"), "pattern_rescan".to_owned()),
            (format!("breaker_cool_down={max}s"), "breaker_cool_down".to_owned()),
            ("breaker_cool_down=0".to_owned(), "breaker_cool_down".to_owned()),
            (format!("retention={max}m"), "retention must be 1ms to 365 days".to_owned()),
        ] {
            let url = format!("redis+streams://h?{params}");
            let e = StreamsConfig::from_url(&url).unwrap_err();
            assert!(matches!(e, Error::InvalidConfig(_)), "{url}: {e}");
            assert!(e.to_string().contains(&needle), "{url}: {e}");
        }
        let upper = "redis+streams://h?maxlen=9223372036854775807&writer_queue=1048576&writer_batch=100000\
            &writer_in_flight=1024&read_count=100000&block=5m&claim_interval=60m&pattern_rescan=60m\
            &consumer_idle_cleanup=43200m&breaker_threshold=1000000&breaker_cool_down=60m&retention=525600m";
        assert!(StreamsConfig::from_url(upper).is_ok());
        let lower = "redis+streams://h?maxlen=1&writer_queue=1&writer_batch=1&writer_in_flight=1&read_count=1\
            &block=1&claim_interval=1&pattern_rescan=1&consumer_idle_cleanup=1&breaker_threshold=1\
            &breaker_cool_down=1&retention=1&connect_timeout=1&response_timeout=1";
        assert!(StreamsConfig::from_url(lower).is_ok());
        // The builder goes through the same check, and says so.
        let e = StreamsConfig::default()
            .with_writer_batch(1_000_000_000)
            .validate()
            .unwrap_err();
        assert_eq!(
            e.to_string(),
            "invalid configuration: writer_batch must be 1 to 100000, got 1000000000 (set in code)"
        );
        assert!(
            StreamsConfig::default()
                .with_breaker(0, Duration::from_secs(1))
                .validate()
                .is_err()
        );
        assert!(StreamsConfig::default().validate().is_ok());
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
