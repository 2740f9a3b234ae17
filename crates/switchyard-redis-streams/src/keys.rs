//! Redis key layout: one stream per topic under the namespace prefix.
//!
//! The topic sits inside a hash tag, `"{ns}:{<topic>}"`, so a topic's stream
//! and its dead-letter stream (`"{ns}:{<topic>}:dlq"`) share one Redis
//! Cluster slot. Topic names cannot contain braces, so the tag is unambiguous.

use switchyard_core::{Pattern, Topic};

/// The stream key of `topic` in namespace `namespace`.
///
/// A dead-letter topic `t:dlq` maps to `"{ns}:{t}:dlq"`: the same hash slot
/// as `t`.
///
/// ```
/// use switchyard_core::Topic;
/// use switchyard_redis_streams::keys::stream_key;
/// assert_eq!(stream_key("app", &Topic::new("orders.created")?), "app:{orders.created}");
/// assert_eq!(stream_key("app", &Topic::new("orders:dlq")?), "app:{orders}:dlq");
/// # Ok::<(), switchyard_core::Error>(())
/// ```
pub fn stream_key(namespace: &str, topic: &Topic) -> String {
    let t = topic.as_str();
    let mut key = String::with_capacity(namespace.len() + t.len() + 3);
    key.push_str(namespace);
    key.push_str(":{");
    match topic.dead_letter_origin() {
        Some(origin) => {
            key.push_str(origin.as_str());
            key.push('}');
            key.push_str(switchyard_core::DEAD_LETTER_SUFFIX);
        }
        None => {
            key.push_str(t);
            key.push('}');
        }
    }
    key
}

/// The dead-letter stream key of `topic`: `"{ns}:{<topic>}:dlq"`, the key
/// of its dead-letter topic `<topic>:dlq` (which exists for every topic, the
/// longest too: see `Topic::MAX_DEAD_LETTER_LEN`). For a dead-letter topic
/// `t:dlq` it is that topic's own key (dead letters are not dead-lettered
/// again).
///
/// ```
/// use switchyard_core::Topic;
/// use switchyard_redis_streams::keys::{dead_letter_key, stream_key};
/// let t = Topic::new("orders")?;
/// assert_eq!(dead_letter_key("app", &t), "app:{orders}:dlq");
/// assert_eq!(dead_letter_key("app", &t), stream_key("app", &t.dead_letter()?));
/// let long = Topic::new("x".repeat(255))?;
/// assert_eq!(dead_letter_key("app", &long), stream_key("app", &long.dead_letter()?));
/// # Ok::<(), switchyard_core::Error>(())
/// ```
pub fn dead_letter_key(namespace: &str, topic: &Topic) -> String {
    if topic.is_dead_letter() {
        return stream_key(namespace, topic);
    }
    let t = topic.as_str();
    let suffix = switchyard_core::DEAD_LETTER_SUFFIX;
    let mut key = String::with_capacity(namespace.len() + t.len() + suffix.len() + 3);
    key.push_str(namespace);
    key.push_str(":{");
    key.push_str(t);
    key.push('}');
    key.push_str(suffix);
    key
}

/// The topic a stream key belongs to (the inverse of [`stream_key`]);
/// `None` for keys of another namespace or shape.
///
/// ```
/// use switchyard_redis_streams::keys::topic_of_key;
/// assert_eq!(topic_of_key("app", "app:{a.b}").unwrap().as_str(), "a.b");
/// assert_eq!(topic_of_key("app", "app:{a.b}:dlq").unwrap().as_str(), "a.b:dlq");
/// assert!(topic_of_key("app", "other:{a.b}").is_none());
/// ```
pub fn topic_of_key(namespace: &str, key: &str) -> Option<Topic> {
    let rest = key.strip_prefix(namespace)?.strip_prefix(":{")?;
    let close = rest.find('}')?;
    let (inner, tail) = (&rest[..close], &rest[close + 1..]);
    match tail {
        "" => Topic::new(inner).ok(),
        s if s == switchyard_core::DEAD_LETTER_SUFFIX => Topic::new(format!("{inner}{s}")).ok(),
        _ => None,
    }
}

/// A glob for `SCAN ... MATCH` that finds the streams a pattern may match,
/// narrowed by the pattern's literal prefix. Candidates are still checked
/// with [`Pattern::matches`]: the glob is a superset.
///
/// ```
/// use switchyard_core::Pattern;
/// use switchyard_redis_streams::keys::scan_match;
/// assert_eq!(scan_match("app", &Pattern::new("robot-1/*/rgb")?), "app:{robot-1/*}");
/// assert_eq!(scan_match("app", &Pattern::new("*.x")?), "app:{*}");
/// assert_eq!(scan_match("app", &Pattern::new("orders.*:dlq")?), "app:{orders.*}:dlq");
/// # Ok::<(), switchyard_core::Error>(())
/// ```
pub fn scan_match(namespace: &str, pattern: &Pattern) -> String {
    let mut glob = String::with_capacity(namespace.len() + pattern.as_str().len() + 4);
    switchyard_redis::push_glob_escaped(&mut glob, namespace);
    glob.push_str(":{");
    if pattern.matches_dead_letters() {
        // `orders.*:dlq`: the dead-letter streams `<ns>:{orders.…}:dlq`.
        switchyard_redis::push_glob_escaped(&mut glob, &pattern.literal_prefix());
        glob.push_str("*}");
        glob.push_str(switchyard_core::DEAD_LETTER_SUFFIX);
    } else if pattern.has_wildcards() {
        switchyard_redis::push_glob_escaped(&mut glob, &pattern.literal_prefix());
        // Wildcards never match dead-letter topics: only keys ending in `}`.
        glob.push_str("*}");
    } else {
        // Without wildcards a pattern matches exactly one topic.
        switchyard_redis::push_glob_escaped(&mut glob, pattern.as_str());
        glob.push('}');
    }
    glob
}

/// A glob for `SCAN ... MATCH` that finds every dead-letter stream of
/// `namespace` (still check keys with [`topic_of_key`]).
///
/// ```
/// use switchyard_redis_streams::keys::scan_dead_letters;
/// assert_eq!(scan_dead_letters("app"), "app:{*}:dlq");
/// ```
pub fn scan_dead_letters(namespace: &str) -> String {
    let mut glob = String::with_capacity(namespace.len() + 8);
    switchyard_redis::push_glob_escaped(&mut glob, namespace);
    glob.push_str(":{*}");
    glob.push_str(switchyard_core::DEAD_LETTER_SUFFIX);
    glob
}

/// A glob for `SCAN ... MATCH` that finds every stream of `namespace`,
/// dead-letter streams included (still check keys with [`topic_of_key`]).
///
/// ```
/// use switchyard_redis_streams::keys::scan_all;
/// assert_eq!(scan_all("app"), "app:{*");
/// assert_eq!(scan_all("a*b"), "a\\*b:{*");
/// ```
pub fn scan_all(namespace: &str) -> String {
    let mut glob = String::with_capacity(namespace.len() + 3);
    switchyard_redis::push_glob_escaped(&mut glob, namespace);
    glob.push_str(":{*");
    glob
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip() {
        for t in ["a", "a.b", "robot-1/camera/rgb", "x:y", "t:dlq", "a+b=c@d"] {
            let topic = Topic::new(t).unwrap();
            let key = stream_key("ns:1", &topic);
            assert_eq!(topic_of_key("ns:1", &key).unwrap(), topic, "{key}");
        }
        assert!(topic_of_key("ns", "ns:{a}x").is_none());
        assert!(topic_of_key("ns", "ns:{a").is_none());
        assert!(topic_of_key("ns", "ns:{a b}").is_none());
        assert!(topic_of_key("ns", "nsx:{a}").is_none());
    }

    #[test]
    fn every_valid_topic_has_a_dead_letter_key() {
        for len in [1, 200, 251, 252, 253, 254, 255] {
            let topic = Topic::new("a".repeat(len)).unwrap();
            let key = dead_letter_key("ns", &topic);
            assert_eq!(key, format!("ns:{{{}}}:dlq", topic.as_str()));
            let dlq = topic.dead_letter().unwrap();
            assert_eq!(stream_key("ns", &dlq), key);
            assert_eq!(topic_of_key("ns", &key), Some(dlq));
        }
        let dlq = Topic::new("t:dlq").unwrap();
        assert_eq!(dead_letter_key("ns", &dlq), "ns:{t}:dlq");
    }

    #[test]
    fn globs_are_escaped() {
        let g = scan_match("a-b", &Pattern::new("x-y.*").unwrap());
        assert_eq!(g, "a-b:{x-y.*}");
        assert_eq!(
            scan_match("n[1]", &Pattern::new("a.*").unwrap()),
            "n\\[1\\]:{a.*}"
        );
    }
}
