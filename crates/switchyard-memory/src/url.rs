//! `memory://` URLs.

use std::time::Duration;

use switchyard_core::{Error, Result};

use crate::config::MemoryConfig;

/// A parsed `memory://[NAME][?retention=N&...]` URL.
#[derive(Debug, PartialEq, Eq)]
pub(crate) struct MemoryUrl {
    /// `Some` for a named (process-wide) hub.
    pub(crate) name: Option<String>,
    pub(crate) config: MemoryConfig,
}

const MAX_NAME: usize = 128;

/// Parses a memory URL. Accepted: `memory://` (a fresh private hub) and
/// `memory://NAME` (the named hub `NAME`: ASCII letters, digits, `-`, `_`,
/// `.`), optionally followed by `/` and by the query parameters
/// `retention`, `dead_letter_retention` (0 to 100 000 000, 0 meaning the
/// largest), `redelivery_tick_ms` (milliseconds, 1 to 60 000) and
/// repeated `retain=<filter>:<spec>` rules (percent-decoded; see
/// [`switchyard_core::retention`]).
pub(crate) fn parse(url: &str) -> Result<MemoryUrl> {
    let bad = |reason: String| Error::invalid_url(url, reason);
    let (scheme, rest) = url
        .split_once("://")
        .ok_or_else(|| bad("expected memory:// or memory://NAME".into()))?;
    if !scheme.eq_ignore_ascii_case("memory") {
        return Err(bad(format!(
            "the memory adapter serves the scheme \"memory\", not {scheme:?}"
        )));
    }
    if rest.contains('#') {
        return Err(bad("fragments (#...) are not allowed".into()));
    }
    let (authority, query) = match rest.split_once('?') {
        Some((a, q)) => (a, Some(q)),
        None => (rest, None),
    };
    let name = authority.strip_suffix('/').unwrap_or(authority);
    if name.contains('/') {
        return Err(bad("a memory URL has no path: use memory://NAME".into()));
    }
    if name.contains('@') {
        return Err(bad(
            "a memory URL takes no user or password: use memory://NAME".into(),
        ));
    }
    if name.len() > MAX_NAME {
        return Err(bad(format!(
            "hub names are at most {MAX_NAME} bytes, this one has {}",
            name.len()
        )));
    }
    if let Some(c) = name
        .chars()
        .find(|c| !(c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.')))
    {
        return Err(bad(format!(
            "hub name {name:?} contains {c:?}: use ASCII letters, digits, '-', '_' and '.'"
        )));
    }
    let mut config = MemoryConfig::default();
    let mut seen: Vec<&str> = Vec::new();
    for pair in query.unwrap_or("").split('&').filter(|p| !p.is_empty()) {
        let (key, value) = pair
            .split_once('=')
            .ok_or_else(|| bad(format!("query parameter {key:?} needs a value", key = pair)))?;
        if key != "retain" && seen.contains(&key) {
            return Err(bad(format!("query parameter {key:?} is given twice")));
        }
        seen.push(key);
        let integer = || {
            value
                .parse::<u64>()
                .map_err(|_| bad(format!("{key} must be an integer, got {value:?}")))
        };
        let number = || match integer()? {
            0 => Err(bad(format!(
                "{key} must be a positive integer, got {value:?}"
            ))),
            n => Ok(n),
        };
        // 0 means no cap: the largest retention.
        let count = || {
            integer().map(|n| match n {
                0 => MemoryConfig::MAX_RETENTION,
                n => usize::try_from(n).unwrap_or(usize::MAX),
            })
        };
        match key {
            "retention" => config.retention = count()?,
            "dead_letter_retention" => config.dead_letter_retention = count()?,
            "redelivery_tick_ms" => {
                config.redelivery_tick = Duration::from_millis(number()?);
            }
            "retain" => {
                let rule = percent_decode(value).ok_or_else(|| {
                    bad(format!(
                        "retain: {value:?} is not validly percent-encoded (write a '%' as %25)"
                    ))
                })?;
                config
                    .topic_retention
                    .push_text(&rule)
                    .map_err(|e| bad(format!("retain: {e}")))?;
            }
            _ => {
                return Err(bad(format!(
                    "unknown query parameter {key:?}: known are retention, dead_letter_retention, redelivery_tick_ms, retain"
                )));
            }
        }
    }
    config.validate().map_err(|e| match e {
        Error::InvalidConfig(reason) => bad(reason),
        other => other,
    })?;
    Ok(MemoryUrl {
        name: (!name.is_empty()).then(|| name.to_owned()),
        config,
    })
}

/// Decodes a query value as URLs do: `%XX` bytes and `+` as a space.
/// `None` on a bad escape or bytes that are not UTF-8.
fn percent_decode(value: &str) -> Option<String> {
    let bytes = value.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'%' => {
                let hex = value.get(i + 1..i + 3)?;
                out.push(u8::from_str_radix(hex, 16).ok()?);
                i += 3;
            }
            b'+' => {
                out.push(b' ');
                i += 1;
            }
            b => {
                out.push(b);
                i += 1;
            }
        }
    }
    String::from_utf8(out).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepted() {
        let u = parse("memory://").unwrap();
        assert_eq!(u.name, None);
        assert_eq!(u.config, MemoryConfig::default());
        assert_eq!(parse("memory:///").unwrap().name, None);
        assert_eq!(
            parse("MEMORY://hub-1").unwrap().name.as_deref(),
            Some("hub-1")
        );
        assert_eq!(
            parse("memory://a.b_c/").unwrap().name.as_deref(),
            Some("a.b_c")
        );
        let u =
            parse("memory://x?retention=10&dead_letter_retention=5&redelivery_tick_ms=7").unwrap();
        assert_eq!(u.config.retention, 10);
        assert_eq!(u.config.dead_letter_retention, 5);
        assert_eq!(u.config.redelivery_tick, Duration::from_millis(7));
        assert_eq!(parse("memory://?retention=3").unwrap().config.retention, 3);
        let u =
            parse("memory://?retention=100000000&dead_letter_retention=1&redelivery_tick_ms=60000")
                .unwrap();
        assert_eq!(u.config.redelivery_tick, MemoryConfig::MAX_REDELIVERY_TICK);
        let u = parse("memory://?retention=0&dead_letter_retention=0").unwrap();
        assert_eq!(u.config.retention, MemoryConfig::MAX_RETENTION);
        assert_eq!(u.config.dead_letter_retention, MemoryConfig::MAX_RETENTION);
    }

    #[test]
    fn retain_rules() {
        let u = parse(
            "memory://x?retain=*/camera/rgb:maxlen=50&retention=7&retain=*/scan:maxlen=100,age=5m\
             &retain=robot-1/camera/rgb:0&retain=a%2Bb:maxlen=3&retain=orders:dlq:unlimited",
        )
        .unwrap();
        let of = |t: &str| {
            u.config
                .limits_for(&switchyard_core::Topic::new(t).unwrap())
        };
        assert_eq!(of("r/camera/rgb"), (50, None));
        assert_eq!(of("r/scan"), (100, Some(Duration::from_secs(300))));
        assert_eq!(
            of("robot-1/camera/rgb"),
            (MemoryConfig::MAX_RETENTION, None)
        );
        assert_eq!(of("a+b"), (3, None));
        assert_eq!(of("orders:dlq"), (MemoryConfig::MAX_RETENTION, None));
        assert_eq!(of("odom"), (7, None));
        assert_eq!(u.config.topic_retention.len(), 5);
    }

    #[test]
    fn rejected_with_reasons() {
        for (url, needle) in [
            ("memory:", "expected memory://"),
            ("redis://x", "scheme"),
            ("memory://a/b", "no path"),
            ("memory://u:secret@h", "no user"),
            ("memory://a b", "contains"),
            ("memory://a:1", "contains"),
            ("memory://x?redelivery_tick_ms=0", "positive"),
            ("memory://x?retention=abc", "must be an integer"),
            ("memory://x?retention=-1", "must be an integer"),
            (
                "memory://x?retain=orders",
                "retain: invalid configuration: retention rule \"orders\": expected <filter>:<spec>",
            ),
            ("memory://x?retain=a..b:maxlen=1", "bad filter"),
            (
                "memory://x?retain=a:maxlen=9223372036854775808",
                "maxlen must be 0 (no cap)",
            ),
            (
                "memory://x?retain=a:age=366d",
                "age must be 0 (no cap) or 1ms to 365 days",
            ),
            (
                "memory://x?retain=a:maxlen=1&retain=a:age=1s",
                "already has a rule",
            ),
            ("memory://x?retain=a%2:maxlen=1", "percent-encoded"),
            ("memory://x?retain=a+b:maxlen=1", "bad filter"),
            ("memory://x?retention", "needs a value"),
            ("memory://x?foo=1", "unknown query parameter"),
            ("memory://x?retention=1&retention=2", "twice"),
            ("memory://x#f", "fragments"),
            // Used to be accepted, then a tick of u64::MAX ms panicked the
            // hub's timer and a huge retention had no bound.
            (
                "memory://x?redelivery_tick_ms=18446744073709551615",
                "redelivery_tick must be 1ms to 1m",
            ),
            ("memory://x?redelivery_tick_ms=60001", "redelivery_tick"),
            (
                "memory://x?retention=18446744073709551615",
                "retention must be 1 to 100000000",
            ),
            (
                "memory://x?dead_letter_retention=100000001",
                "dead_letter_retention must be 1 to 100000000",
            ),
        ] {
            let e = parse(url).unwrap_err();
            assert!(matches!(e, Error::InvalidUrl { .. }), "{url}: {e}");
            assert!(e.to_string().contains(needle), "{url}: {e}");
        }
        let many: Vec<String> = (0..257).map(|i| format!("retain=t{i}:maxlen=1")).collect();
        let e = parse(&format!("memory://x?{}", many.join("&"))).unwrap_err();
        assert!(e.to_string().contains("at most 256 rules"), "{e}");
        let e = parse("memory://u:secret@h").unwrap_err();
        assert!(!e.to_string().contains("secret"));
        assert!(parse(&format!("memory://{}", "a".repeat(129))).is_err());
    }
}
