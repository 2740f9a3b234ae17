//! Property tests of switchyard-core's parsers: topic names, patterns and
//! filters, message ids, dedup ids and URL redaction.
//!
//! Properties: no panic on any input; validation agrees with a plain
//! reference model of the documented grammar; what is displayed parses
//! back equal; a pattern matches exactly what a reference matcher says; a
//! redacted URL never shows its password.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use proptest::prelude::*;
use switchyard_core::{DedupId, MessageId, Pattern, Topic, TopicFilter, redact_url};

// ---- reference models of the documented grammar -------------------------

fn is_name_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || "-_:@+=".contains(c)
}

fn is_sep(c: char) -> bool {
    c == '.' || c == '/'
}

/// Topic names: 1 to 255 bytes (259 for a dead-letter topic `t:dlq`) of
/// name characters in non-empty segments separated by `.` or `/`, after an
/// optional leading `/`.
fn reference_topic_ok(s: &str) -> bool {
    let max = if s.len() > 4 && s.ends_with(":dlq") {
        259
    } else {
        255
    };
    let body = s.strip_prefix('/').unwrap_or(s);
    !body.is_empty()
        && s.len() <= max
        && s.chars().all(|c| is_name_char(c) || is_sep(c))
        && body.split(is_sep).all(|seg| !seg.is_empty())
}

/// A pattern matches a topic when segments pair up with the same
/// separators: a literal equals its segment, `*` is any one segment, and a
/// trailing `>`/`**` is one or more segments. Wildcards never match
/// dead-letter topics. A pattern with a leading `/` matches only topics
/// with one, and one without only topics without.
fn reference_matches(pattern: &str, topic: &str) -> bool {
    if pattern.starts_with('/') != topic.starts_with('/') {
        return false;
    }
    let (pattern, topic) = (
        pattern.trim_start_matches('/'),
        topic.trim_start_matches('/'),
    );
    fn split(s: &str) -> (Vec<&str>, Vec<char>) {
        (
            s.split(is_sep).collect(),
            s.chars().filter(|&c| is_sep(c)).collect(),
        )
    }
    let (ptoks, pseps) = split(pattern);
    let (ttoks, tseps) = split(topic);
    let wild = ptoks.iter().any(|t| matches!(*t, "*" | ">" | "**"));
    if wild && topic.ends_with(":dlq") {
        return false;
    }
    let rest = matches!(ptoks.last(), Some(&">") | Some(&"**"));
    let fixed = if rest { ptoks.len() - 1 } else { ptoks.len() };
    if rest {
        if ttoks.len() <= fixed {
            return false;
        }
    } else if ttoks.len() != fixed {
        return false;
    }
    for i in 0..fixed {
        if ptoks[i] != "*" && ptoks[i] != ttoks[i] {
            return false;
        }
        if i < pseps.len() && (i >= tseps.len() || pseps[i] != tseps[i]) {
            return false;
        }
    }
    true
}

// ---- strategies ---------------------------------------------------------------

fn segment() -> impl Strategy<Value = String> {
    "[a-zA-Z0-9_:@+=\\-]{1,12}"
}

fn separator() -> impl Strategy<Value = char> {
    prop_oneof![Just('.'), Just('/')]
}

/// Valid topic names, up to 255 bytes, some rooted (`/scan`).
fn valid_topic() -> impl Strategy<Value = String> {
    (
        proptest::collection::vec((segment(), separator()), 1..8),
        any::<bool>(),
    )
        .prop_map(|(parts, rooted)| {
            let mut s = String::from(if rooted { "/" } else { "" });
            for (i, (seg, sep)) in parts.iter().enumerate() {
                if i > 0 {
                    s.push(*sep);
                }
                s.push_str(seg);
            }
            s
        })
}

/// Short topic names over a small alphabet, so patterns and topics meet.
fn small_topic() -> impl Strategy<Value = String> {
    "/?[ab]{1,2}([./][ab]{1,2}){0,3}(:dlq)?"
}

fn small_pattern() -> impl Strategy<Value = String> {
    "/?([ab]{1,2}|\\*)([./]([ab]{1,2}|\\*)){0,3}([./](>|\\*\\*))?"
}

proptest! {
    /// Any id encodes to one valid segment that decodes back to it; any
    /// text either decodes or is refused, without a panic.
    #[test]
    fn segments_round_trip(id in "\\PC{1,20}", junk in "\\PC{0,40}") {
        // At most 20 characters of 4 bytes, 3 bytes each encoded: 240.
        let seg = switchyard_core::topic::encode_segment(&id).unwrap();
        let topic = Topic::new(format!("r.{seg}")).unwrap();
        prop_assert_eq!(topic.as_str().matches(['.', '/']).count(), 1);
        prop_assert_eq!(switchyard_core::topic::decode_segment(&seg).unwrap(), id);
        let _ = switchyard_core::topic::decode_segment(&junk);
    }

    #[test]
    fn topic_validation_matches_the_grammar(s in "\\PC{0,40}") {
        let r = Topic::new(&s);
        prop_assert_eq!(r.is_ok(), reference_topic_ok(&s), "{:?}: {:?}", s, r);
    }

    #[test]
    fn topic_validation_matches_the_grammar_near_misses(s in "[a-z.:/*> ]{0,20}") {
        prop_assert_eq!(Topic::new(&s).is_ok(), reference_topic_ok(&s), "{:?}", s);
    }

    #[test]
    fn long_names_are_refused(n in 256usize..600) {
        prop_assert!(Topic::new("a".repeat(n)).is_err());
        prop_assert!(Pattern::new(&"a".repeat(n)).is_err());
    }

    #[test]
    fn valid_topics_round_trip(s in valid_topic()) {
        let t = Topic::new(&s).unwrap();
        prop_assert_eq!(t.as_str(), s.as_str());
        prop_assert_eq!(t.to_string().parse::<Topic>().unwrap(), t.clone());
        let json = serde_json::to_string(&t).unwrap();
        prop_assert_eq!(serde_json::from_str::<Topic>(&json).unwrap(), t.clone());
        let dl = t.dead_letter().unwrap();
        prop_assert!(dl.is_dead_letter());
        prop_assert_eq!(dl.dead_letter_origin(), Some(t.clone()));
        // A topic is a filter that matches itself, and only itself.
        let f = TopicFilter::parse(&s).unwrap();
        prop_assert_eq!(&f, &TopicFilter::Exact(t.clone()));
        prop_assert!(f.matches(&s));
        let other = format!("{s}x");
        prop_assert!(!f.matches(&other));
    }

    #[test]
    fn parsers_never_panic(s in "\\PC{0,64}", t in "\\PC{0,64}") {
        let _ = Topic::new(&s);
        if let Ok(p) = Pattern::new(&s) {
            let _ = p.matches(&t);
            let prefix = p.literal_prefix();
            prop_assert!(s.starts_with(&prefix));
        }
        if let Ok(f) = TopicFilter::parse(&s) {
            let _ = f.matches(&t);
        }
    }

    #[test]
    fn patterns_match_like_the_reference(p in small_pattern(), t in small_topic()) {
        let pattern = Pattern::new(&p).unwrap();
        prop_assert_eq!(pattern.matches(&t), reference_matches(&p, &t), "{:?} on {:?}", p, t);
    }

    /// Replacing segments of a topic by `*`, or its tail by `>`, gives a
    /// pattern that matches it (unless it is a dead-letter topic).
    #[test]
    fn generalised_topics_match(s in valid_topic(), stars in any::<u64>(), tail in any::<bool>()) {
        // A leading `/` roots the name: the pattern keeps it.
        let (root, body) = match s.strip_prefix('/') {
            Some(body) => ("/", body),
            None => ("", s.as_str()),
        };
        let mut pattern = String::from(root);
        let mut segs = 0;
        let mut it = body.split_inclusive(is_sep).peekable();
        while let Some(part) = it.next() {
            let (seg, sep) = match part.chars().last() {
                Some(c) if is_sep(c) => (&part[..part.len() - 1], Some(c)),
                _ => (part, None),
            };
            if tail && it.peek().is_none() && segs > 0 {
                pattern.push('>');
                break;
            }
            pattern.push_str(if (stars >> (segs % 64)) & 1 == 1 { "*" } else { seg });
            if let Some(c) = sep {
                pattern.push(c);
            }
            segs += 1;
        }
        let p = Pattern::new(&pattern).unwrap();
        let dead = s.ends_with(":dlq") && p.has_wildcards();
        prop_assert_eq!(p.matches(&s), !dead, "{:?} on {:?}", pattern, s);
    }

    #[test]
    fn filters_display_and_parse_back(
        p in prop_oneof![
            small_pattern(),
            small_topic(),
            proptest::collection::vec(small_topic(), 1..4).prop_map(|v| v.join(", ")),
        ],
        t in small_topic(),
    ) {
        let f = TopicFilter::parse(&p).unwrap();
        let shown = f.to_string();
        let again = TopicFilter::parse(&shown).unwrap();
        prop_assert_eq!(again.to_string(), shown.clone());
        prop_assert_eq!(again.matches(&t), f.matches(&t), "{:?} vs {:?} on {:?}", p, shown, t);
    }

    #[test]
    fn message_ids_round_trip(ms in any::<u64>(), seq in any::<u64>()) {
        let id = MessageId::new(ms, seq);
        prop_assert_eq!(id.to_string().parse::<MessageId>().unwrap(), id);
        let json = serde_json::to_string(&id).unwrap();
        prop_assert_eq!(serde_json::from_str::<MessageId>(&json).unwrap(), id);
        prop_assert_eq!(ms.to_string().parse::<MessageId>().unwrap(), MessageId::new(ms, 0));
        if (ms, seq) != (u64::MAX, u64::MAX) {
            prop_assert!(id.next() > id);
        }
    }

    #[test]
    fn message_ids_order_like_pairs(a in any::<(u64, u64)>(), b in any::<(u64, u64)>()) {
        prop_assert_eq!(MessageId::new(a.0, a.1).cmp(&MessageId::new(b.0, b.1)), a.cmp(&b));
    }

    #[test]
    fn message_id_parse_never_panics(s in "\\PC{0,48}") {
        if let Ok(id) = s.parse::<MessageId>() {
            prop_assert_eq!(id.to_string().parse::<MessageId>().unwrap(), id);
        }
    }

    #[test]
    fn dedup_ids_round_trip(v in any::<u128>()) {
        let d = DedupId(v);
        let shown = d.to_string();
        prop_assert_eq!(shown.len(), 32);
        prop_assert!(shown.bytes().all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b)));
        prop_assert_eq!(shown.parse::<DedupId>().unwrap(), d);
        prop_assert_eq!(shown.to_uppercase().parse::<DedupId>().unwrap(), d);
        let debug = format!("{d:?}");
        prop_assert!(debug.contains(&shown));
    }

    #[test]
    fn dedup_id_parse_never_panics(s in "\\PC{0,40}") {
        if let Ok(d) = s.parse::<DedupId>() {
            prop_assert_eq!(d.to_string().parse::<DedupId>().unwrap(), d);
        }
    }

    #[test]
    fn redact_url_never_panics(s in "\\PC{0,80}") {
        let _ = redact_url(&s);
    }

    /// Whatever the password holds (typed without percent-encoding), the
    /// redacted URL shows `***` in its place and the rest unchanged.
    #[test]
    fn redacted_urls_hide_the_password(
        scheme in "[a-z][a-z+]{0,12}",
        user in "[a-z0-9_]{0,8}",
        secret in "[!-~]{0,16}",
        rest in "[a-z0-9.:\\[\\]]{1,20}(/[0-9]{0,3})?(\\?[a-z_]{1,8}=[a-z0-9]{0,6})?",
    ) {
        let password = format!("Zq7{secret}");
        let url = format!("{scheme}://{user}:{password}@{rest}");
        let shown = redact_url(&url);
        prop_assert!(!shown.contains(&password), "{} -> {}", url, shown);
        prop_assert_eq!(shown, format!("{scheme}://{user}:***@{rest}"));
    }

    /// A URL missing its `//` (or its `:`) does not show the password either.
    #[test]
    fn mistyped_urls_hide_the_password(
        scheme in "[a-z][a-z+]{0,12}",
        sep in prop_oneof![Just(":"), Just(":/"), Just("//"), Just("/"), Just(""), Just(":///")],
        user in "[a-z0-9_]{0,8}",
        secret in "[!-~]{0,16}",
        rest in "[a-z0-9.:\\[\\]]{1,20}(/[0-9]{0,3})?",
    ) {
        let password = format!("Zq7{secret}");
        let url = format!("{scheme}{sep}{user}:{password}@{rest}");
        let shown = redact_url(&url);
        prop_assert!(!shown.contains(&password), "{} -> {}", url, shown);
    }
}
