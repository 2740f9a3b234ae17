//! Wildcard patterns over topic names (see the [module docs](super)).

use std::fmt;
use std::sync::Arc;

use super::{DEAD_LETTER_SUFFIX, Topic, is_name_char, is_separator};
use crate::error::{Error, Result};

/// One token of a [`Pattern`].
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum PatternToken {
    /// A literal segment.
    Literal(String),
    /// `*`: exactly one segment.
    One,
    /// `>` or `**`: one or more trailing segments.
    Rest,
}

/// A wildcard pattern over topic names. See the [module docs](crate::topic).
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct Pattern {
    source: Arc<str>,
    /// Whether it starts with `/` (matches only topics that do).
    rooted: bool,
    tokens: Vec<PatternToken>,
    /// Separator after token i (None for the last token).
    seps: Vec<u8>,
    /// Written `<pattern>:dlq` with wildcards: matches the dead-letter
    /// topics of the topics `<pattern>` matches (and nothing else).
    dead_letters: bool,
}

impl Pattern {
    /// Parses a pattern such as `orders.*`, `*/camera/rgb` or `robot-1/>`.
    pub fn new(source: &str) -> Result<Self> {
        // `orders.*:dlq`, `>:dlq`: the dead letters of what the wildcard
        // pattern before the suffix matches.
        if let Some(base) = source.strip_suffix(DEAD_LETTER_SUFFIX)
            && base.contains(['*', '>'])
        {
            let mut p = Self::parse(base).map_err(|e| match e {
                Error::InvalidTopic { reason, .. } => Error::invalid_topic(source, reason),
                other => other,
            })?;
            p.source = Arc::from(source);
            p.dead_letters = true;
            return Ok(p);
        }
        Self::parse(source)
    }

    fn parse(source: &str) -> Result<Self> {
        if source.is_empty() {
            return Err(Error::invalid_topic(source, "filters may not be empty"));
        }
        if source.len() > Topic::MAX_LEN {
            return Err(Error::invalid_topic(
                source,
                format!("filters are at most {} bytes", Topic::MAX_LEN),
            ));
        }
        let mut tokens = Vec::new();
        let mut seps = Vec::new();
        let bytes = source.as_bytes();
        let rooted = bytes.first() == Some(&b'/');
        let mut start = usize::from(rooted);
        let mut i = start;
        loop {
            let at_end = i == bytes.len();
            if at_end || is_separator(bytes[i]) {
                let seg = &source[start..i];
                let token = match seg {
                    "" => {
                        return Err(Error::invalid_topic(
                            source,
                            "empty segment: separators ('.' and '/') may not trail or repeat, and only '/' may lead",
                        ));
                    }
                    "*" => PatternToken::One,
                    ">" | "**" => PatternToken::Rest,
                    s => {
                        if s.contains(['*', '>']) {
                            return Err(Error::invalid_topic(
                                source,
                                "a wildcard must be a whole segment ('*', '>' or '**')",
                            ));
                        }
                        if let Some(bad) =
                            s.chars().find(|&c| !c.is_ascii() || !is_name_char(c as u8))
                        {
                            return Err(Error::invalid_topic(
                                source,
                                format!("character {bad:?} is not allowed in a filter"),
                            ));
                        }
                        PatternToken::Literal(s.to_owned())
                    }
                };
                if matches!(tokens.last(), Some(PatternToken::Rest)) {
                    return Err(Error::invalid_topic(
                        source,
                        "'>' (or '**') must be the last token of a filter",
                    ));
                }
                tokens.push(token);
                if at_end {
                    break;
                }
                seps.push(bytes[i]);
                start = i + 1;
            }
            i += 1;
        }
        Ok(Pattern {
            source: Arc::from(source),
            rooted,
            tokens,
            seps,
            dead_letters: false,
        })
    }

    /// Whether this is a dead-letter pattern (`orders.*:dlq`, `>:dlq`):
    /// it matches the dead-letter topics of the topics its part before
    /// `:dlq` matches, and only those.
    pub fn matches_dead_letters(&self) -> bool {
        self.dead_letters
    }

    /// The pattern as written.
    pub fn as_str(&self) -> &str {
        &self.source
    }

    /// Whether the pattern starts with `/`: it then matches only topics
    /// that start with `/`, and [`tokens`](Self::tokens) are those after it.
    pub fn is_rooted(&self) -> bool {
        self.rooted
    }

    /// The parsed tokens (after a leading `/`).
    pub fn tokens(&self) -> &[PatternToken] {
        &self.tokens
    }

    /// Whether the pattern contains any wildcard.
    pub fn has_wildcards(&self) -> bool {
        self.tokens
            .iter()
            .any(|t| !matches!(t, PatternToken::Literal(_)))
    }

    /// The literal prefix before the first wildcard, including its trailing
    /// separator (`robot-1/` for `robot-1/*/rgb`); useful to narrow a scan.
    pub fn literal_prefix(&self) -> String {
        let mut out = String::from(if self.rooted { "/" } else { "" });
        for (i, t) in self.tokens.iter().enumerate() {
            match t {
                PatternToken::Literal(s) => {
                    out.push_str(s);
                    if let Some(&sep) = self.seps.get(i) {
                        out.push(char::from(sep));
                    }
                }
                _ => break,
            }
        }
        out
    }

    /// Whether `topic` matches. Wildcards never match dead-letter topics,
    /// except in a dead-letter pattern (`orders.*:dlq`), which matches
    /// only them.
    pub fn matches(&self, topic: &str) -> bool {
        if self.dead_letters {
            return topic
                .strip_suffix(DEAD_LETTER_SUFFIX)
                .is_some_and(|origin| {
                    !origin.ends_with(DEAD_LETTER_SUFFIX) && self.matches_base(origin)
                });
        }
        if self.has_wildcards() && topic.ends_with(DEAD_LETTER_SUFFIX) {
            return false;
        }
        self.matches_base(topic)
    }

    fn matches_base(&self, topic: &str) -> bool {
        let (rooted, topic) = match topic.strip_prefix('/') {
            Some(rest) => (true, rest),
            None => (false, topic),
        };
        if rooted != self.rooted {
            return false;
        }
        let bytes = topic.as_bytes();
        let mut pos = 0;
        for (i, token) in self.tokens.iter().enumerate() {
            // Find the end of the current topic segment.
            let seg_end = bytes[pos..]
                .iter()
                .position(|&c| is_separator(c))
                .map_or(bytes.len(), |p| pos + p);
            match token {
                PatternToken::Rest => return pos < bytes.len(),
                PatternToken::One => {
                    if seg_end == pos {
                        return false;
                    }
                }
                PatternToken::Literal(lit) => {
                    if &topic[pos..seg_end] != lit.as_str() {
                        return false;
                    }
                }
            }
            match self.seps.get(i) {
                Some(&sep) => {
                    if seg_end >= bytes.len() || bytes[seg_end] != sep {
                        return false;
                    }
                    pos = seg_end + 1;
                }
                None => return seg_end == bytes.len(),
            }
        }
        false
    }
}

impl fmt::Debug for Pattern {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Pattern({:?})", &*self.source)
    }
}

impl fmt::Display for Pattern {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.source)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pat(s: &str) -> Pattern {
        Pattern::new(s).unwrap()
    }

    #[test]
    fn pattern_matching() {
        assert!(pat("*/camera/rgb").matches("robot-7/camera/rgb"));
        assert!(!pat("*/camera/rgb").matches("robot-7/camera/depth"));
        assert!(!pat("*/camera/rgb").matches("fleet/robot-7/camera/rgb"));
        assert!(pat("orders.*").matches("orders.created"));
        assert!(!pat("orders.*").matches("orders.eu.created"));
        assert!(!pat("orders.*").matches("orders"));
        assert!(!pat("orders.*").matches("orders/created"));
        assert!(pat("orders.>").matches("orders.eu.created"));
        assert!(pat("orders.**").matches("orders.eu.created"));
        assert!(pat("orders.>").matches("orders.created"));
        assert!(!pat("orders.>").matches("orders"));
        assert!(pat(">").matches("anything/at.all"));
        assert!(pat("robot-1/>").matches("robot-1/camera/rgb"));
        assert!(pat("*.*").matches("a.b"));
        assert!(!pat("*.*").matches("a.b.c"));
        assert!(!pat("*.*").matches("a"));
        assert!(pat("a.*.c").matches("a.x.c"));
        assert!(!pat("a.*.c").matches("a.x.d"));
        assert!(!pat("a.*.c").matches("a..c"));
    }

    #[test]
    fn patterns_skip_dead_letters() {
        assert!(!pat("orders.*").matches("orders.created:dlq"));
        assert!(!pat(">").matches("x:dlq"));
        assert!(pat("orders.created:dlq").matches("orders.created:dlq"));
    }

    #[test]
    fn dead_letter_patterns_match_only_dead_letters() {
        let p = pat("orders.*:dlq");
        assert!(p.matches_dead_letters());
        assert!(p.matches("orders.created:dlq"));
        assert!(!p.matches("orders.created"));
        assert!(!p.matches("billing.x:dlq"));
        assert!(!p.matches("orders.a.b:dlq"));
        let all = pat(">:dlq");
        assert!(all.matches("x:dlq") && !all.matches("/robot-1/scan:dlq"));
        assert!(pat("/>:dlq").matches("/robot-1/scan:dlq"));
        assert!(!all.matches("x"));
        assert!(!pat("orders.created:dlq").matches_dead_letters());
        assert_eq!(all.literal_prefix(), "");
        assert_eq!(p.literal_prefix(), "orders.");
        assert!(
            Pattern::new("orders.*:x:dlq").is_err()
                || !pat("orders.*:x:dlq").matches("orders.a:dlq")
        );
    }

    #[test]
    fn bad_patterns() {
        for p in [
            "", "a.>.b", "a*", "a.b*", ">x", "a..*", "*.", "a b.*", "**.a",
        ] {
            assert!(Pattern::new(p).is_err(), "{p}");
        }
    }

    #[test]
    fn prefixes() {
        assert_eq!(pat("robot-1/*/rgb").literal_prefix(), "robot-1/");
        assert_eq!(pat("*/rgb").literal_prefix(), "");
        assert_eq!(pat("a.b.>").literal_prefix(), "a.b.");
    }
}
