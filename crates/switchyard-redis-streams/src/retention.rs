//! Which trimming each topic's XADDs carry: the most specific
//! [`topic_retention`](StreamsConfig::topic_retention) rule, else the
//! transport-wide `maxlen` / `retention`.

use std::time::{SystemTime, UNIX_EPOCH};

use switchyard_core::{Result, Retention, Topic, TopicFilter};

use crate::config::StreamsConfig;
use crate::publish::resp::Trim;

impl StreamsConfig {
    /// Adds a per-topic retention rule (see
    /// [`topic_retention`](Self::topic_retention)). Fails when the filter
    /// already has a rule, past 256 rules, or on a cap out of range.
    ///
    /// ```
    /// use switchyard_core::Retention;
    /// use switchyard_redis_streams::StreamsConfig;
    /// let cfg = StreamsConfig::default()
    ///     .with_maxlen(Some(100_000))
    ///     .with_topic_retention("*/camera/rgb".parse()?, Retention::max_len_of(60))?
    ///     .with_topic_retention("*/scan".parse()?, Retention::max_len_of(100))?
    ///     .with_topic_retention("audit.>".parse()?, Retention::UNLIMITED)?;
    /// assert_eq!(cfg.topic_retention.len(), 3);
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

    /// The retention of `topic`: its most specific rule, else the
    /// transport-wide `maxlen` and `min_id_age` (with `maxlen` 0 as no cap).
    ///
    /// ```
    /// use switchyard_core::{Result, Retention, Topic, TopicFilter};
    /// use switchyard_redis_streams::StreamsConfig;
    /// let cfg = StreamsConfig::from_url(
    ///     "redis+streams://h?maxlen=1000&retain=*/camera/rgb:maxlen=60&retain=robot-1/camera/rgb:0",
    /// )?;
    /// let of = |t: &str| Topic::new(t).map(|t| cfg.retention_for(&t));
    /// assert_eq!(of("robot-7/camera/rgb")?.max_len(), Some(60));
    /// assert_eq!(of("robot-1/camera/rgb")?, Retention::UNLIMITED);
    /// assert_eq!(of("robot-7/scan")?.max_len(), Some(1000));
    /// # Ok::<(), switchyard_core::Error>(())
    /// ```
    pub fn retention_for(&self, topic: &Topic) -> Retention {
        match self.topic_retention.for_topic(topic) {
            Some(r) => *r,
            None => self.default_retention(),
        }
    }

    /// The transport-wide retention, for topics no rule matches.
    pub fn default_retention(&self) -> Retention {
        Retention::UNLIMITED
            .with_max_len(self.maxlen.unwrap_or(0))
            .with_max_age(self.min_id_age.unwrap_or_default())
    }
}

/// Milliseconds since the Unix epoch, once per pipeline: `MINID` is
/// `now - age` of each topic.
pub(crate) fn now_ms() -> u64 {
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default();
    u64::try_from(now.as_millis()).unwrap_or(u64::MAX)
}

/// The XADD trimming for `retention` at `now_ms`: `MAXLEN ~` when a length
/// cap is set (an XADD takes one strategy), else `MINID ~ now - age`.
pub(crate) fn trim(retention: &Retention, now_ms: u64) -> Trim {
    if let Some(n) = retention.max_len() {
        return Trim::MaxLen(n);
    }
    if let Some(age) = retention.max_age() {
        let age = u64::try_from(age.as_millis()).unwrap_or(u64::MAX);
        return Trim::MinId(now_ms.saturating_sub(age));
    }
    Trim::None
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use switchyard_core::Error;

    use super::*;

    fn of(cfg: &StreamsConfig, topic: &str) -> Retention {
        cfg.retention_for(&Topic::new(topic).unwrap())
    }

    #[test]
    fn url_rules_and_fallback() {
        let cfg = StreamsConfig::from_url(
            "redis+streams://:pw@h?maxlen=1000&retain=*/camera/rgb:maxlen=50&retain=*/scan:maxlen=100,age=5m\
             &retain=robot-1/camera/rgb:0&retain=/>:age=2h&retain=orders:dlq:maxlen=7&retain=a%2Bb:maxlen=3",
        )
        .unwrap();
        assert_eq!(cfg.topic_retention.len(), 6);
        assert_eq!(of(&cfg, "robot-7/camera/rgb").max_len(), Some(50));
        let scan = of(&cfg, "robot-7/scan");
        assert_eq!(
            (scan.max_len(), scan.max_age()),
            (Some(100), Some(Duration::from_secs(300)))
        );
        assert_eq!(trim(&scan, 1_000_000), Trim::MaxLen(100));
        assert_eq!(of(&cfg, "robot-1/camera/rgb"), Retention::UNLIMITED);
        assert_eq!(trim(&Retention::UNLIMITED, 5), Trim::None);
        let rooted = of(&cfg, "/robot-1/odom");
        assert_eq!(
            trim(&rooted, 10_000_000),
            Trim::MinId(10_000_000 - 7_200_000)
        );
        assert_eq!(of(&cfg, "odom").max_len(), Some(1000));
        assert_eq!(of(&cfg, "orders:dlq").max_len(), Some(7));
        assert_eq!(of(&cfg, "x:dlq").max_len(), Some(1000));
        assert_eq!(of(&cfg, "a+b").max_len(), Some(3));
    }

    #[test]
    fn zero_means_no_cap() {
        let cfg = StreamsConfig::from_url("redis+streams://h?maxlen=0&retain=a:maxlen=0").unwrap();
        assert_eq!(cfg.maxlen, None);
        assert_eq!(of(&cfg, "b"), Retention::UNLIMITED);
        assert_eq!(of(&cfg, "a"), Retention::UNLIMITED);
        // In code: 0 is accepted and means no cap too.
        let cfg = StreamsConfig::default().with_maxlen(Some(0));
        assert!(cfg.validate().is_ok());
        assert_eq!(cfg.default_retention(), Retention::UNLIMITED);
        // A rule of 0 lifts the transport-wide cap for its topics.
        let cfg = StreamsConfig::from_url("redis+streams://h?maxlen=10&retain=big.*:0").unwrap();
        assert_eq!(of(&cfg, "big.x"), Retention::UNLIMITED);
        assert_eq!(of(&cfg, "small.x").max_len(), Some(10));
    }

    #[test]
    fn bad_rules_are_named_without_the_secret() {
        for (url, needle) in [
            (
                "redis+streams://:hunter2@h?retain=orders",
                "expected <filter>:<spec>",
            ),
            (
                "redis+streams://:hunter2@h?retain=a..b:maxlen=1",
                "bad filter",
            ),
            (
                "redis+streams://:hunter2@h?retain=a:maxlen=-1",
                "maxlen must be an integer",
            ),
            (
                "redis+streams://:hunter2@h?retain=a:maxlen=9223372036854775808",
                "maxlen must be 0 (no cap)",
            ),
            (
                "redis+streams://:hunter2@h?retain=a:age=400d",
                "age must be 0 (no cap) or 1ms to 365 days",
            ),
            (
                "redis+streams://:hunter2@h?retain=a:count=1",
                "unknown setting",
            ),
            (
                "redis+streams://:hunter2@h?retain=a:maxlen=1&retain=a:maxlen=2",
                "already has a rule",
            ),
            ("redis+streams://:hunter2@h?retain=a:", "empty"),
        ] {
            let e = StreamsConfig::from_url(url).unwrap_err();
            assert!(matches!(e, Error::InvalidConfig(_)), "{url}: {e}");
            let text = format!("{e} {e:?}");
            assert!(
                text.contains("url parameter retain: retention rule"),
                "{url}: {text}"
            );
            assert!(text.contains(needle), "{url}: {text}");
            assert!(!text.contains("hunter2"), "{url}: {text}");
        }
        let many: Vec<String> = (0..257).map(|i| format!("retain=t{i}:maxlen=1")).collect();
        let e = StreamsConfig::from_url(&format!("redis+streams://h?{}", many.join("&")))
            .unwrap_err()
            .to_string();
        assert!(e.contains("at most 256 rules"), "{e}");
        // Other parameters given again override, as before.
        let cfg = StreamsConfig::from_url("redis+streams://h?maxlen=1&maxlen=2").unwrap();
        assert_eq!(cfg.maxlen, Some(2));
    }

    #[test]
    fn builder_rules() {
        let cfg = StreamsConfig::default()
            .with_topic_retention("*/scan".parse().unwrap(), Retention::max_len_of(100))
            .unwrap();
        assert_eq!(of(&cfg, "r/scan").max_len(), Some(100));
        assert!(
            cfg.with_topic_retention("*/scan".parse().unwrap(), Retention::UNLIMITED)
                .is_err()
        );
    }
}
