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
/// `retention`, `dead_letter_retention` (1 to 100 000 000) and
/// `redelivery_tick_ms` (milliseconds, 1 to 60 000).
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
        if seen.contains(&key) {
            return Err(bad(format!("query parameter {key:?} is given twice")));
        }
        seen.push(key);
        let number = || {
            value
                .parse::<u64>()
                .ok()
                .filter(|n| *n > 0)
                .ok_or_else(|| bad(format!("{key} must be a positive integer, got {value:?}")))
        };
        match key {
            "retention" => {
                config.retention = usize::try_from(number()?).unwrap_or(usize::MAX);
            }
            "dead_letter_retention" => {
                config.dead_letter_retention = usize::try_from(number()?).unwrap_or(usize::MAX);
            }
            "redelivery_tick_ms" => {
                config.redelivery_tick = Duration::from_millis(number()?);
            }
            _ => {
                return Err(bad(format!(
                    "unknown query parameter {key:?}: known are retention, dead_letter_retention, redelivery_tick_ms"
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
            ("memory://x?retention=0", "positive"),
            ("memory://x?retention=abc", "positive"),
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
        let e = parse("memory://u:secret@h").unwrap_err();
        assert!(!e.to_string().contains("secret"));
        assert!(parse(&format!("memory://{}", "a".repeat(129))).is_err());
    }
}
