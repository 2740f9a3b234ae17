//! Per-topic retention rules, shared by every adapter that keeps history.
//!
//! A [`Retention`] caps how much of a topic is kept: a length
//! ([`max_len`](Retention::max_len)), an age ([`max_age`](Retention::max_age)),
//! both, or neither ([`Retention::UNLIMITED`]: no cap at all). A
//! [`RetentionRules`] maps topic filters to retentions; for a topic,
//! [`RetentionRules::for_topic`] picks the most specific matching rule, and
//! the adapter's transport-wide setting applies when no rule matches. A
//! winning rule replaces the transport-wide setting as a whole for its
//! topics (its fields are not merged with it).
//!
//! # Which rule wins
//!
//! Among the rules whose filter matches the topic:
//!
//! 1. an exact topic (or a list naming it) beats every pattern;
//! 2. among patterns, more literal segments win (`robot-1/camera/*` over
//!    `*/camera/*`);
//! 3. then a pattern without `>`/`**` beats one with it (`a.*` over `a.>`);
//! 4. then the longer literal prefix wins: the pattern whose first wildcard
//!    comes later (`a.*.c` over `*.b.c`);
//! 5. what is still tied: the rule added first wins.
//!
//! The same filter may not be given twice (an error), so step 5 only ever
//! decides between different patterns that can match the same topics
//! (`a.*.*.d` and `a.*.c.*`).
//!
//! Wildcards never match dead-letter topics (`orders:dlq`; see
//! [`crate::topic`]): those follow a rule only when it names them, exactly
//! (`orders:dlq`) or through a dead-letter pattern (`orders.*:dlq`, `>:dlq`).
//!
//! # Text form
//!
//! Both adapters take rules from their URLs as repeated `retain` parameters,
//! `retain=<filter>:<spec>`, parsed by [`RetentionRules::push_text`]:
//!
//! - `<filter>`: a topic, a list of topics (`a,b`) or a pattern; everything
//!   before the **last** `:` (topics may contain `:` themselves);
//! - `<spec>`: `maxlen=N`, `age=D`, or both separated by `,`
//!   (`maxlen=100,age=5m`); or `0` / `unlimited` for no cap. `N` is 0 to
//!   9223372036854775807, where 0 means no length cap; `D` is `0` (no age
//!   cap) or 1ms to 365 days, written with a unit `ms`, `s`, `m`, `h` or `d`
//!   (a bare number is milliseconds).
//!
//! `*`, `>`, `/` and `:` may stand in a URL query as they are; a `+` in a
//! topic must be written `%2B` (a raw `+` in a query means a space), and
//! `&`, `#`, `%` never occur in filters.
//!
//! ```
//! use std::time::Duration;
//! use switchyard_core::{Retention, RetentionRules, Topic};
//! let mut rules = RetentionRules::new();
//! rules.push_text("*/camera/rgb:maxlen=60")?;
//! rules.push_text("*/scan:maxlen=100,age=10m")?;
//! rules.push("robot-1/camera/rgb".parse()?, Retention::UNLIMITED)?;
//! let rgb = Topic::new("robot-7/camera/rgb")?;
//! assert_eq!(rules.for_topic(&rgb).and_then(|r| r.max_len()), Some(60));
//! let own = Topic::new("robot-1/camera/rgb")?;
//! assert!(rules.for_topic(&own).is_some_and(|r| r.is_unlimited()));
//! assert!(rules.for_topic(&Topic::new("robot-1/odom")?).is_none());
//! # Ok::<(), switchyard_core::Error>(())
//! ```

use std::fmt;
use std::time::Duration;

use crate::error::{Error, Result};
use crate::topic::{PatternToken, Topic, TopicFilter};

/// How much of a topic's history to keep. See the [module docs](self).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Default)]
pub struct Retention {
    max_len: Option<u64>,
    max_age: Option<Duration>,
}

impl Retention {
    /// No cap at all: everything is kept (an adapter that must stay
    /// bounded applies its own largest bound; see its docs).
    pub const UNLIMITED: Retention = Retention {
        max_len: None,
        max_age: None,
    };
    /// Largest length cap: `i64::MAX`, the largest count Redis accepts.
    pub const MAX_LEN: u64 = i64::MAX as u64;
    /// Shortest age cap.
    pub const MIN_AGE: Duration = Duration::from_millis(1);
    /// Longest age cap: 365 days.
    pub const MAX_AGE: Duration = Duration::from_secs(365 * 24 * 60 * 60);

    /// Keep at most `n` entries; 0 means no length cap.
    pub fn max_len_of(n: u64) -> Self {
        Retention::UNLIMITED.with_max_len(n)
    }

    /// Keep entries younger than `age`; zero means no age cap.
    pub fn max_age_of(age: Duration) -> Self {
        Retention::UNLIMITED.with_max_age(age)
    }

    /// Sets the length cap; 0 means none.
    pub fn with_max_len(mut self, n: u64) -> Self {
        self.max_len = (n > 0).then_some(n);
        self
    }

    /// Sets the age cap; zero means none.
    pub fn with_max_age(mut self, age: Duration) -> Self {
        self.max_age = (!age.is_zero()).then_some(age);
        self
    }

    /// The length cap (`None`: no length cap).
    pub fn max_len(&self) -> Option<u64> {
        self.max_len
    }

    /// The age cap (`None`: no age cap).
    pub fn max_age(&self) -> Option<Duration> {
        self.max_age
    }

    /// Whether neither a length nor an age cap is set.
    pub fn is_unlimited(&self) -> bool {
        self.max_len.is_none() && self.max_age.is_none()
    }

    /// Checks the caps against their ranges (length 1 to
    /// [`MAX_LEN`](Self::MAX_LEN), age [`MIN_AGE`](Self::MIN_AGE) to
    /// [`MAX_AGE`](Self::MAX_AGE)); the message names the offending value.
    pub fn check(&self) -> std::result::Result<(), String> {
        if let Some(n) = self.max_len
            && n > Self::MAX_LEN
        {
            return Err(format!(
                "maxlen must be 0 (no cap) to {}, got {n}",
                Self::MAX_LEN
            ));
        }
        if let Some(age) = self.max_age
            && !(Self::MIN_AGE..=Self::MAX_AGE).contains(&age)
        {
            return Err(format!(
                "age must be 0 (no cap) or 1ms to 365 days (365d), got {age:?}"
            ));
        }
        Ok(())
    }

    /// Parses a spec: `maxlen=N`, `age=D`, both (`maxlen=N,age=D`), `0` or
    /// `unlimited` (see the [module docs](self)).
    pub fn parse_spec(spec: &str) -> std::result::Result<Self, String> {
        const ALLOWED: &str = "use maxlen=N, age=D (D like 500ms, 30s, 5m, 2h, 7d), both as maxlen=N,age=D, or 0 / unlimited for no cap";
        let spec = spec.trim();
        if spec == "0" || spec.eq_ignore_ascii_case("unlimited") {
            return Ok(Retention::UNLIMITED);
        }
        if spec.is_empty() {
            return Err(format!("the retention after ':' is empty: {ALLOWED}"));
        }
        let mut out = Retention::UNLIMITED;
        let (mut len_seen, mut age_seen) = (false, false);
        for part in spec.split(',') {
            let (key, value) = part
                .trim()
                .split_once('=')
                .ok_or_else(|| format!("{part:?} is not a setting: {ALLOWED}"))?;
            match key.trim() {
                "maxlen" if !len_seen => {
                    len_seen = true;
                    let n: u64 = value.trim().parse().map_err(|_| {
                        format!(
                            "maxlen must be an integer 0 (no cap) to {}, got {value:?}",
                            Self::MAX_LEN
                        )
                    })?;
                    out = out.with_max_len(n);
                }
                "age" if !age_seen => {
                    age_seen = true;
                    out = out.with_max_age(parse_age(value.trim())?);
                }
                "maxlen" | "age" => return Err(format!("{key} is given twice: {ALLOWED}")),
                other => return Err(format!("unknown setting {other:?}: {ALLOWED}")),
            }
        }
        out.check()?;
        Ok(out)
    }
}

/// `500ms`, `30s`, `5m`, `2h`, `7d`, or a bare number of milliseconds.
fn parse_age(s: &str) -> std::result::Result<Duration, String> {
    let (num, unit) = match s.find(|c: char| !c.is_ascii_digit()) {
        Some(i) => (&s[..i], &s[i..]),
        None => (s, "ms"),
    };
    let n: u64 = num
        .parse()
        .map_err(|_| format!("age must be a duration like 500ms, 30s, 5m, 2h or 7d, got {s:?}"))?;
    let secs = |mul: u64| Duration::from_secs(n.saturating_mul(mul));
    match unit {
        "ms" => Ok(Duration::from_millis(n)),
        "s" => Ok(secs(1)),
        "m" => Ok(secs(60)),
        "h" => Ok(secs(3600)),
        "d" => Ok(secs(86_400)),
        _ => Err(format!(
            "unknown unit {unit:?} in age {s:?}: use ms, s, m, h or d"
        )),
    }
}

impl fmt::Display for Retention {
    /// The spec form: `unlimited`, `maxlen=N`, `age=Dms` or both.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match (self.max_len, self.max_age) {
            (None, None) => f.write_str("unlimited"),
            (Some(n), None) => write!(f, "maxlen={n}"),
            (None, Some(a)) => write!(f, "age={}ms", a.as_millis()),
            (Some(n), Some(a)) => write!(f, "maxlen={n},age={}ms", a.as_millis()),
        }
    }
}

/// One rule of a [`RetentionRules`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RetentionRule {
    filter: TopicFilter,
    retention: Retention,
    /// Precedence among patterns (larger wins); exact rules use `None`.
    rank: Option<(usize, bool, usize)>,
}

impl RetentionRule {
    /// The filter the rule applies to.
    pub fn filter(&self) -> &TopicFilter {
        &self.filter
    }

    /// What the rule keeps.
    pub fn retention(&self) -> &Retention {
        &self.retention
    }
}

/// An ordered set of retention rules, at most
/// [`MAX_RULES`](Self::MAX_RULES). See the [module docs](self) for which
/// rule wins.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct RetentionRules {
    rules: Vec<RetentionRule>,
}

impl RetentionRules {
    /// Most rules in one set.
    pub const MAX_RULES: usize = 256;

    /// No rules.
    pub fn new() -> Self {
        RetentionRules::default()
    }

    /// Adds a rule. Fails (with [`Error::InvalidConfig`]) when the filter
    /// already has a rule, when there are already
    /// [`MAX_RULES`](Self::MAX_RULES) rules, or when `retention` is out of
    /// range.
    pub fn push(&mut self, filter: TopicFilter, retention: Retention) -> Result<()> {
        let rule_text = || format!("{filter}:{retention}");
        if self.rules.len() >= Self::MAX_RULES {
            return Err(Error::InvalidConfig(format!(
                "retention rule {:?}: at most {} rules are allowed",
                rule_text(),
                Self::MAX_RULES
            )));
        }
        retention.check().map_err(|reason| {
            Error::InvalidConfig(format!("retention rule {:?}: {reason}", rule_text()))
        })?;
        if self.rules.iter().any(|r| r.filter == filter) {
            return Err(Error::InvalidConfig(format!(
                "retention rule {:?}: the filter {filter} already has a rule; give each filter once",
                rule_text()
            )));
        }
        let rank = match &filter {
            TopicFilter::Pattern(p) => {
                let tokens = p.tokens();
                let literals = tokens
                    .iter()
                    .filter(|t| matches!(t, PatternToken::Literal(_)))
                    .count();
                let no_rest = !tokens.iter().any(|t| matches!(t, PatternToken::Rest));
                let prefix = tokens
                    .iter()
                    .position(|t| !matches!(t, PatternToken::Literal(_)))
                    .unwrap_or(tokens.len());
                Some((literals, no_rest, prefix))
            }
            _ => None,
        };
        self.rules.push(RetentionRule {
            filter,
            retention,
            rank,
        });
        Ok(())
    }

    /// Parses and adds one rule in text form, `<filter>:<spec>` (see the
    /// [module docs](self)). Errors quote the rule and say what is allowed.
    pub fn push_text(&mut self, rule: &str) -> Result<()> {
        let bad =
            |reason: String| Error::InvalidConfig(format!("retention rule {rule:?}: {reason}"));
        let (filter, spec) = rule.rsplit_once(':').ok_or_else(|| {
            bad("expected <filter>:<spec>, e.g. */camera/rgb:maxlen=60 or orders.>:age=1h".into())
        })?;
        let retention = Retention::parse_spec(spec).map_err(bad)?;
        let filter = TopicFilter::parse(filter).map_err(|e| match e {
            Error::InvalidTopic { reason, .. } => bad(format!("bad filter {filter:?}: {reason}")),
            other => bad(other.to_string()),
        })?;
        self.push(filter, retention).map_err(|e| match e {
            Error::InvalidConfig(reason) if !reason.starts_with("retention rule") => bad(reason),
            other => other,
        })
    }

    /// The rules, in the order they were added.
    pub fn rules(&self) -> &[RetentionRule] {
        &self.rules
    }

    /// Whether there are no rules.
    pub fn is_empty(&self) -> bool {
        self.rules.is_empty()
    }

    /// Number of rules.
    pub fn len(&self) -> usize {
        self.rules.len()
    }

    /// The retention of the most specific rule matching `topic`, or `None`
    /// when no rule matches (the adapter's transport-wide setting applies).
    /// A linear scan over the rules: adapters cache the answer per topic.
    pub fn for_topic(&self, topic: &Topic) -> Option<&Retention> {
        let mut best: Option<&RetentionRule> = None;
        for rule in &self.rules {
            if !rule.filter.matches(topic.as_str()) {
                continue;
            }
            match rule.rank {
                // An exact match: nothing beats it (an earlier exact rule
                // for the same topic cannot exist in a list twice over,
                // and the first one found wins).
                None => return Some(&rule.retention),
                Some(rank) => {
                    if best.is_none_or(|b| b.rank.is_some_and(|br| rank > br)) {
                        best = Some(rule);
                    }
                }
            }
        }
        best.map(|r| &r.retention)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rules(list: &[&str]) -> RetentionRules {
        let mut r = RetentionRules::new();
        for rule in list {
            r.push_text(rule).unwrap();
        }
        r
    }

    fn len_for(r: &RetentionRules, topic: &str) -> Option<Option<u64>> {
        r.for_topic(&Topic::new(topic).unwrap())
            .map(|x| x.max_len())
    }

    #[test]
    fn precedence() {
        let r = rules(&[
            ">:maxlen=1",
            "*/camera/*:maxlen=2",
            "*/camera/rgb:maxlen=3",
            "robot-1/camera/*:maxlen=4",
            "robot-1/camera/rgb:maxlen=5",
            "a.>:maxlen=6",
            "a.*:maxlen=7",
            "*.b.c:maxlen=8",
            "a.*.c:maxlen=9",
            "x.*.*.d:maxlen=10",
            "x.*.c.*:maxlen=11",
        ]);
        assert_eq!(len_for(&r, "robot-1/camera/rgb"), Some(Some(5)));
        // Two literals each: the longer literal prefix wins.
        assert_eq!(len_for(&r, "robot-1/camera/depth"), Some(Some(4)));
        assert_eq!(len_for(&r, "robot-2/camera/rgb"), Some(Some(3)));
        assert_eq!(len_for(&r, "robot-2/camera/depth"), Some(Some(2)));
        assert_eq!(len_for(&r, "robot-2/odom"), Some(Some(1)));
        assert_eq!(len_for(&r, "a.b"), Some(Some(7)));
        assert_eq!(len_for(&r, "a.b.d"), Some(Some(6)));
        assert_eq!(len_for(&r, "a.b.c"), Some(Some(9)));
        assert_eq!(len_for(&r, "z.b.c"), Some(Some(8)));
        // A full tie: the rule added first wins.
        assert_eq!(len_for(&r, "x.y.c.d"), Some(Some(10)));
        // Rooted topics are not matched by unrooted patterns.
        assert_eq!(len_for(&r, "/scan"), None);
        // Wildcards skip dead letters; an explicit rule names them.
        assert_eq!(len_for(&r, "a.b:dlq"), None);
        let r = rules(&["a.*:maxlen=7", "a.b:dlq:maxlen=3", "x.*:dlq:age=1s"]);
        assert_eq!(len_for(&r, "a.b:dlq"), Some(Some(3)));
        assert_eq!(
            r.for_topic(&Topic::new("x.y:dlq").unwrap())
                .and_then(Retention::max_age),
            Some(Duration::from_secs(1))
        );
        assert_eq!(len_for(&r, "x.y"), None);
    }

    #[test]
    fn exact_beats_patterns_whatever_the_order() {
        let r = rules(&["a,b:maxlen=1", "*:maxlen=2", ">:maxlen=3"]);
        assert_eq!(len_for(&r, "b"), Some(Some(1)));
        assert_eq!(len_for(&r, "c"), Some(Some(2)));
        let r = rules(&[">:maxlen=3", "*:maxlen=2", "b:maxlen=1"]);
        assert_eq!(len_for(&r, "b"), Some(Some(1)));
        assert_eq!(len_for(&r, "c"), Some(Some(2)));
        assert_eq!(len_for(&r, "c.d"), Some(Some(3)));
    }

    #[test]
    fn specs() {
        let p = |s: &str| Retention::parse_spec(s);
        assert_eq!(p("0").unwrap(), Retention::UNLIMITED);
        assert_eq!(p("unlimited").unwrap(), Retention::UNLIMITED);
        assert_eq!(p("maxlen=0").unwrap(), Retention::UNLIMITED);
        assert_eq!(p("maxlen=0,age=0").unwrap(), Retention::UNLIMITED);
        assert_eq!(p("maxlen=50").unwrap().max_len(), Some(50));
        let both = p("maxlen=9223372036854775807, age=365d").unwrap();
        assert_eq!(both.max_len(), Some(Retention::MAX_LEN));
        assert_eq!(both.max_age(), Some(Retention::MAX_AGE));
        assert_eq!(p(&both.to_string()).unwrap(), both);
        assert_eq!(
            p("age=1").unwrap().max_age(),
            Some(Duration::from_millis(1))
        );
        assert_eq!(
            p("age=2h").unwrap().max_age(),
            Some(Duration::from_secs(7200))
        );
        for (bad, needle) in [
            ("", "empty"),
            ("maxlen", "not a setting"),
            ("maxlen=-1", "maxlen must be an integer"),
            (
                "maxlen=9223372036854775808",
                "maxlen must be 0 (no cap) to 9223372036854775807",
            ),
            ("maxlen=18446744073709551616", "maxlen must be an integer"),
            ("age=366d", "age must be 0 (no cap) or 1ms to 365 days"),
            ("age=18446744073709551615d", "age must be"),
            ("age=5y", "unknown unit"),
            ("age=", "age must be a duration"),
            ("maxlen=1,maxlen=2", "given twice"),
            ("count=3", "unknown setting"),
        ] {
            let e = p(bad).unwrap_err();
            assert!(e.contains(needle), "{bad}: {e}");
        }
    }

    #[test]
    fn bad_rules_name_the_rule() {
        for (rule, needle) in [
            ("orders", "expected <filter>:<spec>"),
            (":maxlen=1", "bad filter"),
            ("a..b:maxlen=1", "bad filter"),
            ("a.*x:maxlen=1", "bad filter"),
            ("a:maxlen=x", "maxlen must be an integer"),
        ] {
            let e = RetentionRules::new().push_text(rule).unwrap_err();
            assert!(matches!(e, Error::InvalidConfig(_)), "{rule}: {e}");
            let text = e.to_string();
            assert!(text.contains(&format!("{rule:?}")), "{rule}: {text}");
            assert!(text.contains(needle), "{rule}: {text}");
        }
        let mut r = rules(&["a.*:maxlen=1"]);
        let e = r.push_text("a.*:maxlen=2").unwrap_err().to_string();
        assert!(e.contains("already has a rule"), "{e}");
    }

    #[test]
    fn bounded() {
        let mut r = RetentionRules::new();
        for i in 0..RetentionRules::MAX_RULES {
            r.push_text(&format!("t{i}.*:maxlen={i}")).unwrap();
        }
        let e = r.push_text("x:maxlen=1").unwrap_err().to_string();
        assert!(e.contains("at most 256 rules"), "{e}");
        assert_eq!(r.len(), 256);
        assert_eq!(len_for(&r, "t255.x"), Some(Some(255)));
        assert_eq!(len_for(&r, "t0.x"), Some(None));
        let e = RetentionRules::new()
            .push(
                TopicFilter::parse("a").unwrap(),
                Retention::max_age_of(Duration::MAX),
            )
            .unwrap_err()
            .to_string();
        assert!(e.contains("age must be"), "{e}");
    }
}
