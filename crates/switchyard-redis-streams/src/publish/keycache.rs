//! Stream key and retention per topic, cached so the hot path neither
//! formats a key nor matches retention rules per message.

use std::collections::HashMap;

use switchyard_core::{Retention, RetentionRules, Topic};

use crate::config::StreamsConfig;
use crate::keys;

/// Stream keys and retentions per topic. Cleared when it grows past
/// [`KeyCache::MAX`] topics.
pub(super) struct KeyCache {
    namespace: String,
    rules: RetentionRules,
    default: Retention,
    map: HashMap<Topic, (String, Retention)>,
    last: Option<(Topic, String, Retention)>,
}

impl KeyCache {
    const MAX: usize = 4096;

    pub(super) fn new(config: &StreamsConfig) -> Self {
        KeyCache {
            namespace: config.redis.namespace.clone(),
            rules: config.topic_retention.clone(),
            default: config.default_retention(),
            map: HashMap::new(),
            last: None,
        }
    }

    /// The stream key of `topic` and the retention its XADDs carry.
    pub(super) fn get(&mut self, topic: &Topic) -> (&str, Retention) {
        // Runs of messages on one topic are the common case.
        let hit = self.last.as_ref().is_some_and(|(t, _, _)| t == topic);
        if !hit {
            let (key, retention) = self.lookup(topic);
            let entry = (topic.clone(), key.to_owned(), retention);
            self.last = Some(entry);
        }
        self.last
            .as_ref()
            .map_or(("", self.default), |(_, k, r)| (k.as_str(), *r))
    }

    fn lookup(&mut self, topic: &Topic) -> (&str, Retention) {
        if !self.map.contains_key(topic) {
            if self.map.len() >= Self::MAX {
                self.map.clear();
            }
            let retention = self.rules.for_topic(topic).copied().unwrap_or(self.default);
            self.map.insert(
                topic.clone(),
                (keys::stream_key(&self.namespace, topic), retention),
            );
        }
        self.map
            .get(topic)
            .map_or(("", self.default), |(k, r)| (k.as_str(), *r))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_and_retention_per_topic() {
        let cfg = StreamsConfig::from_url(
            "redis+streams://h?namespace=n&maxlen=9&retain=*/rgb:maxlen=2&retain=a/rgb:0",
        )
        .unwrap();
        let mut c = KeyCache::new(&cfg);
        let t = |s: &str| Topic::new(s).unwrap();
        for _ in 0..2 {
            assert_eq!(c.get(&t("r/rgb")), ("n:{r/rgb}", Retention::max_len_of(2)));
            assert_eq!(c.get(&t("a/rgb")), ("n:{a/rgb}", Retention::UNLIMITED));
            assert_eq!(c.get(&t("scan")), ("n:{scan}", Retention::max_len_of(9)));
        }
        for i in 0..(KeyCache::MAX + 10) {
            let (_, r) = c.get(&t(&format!("x{i}/rgb")));
            assert_eq!(r.max_len(), Some(2));
        }
        assert!(c.map.len() <= KeyCache::MAX);
    }
}
