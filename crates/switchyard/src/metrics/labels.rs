//! The cardinality guard of the `topic` label.

use std::collections::HashMap;
use std::sync::{Mutex, MutexGuard};

use super::MetricsConfig;

/// Admits the first `max` distinct topic label values; every later one is
/// [`MetricsConfig::OTHER_TOPIC`]. Each admitted value keeps a `T` (the
/// metric handles of that label).
pub(super) struct TopicLabels<T> {
    max: usize,
    seen: Mutex<HashMap<String, T>>,
}

impl<T: Clone> TopicLabels<T> {
    pub(super) fn new(max: usize) -> Self {
        TopicLabels {
            max,
            seen: Mutex::new(HashMap::new()),
        }
    }

    fn lock(&self) -> MutexGuard<'_, HashMap<String, T>> {
        // A panic elsewhere while holding the lock leaves a usable map.
        self.seen.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The value kept for `topic`'s label, made by `make(label)` the first
    /// time that label is used.
    pub(super) fn get(&self, topic: &str, make: impl FnOnce(&str) -> T) -> T {
        let mut seen = self.lock();
        if let Some(v) = seen.get(topic) {
            return v.clone();
        }
        // `max` topics plus the "other" entry.
        let admitted = seen.len() - usize::from(seen.contains_key(MetricsConfig::OTHER_TOPIC));
        let label = if admitted < self.max {
            topic
        } else {
            MetricsConfig::OTHER_TOPIC
        };
        if let Some(v) = seen.get(label) {
            return v.clone();
        }
        let v = make(label);
        seen.insert(label.to_owned(), v.clone());
        v
    }
}

/// The label a topic gets under a limit of `max`, given the labels taken
/// so far (for one-off collections that keep no handles).
pub(super) fn admit<'a>(taken: &mut Vec<String>, max: usize, topic: &'a str) -> &'a str {
    if taken.iter().any(|t| t == topic) {
        return topic;
    }
    if taken.len() < max {
        taken.push(topic.to_owned());
        topic
    } else {
        MetricsConfig::OTHER_TOPIC
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn guard_admits_max_then_other() {
        let l = TopicLabels::new(2);
        let label = |t: &str| l.get(t, |s| s.to_owned());
        assert_eq!(label("a"), "a");
        assert_eq!(label("b"), "b");
        assert_eq!(label("c"), "other");
        assert_eq!(label("d"), "other");
        assert_eq!(label("a"), "a");
        assert_eq!(l.lock().len(), 3);
    }

    #[test]
    fn a_topic_named_other_is_not_a_second_slot() {
        let l = TopicLabels::new(1);
        let label = |t: &str| l.get(t, |s| s.to_owned());
        assert_eq!(label("other"), "other");
        assert_eq!(label("b"), "b");
        assert_eq!(label("c"), "other");
    }

    #[test]
    fn admit_counts_distinct() {
        let mut taken = Vec::new();
        assert_eq!(admit(&mut taken, 1, "a"), "a");
        assert_eq!(admit(&mut taken, 1, "a"), "a");
        assert_eq!(admit(&mut taken, 1, "b"), "other");
    }
}
