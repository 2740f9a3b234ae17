//! Settings of the backplane: URL parameters and the typed config.

use std::time::Duration;

use switchyard_core::{Error, Result};
use switchyard_redis::RedisConfig;

/// The URL parameters this adapter reads (besides `namespace`,
/// `connect_timeout` and `response_timeout`, which every Redis adapter reads).
pub const URL_PARAMS: &[&str] = &[
    "outbox",
    "outbox_ttl",
    "outbox_wait",
    "batch",
    "probe_interval",
    "probe_timeout",
    "reconnect_min",
    "reconnect_max",
    "close_timeout",
    "instance_id",
    "warn_interval",
];

/// Settings of a [`RedisPubSubTransport`](crate::RedisPubSubTransport).
///
/// From a URL (every parameter optional):
///
/// ```text
/// redis+pubsub://[user[:password]@]host[:port][/db]
///     ?namespace=chat&connect_timeout=2s&response_timeout=5s
///     &outbox=10000&outbox_ttl=5s&outbox_wait=100ms&batch=1024
///     &probe_interval=1s&probe_timeout=1s
///     &reconnect_min=50ms&reconnect_max=1s&close_timeout=2s
///     &instance_id=00000000000000ff&warn_interval=10s
/// rediss+pubsub://...   (TLS, needs the `tls` feature)
/// ```
///
/// or in code:
///
/// ```
/// use std::time::Duration;
/// use switchyard_redis::RedisConfig;
/// use switchyard_redis_pubsub::PubSubConfig;
///
/// let cfg = PubSubConfig::new(RedisConfig::new("127.0.0.1", 6379).with_namespace("chat"))
///     .with_outbox(50_000)
///     .with_outbox_ttl(Duration::from_secs(2))
///     .with_probe_interval(Duration::from_millis(500));
/// cfg.validate()?;
///
/// let from_url = PubSubConfig::from_url("redis+pubsub://127.0.0.1:6379?namespace=chat&outbox=50000")?;
/// assert_eq!(from_url.outbox_capacity, 50_000);
/// assert!(PubSubConfig::from_url("redis+pubsub://h?outbx=5").is_err()); // typo: rejected
/// # Ok::<(), switchyard_core::Error>(())
/// ```
#[derive(Clone, Debug)]
#[non_exhaustive]
pub struct PubSubConfig {
    /// Where Redis is, the namespace (channel prefix) and the timeouts.
    pub redis: RedisConfig,
    /// Messages waiting to be sent to Redis, at most (`outbox`, default 10 000).
    pub outbox_capacity: usize,
    /// A message not sent to Redis within this time is dropped and counted
    /// (`outbox_ttl`, default 5 s); remote replicas see it as a gap.
    pub outbox_ttl: Duration,
    /// How long `publish` waits for room in a full outbox while Redis is
    /// reachable, before dropping the message (`outbox_wait`, default
    /// 100 ms). While Redis is away, a full outbox drops at once.
    pub outbox_wait: Duration,
    /// Most `PUBLISH` commands per pipeline (`batch`, default 1024). A
    /// pipeline also stops growing past 1 MiB of frames (it always holds at
    /// least one).
    pub batch: usize,
    /// How often the subscribing connection is probed with `PING`
    /// (`probe_interval`, default 1 s).
    pub probe_interval: Duration,
    /// How long a probe may take before the connection counts as dead and
    /// is replaced (`probe_timeout`, default 1 s). A half-open connection
    /// is noticed within `probe_interval + probe_timeout`.
    pub probe_timeout: Duration,
    /// First reconnect delay ceiling (`reconnect_min`, default 50 ms).
    pub reconnect_min: Duration,
    /// Largest reconnect delay (`reconnect_max`, default 1 s); delays are
    /// drawn with full jitter below an exponentially growing ceiling.
    pub reconnect_max: Duration,
    /// How long `close` waits for the outbox to drain (`close_timeout`,
    /// default 2 s).
    pub close_timeout: Duration,
    /// This transport's origin id (`instance_id`, 16 hex digits). Random
    /// when `None` (the default); if you set it, it must be unique among
    /// live transports of a namespace.
    pub instance_id: Option<u64>,
    /// Most (origin, topic) pairs tracked for gap detection (default 100 000).
    pub gap_tracker_capacity: usize,
    /// At most one warning per kind (malformed frame, unknown version, ...)
    /// per this interval (default 10 s); the others are logged at debug.
    pub warn_interval: Duration,
}

impl Default for PubSubConfig {
    fn default() -> Self {
        PubSubConfig::new(RedisConfig::new("127.0.0.1", RedisConfig::DEFAULT_PORT))
    }
}

impl PubSubConfig {
    /// Default outbox capacity.
    pub const DEFAULT_OUTBOX: usize = 10_000;

    /// The defaults, for the Redis at `redis`.
    pub fn new(redis: RedisConfig) -> Self {
        PubSubConfig {
            redis,
            outbox_capacity: Self::DEFAULT_OUTBOX,
            outbox_ttl: Duration::from_secs(5),
            outbox_wait: Duration::from_millis(100),
            batch: 1024,
            probe_interval: Duration::from_secs(1),
            probe_timeout: Duration::from_secs(1),
            reconnect_min: Duration::from_millis(50),
            reconnect_max: Duration::from_secs(1),
            close_timeout: Duration::from_secs(2),
            instance_id: None,
            gap_tracker_capacity: 100_000,
            warn_interval: Duration::from_secs(10),
        }
    }

    /// Parses a `redis+pubsub://` or `rediss+pubsub://` URL (plain
    /// `redis://` and `rediss://` are accepted too). Unknown parameters are
    /// an error listing the known ones.
    pub fn from_url(url: &str) -> Result<Self> {
        // Up to the first ':' only: without `://` the rest may hold a password.
        let scheme = url.split(':').next().unwrap_or("").to_ascii_lowercase();
        if !matches!(
            scheme.as_str(),
            "redis+pubsub" | "rediss+pubsub" | "redis" | "rediss"
        ) {
            return Err(Error::invalid_url(
                url,
                format!(
                    "scheme {scheme:?} is not a Redis Pub/Sub scheme: use redis+pubsub:// or rediss+pubsub://"
                ),
            ));
        }
        let mut redis = RedisConfig::from_url(url)?;
        let mut cfg = PubSubConfig::new(RedisConfig::new(redis.host.clone(), redis.port));
        if let Some(n) = redis.take_u64("outbox")? {
            cfg.outbox_capacity = usize::try_from(n).unwrap_or(usize::MAX);
        }
        if let Some(n) = redis.take_u64("batch")? {
            cfg.batch = usize::try_from(n).unwrap_or(usize::MAX);
        }
        let durations: [(&str, &mut Duration); 8] = [
            ("outbox_ttl", &mut cfg.outbox_ttl),
            ("outbox_wait", &mut cfg.outbox_wait),
            ("probe_interval", &mut cfg.probe_interval),
            ("probe_timeout", &mut cfg.probe_timeout),
            ("reconnect_min", &mut cfg.reconnect_min),
            ("reconnect_max", &mut cfg.reconnect_max),
            ("close_timeout", &mut cfg.close_timeout),
            ("warn_interval", &mut cfg.warn_interval),
        ];
        for (key, slot) in durations {
            if let Some(d) = redis.take_duration(key)? {
                *slot = d;
            }
        }
        if let Some(id) = redis.take_param("instance_id") {
            let parsed = u64::from_str_radix(id.trim(), 16).map_err(|_| {
                Error::InvalidConfig(format!(
                    "url parameter instance_id: expected up to 16 hex digits, got {id:?}"
                ))
            })?;
            cfg.instance_id = Some(parsed);
        }
        redis.reject_unknown_params(URL_PARAMS)?;
        cfg.redis = redis;
        cfg.validate()?;
        Ok(cfg)
    }

    /// Checks every value; [`RedisPubSubTransport::connect`](crate::RedisPubSubTransport::connect) calls it.
    pub fn validate(&self) -> Result<()> {
        let positive = [
            ("outbox_ttl", self.outbox_ttl),
            ("probe_interval", self.probe_interval),
            ("probe_timeout", self.probe_timeout),
            ("reconnect_max", self.reconnect_max),
            ("connect_timeout", self.redis.connect_timeout),
            ("response_timeout", self.redis.response_timeout),
        ];
        for (name, d) in positive {
            if d.is_zero() {
                return Err(Error::InvalidConfig(format!("{name} must be positive")));
            }
        }
        if self.outbox_capacity == 0 || self.outbox_capacity > 10_000_000 {
            return Err(Error::InvalidConfig(format!(
                "outbox must be 1 to 10000000 messages, got {}",
                self.outbox_capacity
            )));
        }
        if self.batch == 0 || self.batch > 100_000 {
            return Err(Error::InvalidConfig(format!(
                "batch must be 1 to 100000, got {}",
                self.batch
            )));
        }
        if self.reconnect_min > self.reconnect_max {
            return Err(Error::InvalidConfig(format!(
                "reconnect_min ({:?}) exceeds reconnect_max ({:?})",
                self.reconnect_min, self.reconnect_max
            )));
        }
        switchyard_redis::validate_namespace(&self.redis.namespace).map_err(Error::InvalidConfig)
    }

    /// Sets [`outbox_capacity`](Self::outbox_capacity).
    pub fn with_outbox(mut self, messages: usize) -> Self {
        self.outbox_capacity = messages;
        self
    }

    /// Sets [`outbox_ttl`](Self::outbox_ttl).
    pub fn with_outbox_ttl(mut self, ttl: Duration) -> Self {
        self.outbox_ttl = ttl;
        self
    }

    /// Sets [`outbox_wait`](Self::outbox_wait).
    pub fn with_outbox_wait(mut self, wait: Duration) -> Self {
        self.outbox_wait = wait;
        self
    }

    /// Sets [`batch`](Self::batch).
    pub fn with_batch(mut self, commands: usize) -> Self {
        self.batch = commands;
        self
    }

    /// Sets [`probe_interval`](Self::probe_interval).
    pub fn with_probe_interval(mut self, interval: Duration) -> Self {
        self.probe_interval = interval;
        self
    }

    /// Sets [`probe_timeout`](Self::probe_timeout).
    pub fn with_probe_timeout(mut self, timeout: Duration) -> Self {
        self.probe_timeout = timeout;
        self
    }

    /// Sets [`reconnect_min`](Self::reconnect_min) and [`reconnect_max`](Self::reconnect_max).
    pub fn with_reconnect(mut self, min: Duration, max: Duration) -> Self {
        self.reconnect_min = min;
        self.reconnect_max = max;
        self
    }

    /// Sets [`close_timeout`](Self::close_timeout).
    pub fn with_close_timeout(mut self, timeout: Duration) -> Self {
        self.close_timeout = timeout;
        self
    }

    /// Sets [`instance_id`](Self::instance_id).
    pub fn with_instance_id(mut self, id: u64) -> Self {
        self.instance_id = Some(id);
        self
    }

    /// Sets [`gap_tracker_capacity`](Self::gap_tracker_capacity).
    pub fn with_gap_tracker_capacity(mut self, entries: usize) -> Self {
        self.gap_tracker_capacity = entries;
        self
    }

    /// Sets [`warn_interval`](Self::warn_interval).
    pub fn with_warn_interval(mut self, interval: Duration) -> Self {
        self.warn_interval = interval;
        self
    }

    /// The Redis channel of `topic`: `{namespace}:{topic}`.
    pub fn channel(&self, topic: &str) -> String {
        channel_name(&self.redis.namespace, topic)
    }
}

pub(crate) fn channel_name(namespace: &str, topic: &str) -> String {
    let mut s = String::with_capacity(namespace.len() + 1 + topic.len());
    s.push_str(namespace);
    s.push(':');
    s.push_str(topic);
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn url_params() {
        let c = PubSubConfig::from_url(
            "redis+pubsub://u:pw@h:7000/2?namespace=chat&outbox=5&outbox_ttl=2s&outbox_wait=0&batch=9\
             &probe_interval=250ms&probe_timeout=300ms&reconnect_min=10ms&reconnect_max=500ms\
             &close_timeout=1s&instance_id=ff&warn_interval=1m",
        )
        .unwrap();
        assert_eq!(c.redis.addr(), "h:7000");
        assert_eq!(c.redis.db, 2);
        assert_eq!(c.redis.namespace, "chat");
        assert_eq!(c.outbox_capacity, 5);
        assert_eq!(c.outbox_ttl, Duration::from_secs(2));
        assert_eq!(c.outbox_wait, Duration::ZERO);
        assert_eq!(c.batch, 9);
        assert_eq!(c.probe_interval, Duration::from_millis(250));
        assert_eq!(c.probe_timeout, Duration::from_millis(300));
        assert_eq!(c.reconnect_min, Duration::from_millis(10));
        assert_eq!(c.reconnect_max, Duration::from_millis(500));
        assert_eq!(c.close_timeout, Duration::from_secs(1));
        assert_eq!(c.instance_id, Some(0xff));
        assert_eq!(c.warn_interval, Duration::from_secs(60));
        assert_eq!(c.channel("a.b"), "chat:a.b");
        assert!(!format!("{c:?}").contains("pw"));
    }

    #[test]
    fn unknown_params_list_the_known_ones() {
        let e = PubSubConfig::from_url("redis+pubsub://h?outbx=5").unwrap_err();
        let text = e.to_string();
        assert!(text.contains("outbx"), "{text}");
        for known in ["namespace", "outbox", "outbox_ttl", "probe_interval"] {
            assert!(text.contains(known), "{text}");
        }
    }

    #[test]
    fn bad_values() {
        for url in [
            "redis+streams://h",
            "memory://",
            "redis+pubsub://h?outbox=0",
            "redis+pubsub://h?outbox=x",
            "redis+pubsub://h?batch=0",
            "redis+pubsub://h?probe_interval=0",
            "redis+pubsub://h?outbox_ttl=soon",
            "redis+pubsub://h?reconnect_min=2s&reconnect_max=1s",
            "redis+pubsub://h?instance_id=xyz",
        ] {
            assert!(PubSubConfig::from_url(url).is_err(), "{url}");
        }
        assert!(PubSubConfig::from_url("redis://h").is_ok());
        assert!(PubSubConfig::from_url("REDIS+PUBSUB://h").is_ok());
        assert!(PubSubConfig::default().validate().is_ok());
    }
}
