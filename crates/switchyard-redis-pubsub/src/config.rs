//! Settings of the backplane: URL parameters and the typed config.

use std::time::Duration;

use switchyard_core::{Error, Result};
use switchyard_redis::RedisConfig;
use switchyard_redis::range::{
    DAY, HOUR, MILLISECOND, MINUTE, Origin, OutOfRange, check_count, check_duration,
};

/// The URL parameters this adapter reads (besides `namespace`,
/// `connect_timeout` and `response_timeout`, which every Redis adapter reads).
pub const URL_PARAMS: &[&str] = &[
    "outbox",
    "outbox_bytes",
    "outbox_ttl",
    "outbox_wait",
    "remote_wait",
    "batch",
    "probe_interval",
    "probe_timeout",
    "reconnect_min",
    "reconnect_max",
    "close_timeout",
    "instance_id",
    "warn_interval",
    "partitions",
];

/// Settings of a [`RedisPubSubTransport`](crate::RedisPubSubTransport).
///
/// From a URL (every parameter optional):
///
/// ```text
/// redis+pubsub://[user[:password]@]host[:port][/db]
///     ?namespace=chat&connect_timeout=2s&response_timeout=5s
///     &outbox=10000&outbox_ttl=5s&outbox_wait=100ms&remote_wait=250ms&batch=1024
///     &probe_interval=1s&probe_timeout=1s
///     &reconnect_min=50ms&reconnect_max=1s&close_timeout=2s
///     &instance_id=00000000000000ff&warn_interval=10s
/// rediss+pubsub://...   (TLS, needs the `tls` feature)
/// redis+pubsub+cluster://h1:7000,h2:7001[?...&partitions=16]   (Redis Cluster)
/// rediss+pubsub+cluster://...   (Redis Cluster over TLS)
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
    /// Messages waiting to be sent to Redis, at most (`outbox`): 1 to
    /// 10 000 000, default 10 000.
    pub outbox_capacity: usize,
    /// Bytes of frames (and channel names) waiting to be sent to Redis, at
    /// most (`outbox_bytes`): 16 MiB to 4 GiB − 1, default 64 MiB. With
    /// `outbox_capacity` it bounds the outbox's memory whatever the message
    /// sizes; an empty outbox always takes one message.
    pub outbox_bytes: usize,
    /// A message not sent to Redis within this time is dropped and counted
    /// (`outbox_ttl`: 1 ms to 1 h, default 5 s); remote replicas see it as a gap.
    pub outbox_ttl: Duration,
    /// How long `publish` waits for room in a full outbox while Redis is
    /// reachable, before dropping the message (`outbox_wait`: 0 to 1 min,
    /// default 100 ms). While Redis is away, a full outbox drops at once.
    pub outbox_wait: Duration,
    /// How long the receiving loop waits for a local subscriber with a
    /// full `Block` buffer to read, before it drops the message other
    /// replicas sent (reported to that subscriber as a gap signal)
    /// (`remote_wait`: 0 to 10 s, default 250 ms; 0 drops at once). The
    /// loop waits for the subscriber to read half its buffer, as long as it
    /// reads something every `remote_wait`, and at most 10 × `remote_wait`
    /// per message. Meanwhile the socket and Redis' output buffer for this
    /// connection hold what arrives (Redis closes a subscribing connection
    /// past 32 MB, or 8 MB for 60 s, by default), and the other subscribers
    /// of this replica wait too; publishers never do. A subscriber the loop
    /// gave up on loses what has no room at once, without waiting, until it
    /// has read half its buffer. `DropOldest` and `DropNewest` subscribers
    /// never make the loop wait.
    pub remote_wait: Duration,
    /// Most `PUBLISH` commands per pipeline (`batch`: 1 to 100 000, default 1024). A
    /// pipeline also stops growing past 1 MiB of frames (it always holds at
    /// least one).
    pub batch: usize,
    /// How often the subscribing connection is probed with `PING`
    /// (`probe_interval`: 1 ms to 1 h, default 1 s).
    pub probe_interval: Duration,
    /// How long a probe may take before the connection counts as dead and
    /// is replaced (`probe_timeout`: 1 ms to 1 h, default 1 s). A half-open connection
    /// is noticed within `probe_interval + probe_timeout`.
    pub probe_timeout: Duration,
    /// First reconnect delay ceiling (`reconnect_min`: 0 to 10 min and at
    /// most `reconnect_max`, default 50 ms).
    pub reconnect_min: Duration,
    /// Largest reconnect delay (`reconnect_max`: 1 ms to 10 min, default 1 s); delays are
    /// drawn with full jitter below an exponentially growing ceiling.
    pub reconnect_max: Duration,
    /// How long `close` waits for the outbox to drain (`close_timeout`:
    /// 0 to 1 h, default 2 s).
    pub close_timeout: Duration,
    /// This transport's origin id (`instance_id`, up to 16 hex digits: any
    /// 64-bit value). Random
    /// when `None` (the default); if you set it, it must be unique among
    /// live transports of a namespace.
    pub instance_id: Option<u64>,
    /// Most (origin, topic) pairs tracked for gap detection: 1 to
    /// 10 000 000, default 100 000 (no URL parameter).
    pub gap_tracker_capacity: usize,
    /// At most one warning per kind (malformed frame, unknown version, ...)
    /// per this interval (`warn_interval`: 1 ms to 24 h, default 10 s); the
    /// others are logged at debug.
    pub warn_interval: Duration,
    /// On a Redis Cluster: how many sharded channels (partitions) the
    /// topics are hashed onto (`partitions`: 1 to 1024, default 16). Every
    /// replica of a namespace must use the same count (replicas with
    /// different counts share no channel); see `docs/redis-pubsub.md`,
    /// "Redis Cluster". Validated but unused on a single server.
    pub partitions: usize,
}

impl Default for PubSubConfig {
    fn default() -> Self {
        PubSubConfig::new(RedisConfig::new("127.0.0.1", RedisConfig::DEFAULT_PORT))
    }
}

impl PubSubConfig {
    /// Default outbox capacity.
    pub const DEFAULT_OUTBOX: usize = 10_000;
    /// Default outbox byte bound (64 MiB).
    pub const DEFAULT_OUTBOX_BYTES: usize = 64 << 20;
    /// Smallest `outbox_bytes` (16 MiB: room for the largest frame, twice).
    pub const MIN_OUTBOX_BYTES: usize = 16 << 20;
    /// Largest `outbox_bytes` (4 GiB − 1).
    pub const MAX_OUTBOX_BYTES: usize = u32::MAX as usize;

    /// The defaults, for the Redis at `redis`.
    pub fn new(redis: RedisConfig) -> Self {
        PubSubConfig {
            redis,
            outbox_capacity: Self::DEFAULT_OUTBOX,
            outbox_bytes: Self::DEFAULT_OUTBOX_BYTES,
            outbox_ttl: Duration::from_secs(5),
            outbox_wait: Duration::from_millis(100),
            remote_wait: Self::DEFAULT_REMOTE_WAIT,
            batch: 1024,
            probe_interval: Duration::from_secs(1),
            probe_timeout: Duration::from_secs(1),
            reconnect_min: Duration::from_millis(50),
            reconnect_max: Duration::from_secs(1),
            close_timeout: Duration::from_secs(2),
            instance_id: None,
            gap_tracker_capacity: 100_000,
            warn_interval: Duration::from_secs(10),
            partitions: Self::DEFAULT_PARTITIONS,
        }
    }

    /// Parses a `redis+pubsub://` or `rediss+pubsub://` URL (plain
    /// `redis://` and `rediss://` are accepted too), the Sentinel form
    /// `redis+pubsub+sentinel://` and the Redis Cluster form
    /// `redis+pubsub+cluster://h1:7000,h2:7001` (`rediss+…` for TLS).
    /// Unknown parameters are an error listing the known ones.
    pub fn from_url(url: &str) -> Result<Self> {
        // Up to the first ':' only: without `://` the rest may hold a password.
        let scheme = url.split(':').next().unwrap_or("").to_ascii_lowercase();
        if !matches!(
            scheme.as_str(),
            "redis+pubsub"
                | "rediss+pubsub"
                | "redis"
                | "rediss"
                | "redis+pubsub+sentinel"
                | "rediss+pubsub+sentinel"
                | "redis+pubsub+cluster"
                | "rediss+pubsub+cluster"
        ) {
            return Err(Error::invalid_url(
                url,
                format!(
                    "scheme {scheme:?} is not a Redis Pub/Sub scheme: use redis+pubsub://, rediss+pubsub://, (Sentinel) redis+pubsub+sentinel:// or (Redis Cluster) redis+pubsub+cluster://"
                ),
            ));
        }
        let mut redis = RedisConfig::from_url(url)?;
        let mut cfg = PubSubConfig::new(RedisConfig::new(redis.host.clone(), redis.port));
        if let Some(n) = redis.take_u64("outbox")? {
            cfg.outbox_capacity = usize::try_from(n).unwrap_or(usize::MAX);
        }
        if let Some(n) = redis.take_u64("outbox_bytes")? {
            cfg.outbox_bytes = usize::try_from(n).unwrap_or(usize::MAX);
        }
        if let Some(n) = redis.take_u64("batch")? {
            cfg.batch = usize::try_from(n).unwrap_or(usize::MAX);
        }
        if let Some(n) = redis.take_u64("partitions")? {
            cfg.partitions = usize::try_from(n).unwrap_or(usize::MAX);
        }
        let durations: [(&str, &mut Duration); 9] = [
            ("outbox_ttl", &mut cfg.outbox_ttl),
            ("outbox_wait", &mut cfg.outbox_wait),
            ("remote_wait", &mut cfg.remote_wait),
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
        cfg.validate_from(Origin::Url)?;
        Ok(cfg)
    }

    /// Default `remote_wait` (250 ms).
    pub const DEFAULT_REMOTE_WAIT: Duration = Duration::from_millis(250);
    /// Largest `remote_wait` (10 s).
    pub const MAX_REMOTE_WAIT: Duration = Duration::from_secs(10);
    /// Largest `outbox` capacity.
    pub const MAX_OUTBOX: usize = 10_000_000;
    /// Largest `batch`.
    pub const MAX_BATCH: usize = 100_000;
    /// Largest `gap_tracker_capacity`.
    pub const MAX_GAP_TRACKER: usize = 10_000_000;
    /// Default `partitions` (Redis Cluster).
    pub const DEFAULT_PARTITIONS: usize = crate::partition::DEFAULT_PARTITIONS;
    /// Largest `partitions` (Redis Cluster).
    pub const MAX_PARTITIONS: usize = crate::partition::MAX_PARTITIONS;

    /// Checks every value against its documented range (those of
    /// [`RedisConfig`] included, with the same rules as redis-streams);
    /// [`RedisPubSubTransport::connect`](crate::RedisPubSubTransport::connect)
    /// calls it, and so does [`from_url`](Self::from_url). Errors say the
    /// value was set in code.
    pub fn validate(&self) -> Result<()> {
        self.validate_from(Origin::Builder)
    }

    /// [`validate`](Self::validate), naming `origin` in the error.
    pub fn validate_from(&self, origin: Origin) -> Result<()> {
        self.redis.validate_from(origin)?;
        self.check_ranges().map_err(|e| e.into_error(origin))?;
        if self.reconnect_min > self.reconnect_max {
            return Err(Error::InvalidConfig(format!(
                "reconnect_min ({:?}) exceeds reconnect_max ({:?})",
                self.reconnect_min, self.reconnect_max
            )));
        }
        Ok(())
    }

    fn check_ranges(&self) -> std::result::Result<(), OutOfRange> {
        check_count("outbox", self.outbox_capacity, 1, Self::MAX_OUTBOX)?;
        check_count(
            "outbox_bytes",
            self.outbox_bytes,
            Self::MIN_OUTBOX_BYTES,
            Self::MAX_OUTBOX_BYTES,
        )?;
        check_duration(
            "outbox_ttl",
            self.outbox_ttl,
            MILLISECOND,
            HOUR,
            "1ms to 1h (60m)",
        )?;
        check_duration(
            "outbox_wait",
            self.outbox_wait,
            Duration::ZERO,
            MINUTE,
            "0 to 1m",
        )?;
        check_duration(
            "remote_wait",
            self.remote_wait,
            Duration::ZERO,
            Self::MAX_REMOTE_WAIT,
            "0 to 10s",
        )?;
        check_count("batch", self.batch, 1, Self::MAX_BATCH)?;
        check_count("partitions", self.partitions, 1, Self::MAX_PARTITIONS)?;
        check_duration(
            "probe_interval",
            self.probe_interval,
            MILLISECOND,
            HOUR,
            "1ms to 1h (60m)",
        )?;
        check_duration(
            "probe_timeout",
            self.probe_timeout,
            MILLISECOND,
            HOUR,
            "1ms to 1h (60m)",
        )?;
        check_duration(
            "reconnect_min",
            self.reconnect_min,
            Duration::ZERO,
            10 * MINUTE,
            "0 to 10m",
        )?;
        check_duration(
            "reconnect_max",
            self.reconnect_max,
            MILLISECOND,
            10 * MINUTE,
            "1ms to 10m",
        )?;
        check_duration(
            "close_timeout",
            self.close_timeout,
            Duration::ZERO,
            HOUR,
            "0 to 1h (60m)",
        )?;
        check_count(
            "gap_tracker_capacity",
            self.gap_tracker_capacity,
            1,
            Self::MAX_GAP_TRACKER,
        )?;
        check_duration(
            "warn_interval",
            self.warn_interval,
            MILLISECOND,
            DAY,
            "1ms to 24h (1440m)",
        )
    }

    /// Sets [`outbox_capacity`](Self::outbox_capacity).
    pub fn with_outbox(mut self, messages: usize) -> Self {
        self.outbox_capacity = messages;
        self
    }

    /// Sets [`outbox_bytes`](Self::outbox_bytes).
    pub fn with_outbox_bytes(mut self, bytes: usize) -> Self {
        self.outbox_bytes = bytes;
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

    /// Sets [`remote_wait`](Self::remote_wait).
    pub fn with_remote_wait(mut self, wait: Duration) -> Self {
        self.remote_wait = wait;
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

    /// Sets [`partitions`](Self::partitions) (Redis Cluster).
    pub fn with_partitions(mut self, partitions: usize) -> Self {
        self.partitions = partitions;
        self
    }

    /// Sets [`warn_interval`](Self::warn_interval).
    pub fn with_warn_interval(mut self, interval: Duration) -> Self {
        self.warn_interval = interval;
        self
    }

    /// The Redis channel of `topic`: `{namespace}:{topic}` on a single
    /// server; on a cluster the sharded channel of its partition,
    /// `{namespace}:{p<k>/<n>:<i>}` (see `docs/redis-pubsub.md`, "Redis
    /// Cluster").
    pub fn channel(&self, topic: &str) -> String {
        if self.redis.cluster.is_some() {
            crate::partition::Partitions::new(&self.redis.namespace, self.partitions)
                .channel_of(topic)
                .to_owned()
        } else {
            channel_name(&self.redis.namespace, topic)
        }
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
mod tests;
