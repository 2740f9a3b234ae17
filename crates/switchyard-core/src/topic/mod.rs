//! Topic names and topic filters.
//!
//! # Topic names
//!
//! A [`Topic`] is 1 to [`Topic::MAX_LEN`] (255) bytes of ASCII letters, digits
//! and `- _ : @ + =`, split into segments by the separators `.` and `/`.
//! So `orders.created`, `robot-1/camera/rgb` and `fleet-a/robot-1.scan` are all
//! valid. Segments may not be empty (no trailing or doubled separators, no
//! leading `.`). Wildcards (`*`, `>`), spaces, control characters, braces and
//! any other character are rejected with [`Error::InvalidTopic`].
//!
//! A topic may start with one `/`, as ROS-style absolute names do (`/scan`,
//! `/robot-1/camera/rgb`). The `/` is part of the name: `/scan` and `scan`
//! are two topics (with their own stream keys and channels), and `//scan`
//! is refused like any empty segment.
//!
//! A topic ending in [`DEAD_LETTER_SUFFIX`] (`:dlq`) is a dead-letter topic;
//! [`Topic::dead_letter`] names the dead-letter topic of a topic. A
//! dead-letter topic may be up to [`Topic::MAX_DEAD_LETTER_LEN`] (259) bytes,
//! so every valid topic, even one of 255 bytes, has one.
//!
//! # Filters
//!
//! A [`TopicFilter`] is an exact topic, a list of topics, or a pattern. In a
//! pattern, `*` stands for exactly one whole segment and `>` (or `**`) for
//! one or more trailing segments; it must be the last token. Separators must
//! match exactly: `orders.*` matches `orders.created` but neither
//! `orders.eu.created` nor `orders/created`; `*/camera/rgb` matches
//! `robot-7/camera/rgb`; `robot-1/>` matches `robot-1/scan` and
//! `robot-1/camera/rgb`.
//!
//! A pattern matches topics rooted like itself: `/*/camera/rgb` matches
//! `/robot-7/camera/rgb` but not `robot-7/camera/rgb`, `*/camera/rgb` only
//! the latter, and `/>` every topic that starts with `/` (`>` alone every
//! topic that does not).
//!
//! Wildcards never match dead-letter topics: subscribe to those by name.
//!
//! # Arbitrary ids in topics
//!
//! [`encode_segment`] turns any string (a room id with spaces, braces or
//! non-ASCII characters) into one valid segment, reversibly
//! ([`decode_segment`]): `rooms.{encode_segment(id)?}`.

use std::fmt;
use std::str::FromStr;
use std::sync::Arc;

use crate::error::{Error, Result};

mod pattern;
mod segment;

pub use pattern::{Pattern, PatternToken};
pub use segment::{decode_segment, encode_segment};

/// Suffix of dead-letter topics: the dead letters of `orders` live on `orders:dlq`.
pub const DEAD_LETTER_SUFFIX: &str = ":dlq";

fn is_name_char(c: u8) -> bool {
    c.is_ascii_alphanumeric() || matches!(c, b'-' | b'_' | b':' | b'@' | b'+' | b'=')
}

/// The whole character that starts at byte `i` of `s` (a non-ASCII one is
/// several bytes; showing its first byte alone would garble it, `é` -> `Ã`).
/// Falls back to U+FFFD when `i` is not a character boundary.
fn char_at(s: &str, i: usize) -> char {
    s.get(i..)
        .and_then(|rest| rest.chars().next())
        .unwrap_or(char::REPLACEMENT_CHARACTER)
}

fn is_separator(c: u8) -> bool {
    c == b'.' || c == b'/'
}

/// A validated topic name; cheap to clone (reference counted).
///
/// ```
/// use switchyard_core::Topic;
/// let t = Topic::new("robot-1/camera/rgb")?;
/// assert_eq!(t.as_str(), "robot-1/camera/rgb");
/// assert!(Topic::new("orders..created").is_err());
/// assert!(Topic::new("orders.*").is_err());
/// # Ok::<(), switchyard_core::Error>(())
/// ```
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Topic(Arc<str>);

impl Topic {
    /// Longest topic name accepted, in bytes.
    pub const MAX_LEN: usize = 255;

    /// Longest dead-letter topic name (`{topic}:dlq`), in bytes:
    /// [`MAX_LEN`](Self::MAX_LEN) plus the suffix, so that every topic has
    /// a dead-letter topic and dead-lettering never fails on a name.
    pub const MAX_DEAD_LETTER_LEN: usize = Self::MAX_LEN + DEAD_LETTER_SUFFIX.len();

    /// Validates and creates a topic name.
    pub fn new(name: impl AsRef<str>) -> Result<Self> {
        let name = name.as_ref();
        validate_topic(name)?;
        Ok(Topic(Arc::from(name)))
    }

    /// The name as a string slice.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// Whether this is a dead-letter topic (ends in `:dlq`).
    pub fn is_dead_letter(&self) -> bool {
        self.0.ends_with(DEAD_LETTER_SUFFIX)
    }

    /// The dead-letter topic of this topic: `{topic}:dlq`.
    ///
    /// Fails only for a dead-letter topic of [`MAX_LEN`](Self::MAX_LEN)
    /// bytes or more (the dead letters of dead letters of the longest
    /// topics); for every other topic it succeeds.
    pub fn dead_letter(&self) -> Result<Topic> {
        Topic::new(format!("{}{}", self.0, DEAD_LETTER_SUFFIX))
    }

    /// For a dead-letter topic, the topic it collects dead letters of.
    pub fn dead_letter_origin(&self) -> Option<Topic> {
        let base = self.0.strip_suffix(DEAD_LETTER_SUFFIX)?;
        Topic::new(base).ok()
    }
}

fn validate_topic(name: &str) -> Result<()> {
    if name.is_empty() {
        return Err(Error::invalid_topic(name, "topic names may not be empty"));
    }
    let max = match name.strip_suffix(DEAD_LETTER_SUFFIX) {
        Some(origin) if !origin.is_empty() => Topic::MAX_DEAD_LETTER_LEN,
        _ => Topic::MAX_LEN,
    };
    if name.len() > max {
        return Err(Error::invalid_topic(
            name,
            format!(
                "topic names are at most {} bytes ({} for a dead-letter topic ending in {DEAD_LETTER_SUFFIX}), this one has {}",
                Topic::MAX_LEN,
                Topic::MAX_DEAD_LETTER_LEN,
                name.len()
            ),
        ));
    }
    let bytes = name.as_bytes();
    // One leading `/` roots the name (`/scan`); it opens no empty segment.
    let rooted = usize::from(bytes.first() == Some(&b'/'));
    let mut prev_sep = true;
    for (i, &c) in bytes.iter().enumerate().skip(rooted) {
        if is_separator(c) {
            if prev_sep {
                return Err(Error::invalid_topic(
                    name,
                    format!(
                        "empty segment at byte {i}: separators ('.' and '/') may not trail or repeat, and only '/' may lead"
                    ),
                ));
            }
            prev_sep = true;
        } else if is_name_char(c) {
            prev_sep = false;
        } else if c == b'*' || c == b'>' {
            return Err(Error::invalid_topic(
                name,
                "wildcards ('*', '>') are only allowed in filters, not in topic names",
            ));
        } else {
            return Err(Error::invalid_topic(
                name,
                format!(
                    "character {:?} at byte {i} is not allowed: use ASCII letters, digits, '-', '_', ':', '@', '+', '=' and the separators '.' and '/'",
                    char_at(name, i)
                ),
            ));
        }
    }
    if prev_sep {
        return Err(Error::invalid_topic(
            name,
            "topic names may not end with a separator",
        ));
    }
    Ok(())
}

impl fmt::Display for Topic {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl fmt::Debug for Topic {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Topic({:?})", &*self.0)
    }
}

impl FromStr for Topic {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self> {
        Topic::new(s)
    }
}

impl TryFrom<&str> for Topic {
    type Error = Error;
    fn try_from(s: &str) -> Result<Self> {
        Topic::new(s)
    }
}

impl TryFrom<String> for Topic {
    type Error = Error;
    fn try_from(s: String) -> Result<Self> {
        Topic::new(s)
    }
}

impl AsRef<str> for Topic {
    fn as_ref(&self) -> &str {
        &self.0
    }
}

impl serde::Serialize for Topic {
    fn serialize<S: serde::Serializer>(&self, s: S) -> std::result::Result<S::Ok, S::Error> {
        s.serialize_str(&self.0)
    }
}

impl<'de> serde::Deserialize<'de> for Topic {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> std::result::Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        Topic::new(s).map_err(serde::de::Error::custom)
    }
}

/// What a subscription listens to.
///
/// ```
/// use switchyard_core::TopicFilter;
/// let f: TopicFilter = "*/camera/rgb".parse()?;
/// assert!(f.matches("robot-7/camera/rgb"));
/// let f: TopicFilter = "orders.*".parse()?;
/// assert!(f.matches("orders.created"));
/// assert!(!f.matches("orders.eu.created"));
/// let f: TopicFilter = "a.b, c/d".parse()?; // a list
/// assert!(f.matches("c/d"));
/// # Ok::<(), switchyard_core::Error>(())
/// ```
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum TopicFilter {
    /// Exactly one topic.
    Exact(Topic),
    /// Any of these topics (no duplicates, at least one).
    List(Vec<Topic>),
    /// A wildcard pattern.
    Pattern(Pattern),
}

impl TopicFilter {
    /// Parses a filter: a comma-separated list of topics, one topic, or a
    /// pattern containing `*`, `>` or `**`.
    pub fn parse(s: &str) -> Result<Self> {
        let trimmed = s.trim();
        if trimmed.contains(',') {
            let mut topics = Vec::new();
            for part in trimmed.split(',') {
                let part = part.trim();
                if part.contains(['*', '>']) {
                    return Err(Error::invalid_topic(
                        s,
                        "a list of topics may not contain patterns",
                    ));
                }
                let t = Topic::new(part)?;
                if !topics.contains(&t) {
                    topics.push(t);
                }
            }
            return Ok(TopicFilter::List(topics));
        }
        if trimmed.contains(['*', '>']) {
            return Ok(TopicFilter::Pattern(Pattern::new(trimmed)?));
        }
        Ok(TopicFilter::Exact(Topic::new(trimmed)?))
    }

    /// A list filter; fails on an empty list.
    pub fn list(topics: impl IntoIterator<Item = Topic>) -> Result<Self> {
        let mut v: Vec<Topic> = Vec::new();
        for t in topics {
            if !v.contains(&t) {
                v.push(t);
            }
        }
        if v.is_empty() {
            return Err(Error::invalid_topic(
                "",
                "a list filter needs at least one topic",
            ));
        }
        Ok(TopicFilter::List(v))
    }

    /// Whether `topic` passes the filter.
    pub fn matches(&self, topic: &str) -> bool {
        match self {
            TopicFilter::Exact(t) => t.as_str() == topic,
            TopicFilter::List(ts) => ts.iter().any(|t| t.as_str() == topic),
            TopicFilter::Pattern(p) => p.matches(topic),
        }
    }

    /// The fixed topics of an exact or list filter; `None` for a pattern.
    pub fn topics(&self) -> Option<&[Topic]> {
        match self {
            TopicFilter::Exact(t) => Some(std::slice::from_ref(t)),
            TopicFilter::List(ts) => Some(ts),
            TopicFilter::Pattern(_) => None,
        }
    }

    /// Whether this filter is a wildcard pattern.
    pub fn is_pattern(&self) -> bool {
        matches!(self, TopicFilter::Pattern(_))
    }
}

impl fmt::Display for TopicFilter {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            TopicFilter::Exact(t) => t.fmt(f),
            TopicFilter::List(ts) => {
                for (i, t) in ts.iter().enumerate() {
                    if i > 0 {
                        f.write_str(",")?;
                    }
                    t.fmt(f)?;
                }
                Ok(())
            }
            TopicFilter::Pattern(p) => p.fmt(f),
        }
    }
}

impl FromStr for TopicFilter {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self> {
        TopicFilter::parse(s)
    }
}

impl From<Topic> for TopicFilter {
    fn from(t: Topic) -> Self {
        TopicFilter::Exact(t)
    }
}

impl From<Pattern> for TopicFilter {
    fn from(p: Pattern) -> Self {
        TopicFilter::Pattern(p)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn valid_topics() {
        for t in [
            "orders.created",
            "robot-1/camera/rgb",
            "a",
            "fleet-a/robot-1.scan",
            "orders.created:dlq",
            "user@host+x=y_z",
        ] {
            assert!(Topic::new(t).is_ok(), "{t}");
        }
        assert!(Topic::new("a".repeat(255)).is_ok());
    }

    #[test]
    fn invalid_topics() {
        for t in [
            "", ".a", "a.", "a..b", "a//b", "//a", "/", "a/", "a b", "a*", "*", "a.>", "a\n",
            "a{b}", "é", "a\0b", "a\tb",
        ] {
            let e = Topic::new(t).unwrap_err();
            assert!(matches!(e, Error::InvalidTopic { .. }), "{t}: {e}");
        }
        assert!(Topic::new("a".repeat(256)).is_err());
    }

    /// `Topic::new("ordérs")` used to report "character 'Ã' at byte 3": the
    /// first byte of `é` shown as a Latin-1 character.
    #[test]
    fn non_ascii_characters_are_named_whole() {
        for (name, shown) in [
            ("ordérs", "character 'é' at byte 3"),
            ("日本", "character '日' at byte 0"),
            ("a.b🚀", "character '🚀' at byte 3"),
        ] {
            let e = Topic::new(name).unwrap_err().to_string();
            assert!(e.contains(shown), "{name}: {e}");
            assert!(!e.contains('Ã') && !e.contains('\u{fffd}'), "{name}: {e}");
        }
        for (filter, shown) in [("ordérs.*", "'é'"), ("*.日本", "'日'")] {
            let e = TopicFilter::parse(filter).unwrap_err().to_string();
            assert!(e.contains(&format!("character {shown}")), "{filter}: {e}");
        }
    }

    #[test]
    fn dead_letters() {
        let t = Topic::new("orders").unwrap();
        let d = t.dead_letter().unwrap();
        assert_eq!(d.as_str(), "orders:dlq");
        assert!(d.is_dead_letter());
        assert_eq!(d.dead_letter_origin().unwrap(), t);
        // Every topic has a dead-letter topic, the longest too (before,
        // topics of 252 to 255 bytes had none and their dead letters were
        // lost on memory).
        for len in [251, 252, 255] {
            let t = Topic::new("a".repeat(len)).unwrap();
            let d = t.dead_letter().unwrap();
            assert_eq!(d.as_str().len(), len + 4);
            assert_eq!(d.dead_letter_origin().unwrap(), t);
        }
        assert!(Topic::new("a".repeat(256)).is_err());
        assert!(Topic::new(format!("{}:dlq", "a".repeat(256))).is_err());
        assert_eq!(
            Topic::new(format!("{}:dlq", "a".repeat(255)))
                .unwrap()
                .as_str()
                .len(),
            259
        );
    }

    /// Reproduction: `/scan` and `/robot-1/camera/rgb` were refused with
    /// "empty segment at byte 0"; ROS-style absolute names start with `/`.
    #[test]
    fn rooted_names_and_patterns() {
        let pat = |s: &str| Pattern::new(s).unwrap();
        for ok in ["/scan", "/robot-1/camera/rgb", "/a.b", "/scan:dlq"] {
            assert_eq!(Topic::new(ok).unwrap().as_str(), ok);
        }
        for bad in ["/", "//scan", "/scan/", "./scan", "/.scan", "/a//b"] {
            assert!(Topic::new(bad).is_err(), "{bad}");
        }
        let rgb = pat("/*/camera/rgb");
        assert!(rgb.is_rooted());
        assert!(rgb.matches("/robot-1/camera/rgb"));
        assert!(!rgb.matches("robot-1/camera/rgb"));
        assert!(!pat("*/camera/rgb").matches("/robot-1/camera/rgb"));
        assert!(pat("*/camera/rgb").matches("robot-1/camera/rgb"));
        assert!(pat("/>").matches("/scan") && pat("/>").matches("/a/b.c"));
        assert!(!pat("/>").matches("scan"));
        assert!(!pat(">").matches("/scan"));
        assert!(pat("/scan").matches("/scan") && !pat("/scan").matches("scan"));
        assert_eq!(rgb.literal_prefix(), "/");
        assert_eq!(pat("/robot-1/*").literal_prefix(), "/robot-1/");
        assert!(Pattern::new("/").is_err() && Pattern::new("//*").is_err());
        let f: TopicFilter = "/scan, /odom".parse().unwrap();
        assert!(f.matches("/odom") && !f.matches("odom"));
    }

    #[test]
    fn filters() {
        assert!(matches!(
            TopicFilter::parse("a.b").unwrap(),
            TopicFilter::Exact(_)
        ));
        assert!(matches!(
            TopicFilter::parse("a.*").unwrap(),
            TopicFilter::Pattern(_)
        ));
        let l = TopicFilter::parse("a, b ,a").unwrap();
        assert_eq!(l.topics().unwrap().len(), 2);
        assert!(l.matches("b"));
        assert!(!l.matches("c"));
        assert!(TopicFilter::parse("a,*").is_err());
        assert!(TopicFilter::parse("a,").is_err());
        assert!(TopicFilter::parse("").is_err());
        assert!(TopicFilter::list(Vec::new()).is_err());
        assert_eq!(TopicFilter::parse("a,b").unwrap().to_string(), "a,b");
    }

    #[test]
    fn serde_round_trip() {
        let t = Topic::new("a.b").unwrap();
        let j = serde_json::to_string(&t).unwrap();
        assert_eq!(j, "\"a.b\"");
        let back: Topic = serde_json::from_str(&j).unwrap();
        assert_eq!(back, t);
        assert!(serde_json::from_str::<Topic>("\"a..b\"").is_err());
    }
}
