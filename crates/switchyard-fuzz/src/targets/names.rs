//! Topics, filters, message ids and dedup ids.

use std::str::FromStr;
use switchyard_core::{DedupId, MessageId, Pattern, Topic, TopicFilter};
use switchyard_redis_streams::fuzzing as streams;

use super::{sample_messages, text};

pub(super) fn topic_seeds() -> Vec<Vec<u8>> {
    [
        "orders.created",
        "robot-1/camera/rgb",
        "a",
        "orders.created:dlq",
        "user@host+x=y_z",
    ]
    .iter()
    .map(|s| s.as_bytes().to_vec())
    .collect()
}

pub(super) fn topic(input: &[u8]) -> bool {
    let s = text(input);
    match Topic::new(&s) {
        Ok(t) => {
            assert_eq!(t.as_str(), s);
            assert!(t.as_str().len() <= Topic::MAX_LEN);
            if let Ok(dl) = t.dead_letter() {
                assert!(dl.is_dead_letter());
                assert_eq!(dl.dead_letter_origin().as_ref(), Some(&t));
            }
            let _ = t.dead_letter_origin();
            true
        }
        Err(e) => {
            let _ = e.to_string();
            false
        }
    }
}

pub(super) fn filter_seeds() -> Vec<Vec<u8>> {
    [
        "orders.*\norders.created",
        "*/camera/rgb\nrobot-7/camera/rgb",
        "robot-1/>\nrobot-1/camera/rgb",
        "a.**\na.b.c",
        "a.b, c/d\nc/d",
        "orders.>\norders.created:dlq",
    ]
    .iter()
    .map(|s| s.as_bytes().to_vec())
    .collect()
}

pub(super) fn filter(input: &[u8]) -> bool {
    let s = text(input);
    let (f, t) = s.split_once('\n').unwrap_or((&s, "a.b"));
    let mut accepted = false;
    if let Ok(p) = Pattern::new(f) {
        let _ = p.matches(t);
        let prefix = p.literal_prefix();
        assert!(f.starts_with(&prefix), "prefix {prefix:?} of {f:?}");
        accepted = true;
    }
    if let Ok(filter) = TopicFilter::parse(f) {
        let matched = filter.matches(t);
        let shown = filter.to_string();
        match TopicFilter::parse(&shown) {
            Ok(again) => {
                assert_eq!(again.to_string(), shown, "display of {f:?} is not stable");
                assert_eq!(
                    again.matches(t),
                    matched,
                    "{f:?} and {shown:?} disagree on {t:?}"
                );
            }
            Err(e) => panic!("the display {shown:?} of filter {f:?} does not parse: {e}"),
        }
        accepted = true;
    }
    accepted
}

pub(super) fn message_id_seeds() -> Vec<Vec<u8>> {
    [
        "1700000000000-3",
        "42",
        "0-0",
        "18446744073709551615-18446744073709551615",
    ]
    .iter()
    .map(|s| s.as_bytes().to_vec())
    .collect()
}

pub(super) fn dedup_id_seeds() -> Vec<Vec<u8>> {
    sample_messages()
        .iter()
        .map(|m| m.dedup_id.to_string().into_bytes())
        .chain([b"abc".to_vec()])
        .collect()
}

pub(super) fn message_id(input: &[u8]) -> bool {
    match MessageId::from_str(&text(input)) {
        Ok(id) => {
            assert_eq!(MessageId::from_str(&id.to_string()).ok(), Some(id));
            true
        }
        Err(_) => false,
    }
}

pub(super) fn dedup_id(input: &[u8]) -> bool {
    match DedupId::from_str(&text(input)) {
        Ok(id) => {
            assert_eq!(DedupId::from_str(&id.to_string()).ok(), Some(id));
            let hex = streams::dedup_hex(id);
            assert_eq!(&hex[..], id.to_string().as_bytes());
            true
        }
        Err(_) => false,
    }
}
