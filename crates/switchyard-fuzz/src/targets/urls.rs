//! Every URL parser: the Redis adapters', memory's and the facade's.

use std::cell::RefCell;
use switchyard_redis::RedisConfig;
use switchyard_redis_pubsub::PubSubConfig;
use switchyard_redis_streams::StreamsConfig;

use super::text;

const STREAMS_URLS: &[&str] = &[
    "redis+streams://app:s3cr%40tPW@127.0.0.1:6380/3?namespace=fleet-a&connect_timeout=500ms&maxlen=1000&block=200ms",
    "rediss+streams://:hunter2pw@[::1]:7000/0?retention=1m&read_count=10&writer_queue=5&breaker_threshold=3",
];
const PUBSUB_URLS: &[&str] = &[
    "rediss+pubsub://:hunter2pw@[::1]:7000/0?outbox=100&probe_interval=1s&instance_id=00000000000000ff",
    "redis+pubsub://127.0.0.1?batch=5&outbox_ttl=5s&reconnect_min=50ms",
];
const PLAIN_REDIS_URLS: &[&str] = &["redis://user:pass-word@localhost?response_timeout=2s"];
const MEMORY_URLS: &[&str] = &[
    "memory://orders?retention=1000&dead_letter_retention=5&redelivery_tick_ms=10",
    "memory://",
    "MEMORY://a.b-c_d/",
];

pub(super) fn urls(lists: &[&[&str]]) -> Vec<Vec<u8>> {
    lists
        .iter()
        .flat_map(|l| l.iter())
        .map(|s| s.as_bytes().to_vec())
        .collect()
}

pub(super) fn redis_url_seeds() -> Vec<Vec<u8>> {
    urls(&[STREAMS_URLS, PUBSUB_URLS, PLAIN_REDIS_URLS])
}

pub(super) fn streams_url_seeds() -> Vec<Vec<u8>> {
    urls(&[STREAMS_URLS, PLAIN_REDIS_URLS])
}

pub(super) fn pubsub_url_seeds() -> Vec<Vec<u8>> {
    urls(&[PUBSUB_URLS, PLAIN_REDIS_URLS])
}

pub(super) fn memory_url_seeds() -> Vec<Vec<u8>> {
    urls(&[MEMORY_URLS])
}

pub(super) fn facade_url_seeds() -> Vec<Vec<u8>> {
    urls(&[MEMORY_URLS, STREAMS_URLS, PUBSUB_URLS])
}

/// The password of `input` as the URL parser reads it: raw (as written)
/// and percent-decoded, each when it is at least 4 bytes long.
pub(super) fn passwords(input: &str) -> Option<(String, Vec<String>)> {
    let url = url::Url::parse(input).ok()?;
    let raw = url.password()?.to_owned();
    let decoded = percent_decode(&raw);
    let mut out = Vec::new();
    for pw in [raw.clone(), decoded] {
        if pw.len() >= 4 && !out.contains(&pw) {
            out.push(pw);
        }
    }
    Some((raw, out))
}

pub(super) fn percent_decode(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%'
            && let Some(h) = b.get(i + 1..i + 3)
            && let Ok(h) = std::str::from_utf8(h)
            && let Ok(v) = u8::from_str_radix(h, 16)
        {
            out.push(v);
            i += 3;
            continue;
        }
        out.push(b[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// Parses `input` with `show` (which returns whether it was accepted and
/// the text it shows: error or config) and panics when the password of the
/// URL shows. A password may coincide with other text (a field name, a
/// host), so the same input with the password replaced by `x`s is the
/// baseline: the password must not show more often than there.
pub(super) fn check_url(input: &str, show: impl Fn(&str) -> (bool, String)) -> bool {
    let (accepted, shown) = show(input);
    let Some((raw, pws)) = passwords(input) else {
        return accepted;
    };
    let masked_input = input.replacen(
        &format!(":{raw}@"),
        &format!(":{}@", "x".repeat(raw.len())),
        1,
    );
    let (_, baseline) = show(&masked_input);
    for pw in pws {
        let (n, base) = (
            shown.matches(pw.as_str()).count(),
            baseline.matches(pw.as_str()).count(),
        );
        assert!(
            n <= base,
            "the password {pw:?} of {input:?} shows {n} time(s) (baseline {base}) in: {shown}"
        );
    }
    accepted
}

pub(super) fn shown<T: std::fmt::Debug>(r: &switchyard_core::Result<T>) -> (bool, String) {
    match r {
        Ok(v) => (true, format!("{v:?}")),
        Err(e) => (false, format!("{e} / {e:?}")),
    }
}

pub(super) fn redis_url(input: &[u8]) -> bool {
    check_url(&text(input), |s| {
        let r = RedisConfig::from_url(s);
        let (ok, mut out) = shown(&r);
        if let Ok(cfg) = &r {
            out.push_str(&format!(" / {cfg}"));
        }
        (ok, out)
    })
}

pub(super) fn streams_url(input: &[u8]) -> bool {
    check_url(&text(input), |s| shown(&StreamsConfig::from_url(s)))
}

pub(super) fn pubsub_url(input: &[u8]) -> bool {
    check_url(&text(input), |s| shown(&PubSubConfig::from_url(s)))
}

pub(super) fn memory_url(input: &[u8]) -> bool {
    check_url(&text(input), |s| {
        shown(&switchyard_memory::MemoryTransport::from_url(s).map(|_| ()))
    })
}

thread_local! {
    static RUNTIME: RefCell<Option<tokio::runtime::Runtime>> = const { RefCell::new(None) };
}

pub(super) fn facade_url(input: &[u8]) -> bool {
    check_url(&text(input), |s| {
        let scheme = s
            .trim()
            .split_once("://")
            .map(|(scheme, _)| scheme.to_ascii_lowercase())
            .unwrap_or_default();
        if scheme.starts_with("redis") {
            // `connect` would dial whatever host the input names.
            let (a, x) = shown(&StreamsConfig::from_url(s));
            let (b, y) = shown(&PubSubConfig::from_url(s));
            return (a || b, format!("{x} / {y}"));
        }
        RUNTIME.with(|cell| {
            let mut slot = cell.borrow_mut();
            if slot.is_none() {
                *slot = tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                    .ok();
            }
            let Some(rt) = slot.as_ref() else {
                panic!("could not build a tokio runtime for the facade target");
            };
            shown(&rt.block_on(switchyard::connect(s)).map(|t| t.name()))
        })
    })
}
