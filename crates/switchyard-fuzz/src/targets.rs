//! The fuzz targets: each feeds an input to one decoder or parser, checks
//! what must hold of its result (a round trip, positions inside the input,
//! no password in an error) and panics when it does not. Seeds come from
//! the real encoders.

use std::cell::RefCell;
use std::str::FromStr;

use bytes::Bytes;
use switchyard_core::{DedupId, Headers, Message, MessageId, Pattern, Topic, TopicFilter};
use switchyard_redis::RedisConfig;
use switchyard_redis::lean::{self, Token};
use switchyard_redis::redis;
use switchyard_redis_pubsub::PubSubConfig;
use switchyard_redis_pubsub::fuzzing::{self as backplane, PushFrame};
use switchyard_redis_streams::StreamsConfig;
use switchyard_redis_streams::fuzzing as streams;

use crate::mutate::MAX_INPUT;

/// One fuzz target.
pub struct Target {
    /// The name given to `--target`.
    pub name: &'static str,
    /// What it exercises.
    pub about: &'static str,
    /// Valid inputs, from the real encoders.
    pub seeds: fn() -> Vec<Vec<u8>>,
    /// Tokens the mutator inserts.
    pub dict: &'static [&'static [u8]],
    /// Longest input the mutator makes for it (URLs need no 64 KiB: it
    /// would only slow the target down).
    pub max_len: usize,
    /// Runs one input; `true` when the input was accepted (decoded or
    /// parsed), so the fuzzer keeps it as a seed for further mutations.
    /// Panics when something that must hold does not.
    pub run: fn(&[u8]) -> bool,
}

/// Every target, in the order a full run visits them.
pub fn all() -> &'static [Target] {
    TARGETS
}

/// Longest mutated URL.
const URL_MAX_LEN: usize = 4096;

const RESP_DICT: &[&[u8]] = &[
    b"\r\n",
    b"*",
    b"$",
    b":",
    b"+",
    b"-",
    b"%",
    b"~",
    b">",
    b"$-1\r\n",
    b"*-1\r\n",
    b"*2\r\n",
    b"*3\r\n",
    b"*4\r\n",
    b"$0\r\n\r\n",
    b"message",
    b"pmessage",
    b"subscribe",
    b"pong",
    b"_\r\n",
    b"=",
];
const URL_DICT: &[&[u8]] = &[
    b"://",
    b"@",
    b":",
    b"/",
    b"?",
    b"&",
    b"=",
    b"#",
    b"%",
    b"%40",
    b"%zz",
    b"[::1]",
    b"[",
    b"]",
    b"redis+streams",
    b"rediss+pubsub",
    b"memory",
    b"namespace=",
    b"connect_timeout=",
    b"block=",
    b"maxlen=",
    b"outbox=",
    b"instance_id=",
    b"retention=",
    b"ms",
    b"s",
    b"m",
    b"\xff",
    b" ",
    b"+",
];
const TOPIC_DICT: &[&[u8]] = &[
    b".",
    b"/",
    b"*",
    b">",
    b"**",
    b",",
    b" ",
    b":dlq",
    b"-",
    b"_",
    b"\n",
    b"\xc3\xa9",
    b"{",
];

static TARGETS: &[Target] = &[
    Target {
        name: "streams-entry",
        about: "redis-streams wire::decode of an entry's field/value pairs",
        seeds: entry_seeds,
        dict: &[b"v", b"d", b"p", b"h", b"1", b"\x01\x00"],
        max_len: MAX_INPUT,
        run: streams_entry,
    },
    Target {
        name: "streams-headers",
        about: "redis-streams wire::decode_headers (varint-prefixed header block)",
        seeds: header_seeds,
        dict: &[b"\x80", b"\xff\xff\xff\xff\x0f", b"\x00"],
        max_len: MAX_INPUT,
        run: streams_headers,
    },
    Target {
        name: "stream-id",
        about: "redis-streams wire::parse_id (ms-seq)",
        seeds: stream_id_seeds,
        dict: &[b"-", b"0", b"18446744073709551615"],
        max_len: MAX_INPUT,
        run: stream_id,
    },
    Target {
        name: "streams-reply",
        about: "redis-rs RESP parsing, then wire::parse_streams_reply / parse_entries / decode",
        seeds: reply_seeds,
        dict: RESP_DICT,
        max_len: MAX_INPUT,
        run: streams_reply,
    },
    Target {
        name: "backplane-frame",
        about: "redis-pubsub envelope decode",
        seeds: frame_seeds,
        dict: &[b"SY\x01\x00", b"\x00\x00", b"\xff\xff"],
        max_len: MAX_INPUT,
        run: backplane_frame,
    },
    Target {
        name: "resp-token",
        about: "switchyard-redis lean::next_token over a whole buffer",
        seeds: resp_seeds,
        dict: RESP_DICT,
        max_len: MAX_INPUT,
        run: resp_tokens,
    },
    Target {
        name: "push-frame",
        about: "redis-pubsub lean push-frame parsing of the subscribing connection",
        seeds: resp_seeds,
        dict: RESP_DICT,
        max_len: MAX_INPUT,
        run: push_frames,
    },
    Target {
        name: "xadd-reply",
        about: "redis-streams lean parsing of the publishing connection's replies",
        seeds: xadd_reply_seeds,
        dict: RESP_DICT,
        max_len: MAX_INPUT,
        run: xadd_replies,
    },
    Target {
        name: "topic",
        about: "core Topic::new, dead_letter, dead_letter_origin",
        seeds: topic_seeds,
        dict: TOPIC_DICT,
        max_len: MAX_INPUT,
        run: topic,
    },
    Target {
        name: "filter",
        about: "core TopicFilter::parse, Pattern::new, matches, literal_prefix",
        seeds: filter_seeds,
        dict: TOPIC_DICT,
        max_len: MAX_INPUT,
        run: filter,
    },
    Target {
        name: "redis-url",
        about: "switchyard-redis RedisConfig::from_url; no password in errors",
        seeds: redis_url_seeds,
        dict: URL_DICT,
        max_len: URL_MAX_LEN,
        run: redis_url,
    },
    Target {
        name: "streams-url",
        about: "redis-streams StreamsConfig::from_url; no password in errors",
        seeds: streams_url_seeds,
        dict: URL_DICT,
        max_len: URL_MAX_LEN,
        run: streams_url,
    },
    Target {
        name: "pubsub-url",
        about: "redis-pubsub PubSubConfig::from_url; no password in errors",
        seeds: pubsub_url_seeds,
        dict: URL_DICT,
        max_len: URL_MAX_LEN,
        run: pubsub_url,
    },
    Target {
        name: "memory-url",
        about: "memory MemoryTransport::from_url",
        seeds: memory_url_seeds,
        dict: URL_DICT,
        max_len: URL_MAX_LEN,
        run: memory_url,
    },
    Target {
        name: "facade-url",
        about: "facade switchyard::connect scheme parsing (Redis schemes: the adapter's from_url, never a dial)",
        seeds: facade_url_seeds,
        dict: URL_DICT,
        max_len: URL_MAX_LEN,
        run: facade_url,
    },
    Target {
        name: "message-id",
        about: "core MessageId::from_str",
        seeds: message_id_seeds,
        dict: &[b"-", b"+", b"0"],
        max_len: MAX_INPUT,
        run: message_id,
    },
    Target {
        name: "dedup-id",
        about: "core DedupId::from_str",
        seeds: dedup_id_seeds,
        dict: &[b"f", b"F", b"+", b"-", b"0"],
        max_len: MAX_INPUT,
        run: dedup_id,
    },
];

fn text(input: &[u8]) -> String {
    String::from_utf8_lossy(input).into_owned()
}

fn sample_messages() -> Vec<Message> {
    let topic = |name: &str| Topic::new(name).unwrap_or_else(|_| unreachable_topic());
    vec![
        Message::from_parts(topic("a"), Bytes::new(), Headers::new(), DedupId(0)),
        Message::from_parts(
            topic("orders.created"),
            Bytes::from_static(b"{\"id\":42}"),
            [("content-type", "application/json"), ("tenant", "acme")]
                .into_iter()
                .collect(),
            DedupId(0x0123_4567_89ab_cdef_0123_4567_89ab_cdef),
        ),
        Message::from_parts(
            topic("robot-1/camera/rgb"),
            Bytes::from(vec![0u8, 255, 13, 10, 0x80]),
            [("k", "é ✓".repeat(20)), ("empty", String::new())]
                .into_iter()
                .collect(),
            DedupId(u128::MAX),
        ),
    ]
}

/// A topic for the rare case a literal above were invalid (it is not).
fn unreachable_topic() -> Topic {
    match Topic::new("x") {
        Ok(t) => t,
        Err(e) => panic!("the topic \"x\" must be valid: {e}"),
    }
}

// ---- streams entries ---------------------------------------------------

/// Fields framed as `u16 LE length, bytes` items, paired name/value.
fn frame_fields(fields: &[(Vec<u8>, Vec<u8>)]) -> Vec<u8> {
    let mut out = Vec::new();
    for (f, v) in fields {
        for part in [f, v] {
            let len = u16::try_from(part.len()).unwrap_or(u16::MAX);
            out.extend_from_slice(&len.to_le_bytes());
            out.extend_from_slice(&part[..usize::from(len)]);
        }
    }
    out
}

fn unframe_fields(mut b: &[u8]) -> Vec<(Vec<u8>, Vec<u8>)> {
    let mut items = Vec::new();
    while b.len() >= 2 {
        let len = usize::from(u16::from_le_bytes([b[0], b[1]]));
        let rest = &b[2..];
        let take = len.min(rest.len());
        items.push(rest[..take].to_vec());
        b = &rest[take..];
    }
    let mut it = items.into_iter();
    let mut pairs = Vec::new();
    while let (Some(f), Some(v)) = (it.next(), it.next()) {
        pairs.push((f, v));
    }
    pairs
}

fn entry_seeds() -> Vec<Vec<u8>> {
    sample_messages()
        .iter()
        .map(|m| frame_fields(&streams::entry_fields(m)))
        .collect()
}

fn streams_entry(input: &[u8]) -> bool {
    let topic = unreachable_topic();
    let id = MessageId::new(1, 1);
    match streams::decode(&topic, id, unframe_fields(input)) {
        Ok(m) => {
            let again = streams::decode(&topic, id, streams::entry_fields(&m));
            assert_eq!(again.as_ref(), Ok(&m), "decode(encode(decode(x))) differs");
            true
        }
        Err(_) => false,
    }
}

fn header_seeds() -> Vec<Vec<u8>> {
    sample_messages()
        .iter()
        .map(|m| streams::encode_headers(&m.headers))
        .collect()
}

fn streams_headers(input: &[u8]) -> bool {
    match streams::decode_headers(input) {
        Ok(h) => {
            let again = streams::decode_headers(&streams::encode_headers(&h));
            assert_eq!(again.as_ref(), Ok(&h), "header round trip differs");
            true
        }
        Err(_) => false,
    }
}

fn stream_id_seeds() -> Vec<Vec<u8>> {
    [
        "0-0",
        "1700000000000-3",
        "18446744073709551615-18446744073709551615",
    ]
    .iter()
    .map(|s| s.as_bytes().to_vec())
    .collect()
}

fn stream_id(input: &[u8]) -> bool {
    match streams::parse_id(&text(input)) {
        Some(id) => {
            assert_eq!(streams::parse_id(&id.to_string()), Some(id));
            true
        }
        None => false,
    }
}

fn bulk(out: &mut Vec<u8>, b: &[u8]) {
    lean::put_bulk(out, b);
}

/// An XREADGROUP reply in RESP2 for `messages` on one stream, one entry
/// deleted (nil fields).
fn resp2_reply(messages: &[Message]) -> Vec<u8> {
    let mut out = Vec::new();
    lean::put_array_header(&mut out, 1);
    lean::put_array_header(&mut out, 2);
    bulk(&mut out, b"switchyard:{orders.created}");
    lean::put_array_header(&mut out, messages.len() + 1);
    for (i, m) in messages.iter().enumerate() {
        lean::put_array_header(&mut out, 2);
        bulk(&mut out, format!("1700000000000-{i}").as_bytes());
        let fields = streams::entry_fields(m);
        lean::put_array_header(&mut out, fields.len() * 2);
        for (f, v) in &fields {
            bulk(&mut out, f);
            bulk(&mut out, v);
        }
    }
    lean::put_array_header(&mut out, 2);
    bulk(&mut out, b"1700000000001-0");
    out.extend_from_slice(b"*-1\r\n");
    out
}

/// The same in RESP3: a map of stream key to entries.
fn resp3_reply(messages: &[Message]) -> Vec<u8> {
    let mut out = b"%1\r\n".to_vec();
    bulk(&mut out, b"switchyard:{a}");
    lean::put_array_header(&mut out, messages.len());
    for (i, m) in messages.iter().enumerate() {
        lean::put_array_header(&mut out, 2);
        bulk(&mut out, format!("{i}-{i}").as_bytes());
        let fields = streams::entry_fields(m);
        out.extend_from_slice(format!("%{}\r\n", fields.len()).as_bytes());
        for (f, v) in &fields {
            bulk(&mut out, f);
            bulk(&mut out, v);
        }
    }
    out
}

fn reply_seeds() -> Vec<Vec<u8>> {
    let msgs = sample_messages();
    vec![
        resp2_reply(&msgs),
        resp3_reply(&msgs),
        resp2_reply(&msgs[..1]),
        b"*-1\r\n".to_vec(),
        b"_\r\n".to_vec(),
    ]
}

fn streams_reply(input: &[u8]) -> bool {
    let Ok(value) = redis::parse_redis_value(input) else {
        return false;
    };
    let topic = unreachable_topic();
    let _ = streams::parse_entries(value.clone());
    match streams::parse_streams_reply(value) {
        Ok(streams) => {
            for (_, entries) in streams {
                for (id, fields) in entries {
                    if let Some(fields) = fields {
                        let _ = streams::decode(&topic, id, fields);
                    }
                }
            }
            true
        }
        Err(_) => false,
    }
}

// ---- backplane ------------------------------------------------------------

fn frame_seeds() -> Vec<Vec<u8>> {
    sample_messages()
        .iter()
        .enumerate()
        .filter_map(|(i, m)| {
            let n = i as u64 + 1;
            backplane::encode_frame(0x0123_4567_89ab_cdef, 1_700_000_000_000, n, n, m).ok()
        })
        .collect()
}

fn backplane_frame(input: &[u8]) -> bool {
    match backplane::decode_frame(input) {
        Ok(d) => {
            assert!(d.seq >= 1 && d.topic_seq >= 1, "a zero sequence decoded");
            // The receiver sets `sy-origin` itself; the encoder leaves it out.
            if d.message
                .headers
                .get(switchyard_core::header::ORIGIN)
                .is_none()
            {
                let again = backplane::encode_frame(
                    d.origin_id,
                    d.origin_epoch,
                    d.seq,
                    d.topic_seq,
                    &d.message,
                )
                .map_err(|e| e.to_string())
                .and_then(|f| backplane::decode_frame(&f));
                assert_eq!(again.as_ref(), Ok(&d), "envelope round trip differs");
            }
            true
        }
        Err(_) => false,
    }
}

fn resp_seeds() -> Vec<Vec<u8>> {
    let frame = frame_seeds().into_iter().next().unwrap_or_default();
    let mut message = Vec::new();
    lean::put_command(&mut message, &[b"message", b"switchyard:a", &frame]);
    let mut pmessage = Vec::new();
    lean::put_command(
        &mut pmessage,
        &[b"pmessage", b"switchyard:*", b"switchyard:a.b", b"x"],
    );
    let mut both = message.clone();
    both.extend_from_slice(b"*3\r\n$9\r\nsubscribe\r\n$4\r\nns:a\r\n:1\r\n");
    both.extend_from_slice(b"*2\r\n$4\r\npong\r\n$0\r\n\r\n+PONG\r\n-NOPERM no\r\n");
    vec![
        message,
        pmessage,
        both,
        b"*3\r\n$12\r\npunsubscribe\r\n$4\r\nns:*\r\n:0\r\n".to_vec(),
    ]
}

fn resp_tokens(input: &[u8]) -> bool {
    let mut pos = 0;
    let mut accepted = false;
    // Each token takes at least 3 bytes, so this bounds the loop.
    for _ in 0..=input.len() {
        match lean::next_token(&input[pos..], 1024) {
            Ok(Some((token, used))) => {
                assert!(
                    used >= 3 && used <= input.len() - pos,
                    "token {token:?} used {used} of {} bytes",
                    input.len() - pos
                );
                if let Token::Bulk(b) = token {
                    assert!(b.len() + 5 <= used, "bulk longer than what it used");
                }
                pos += used;
                accepted = true;
            }
            Ok(None) | Err(_) => break,
        }
    }
    accepted
}

fn push_frames(input: &[u8]) -> bool {
    let mut at = 0;
    let mut accepted = false;
    for _ in 0..=input.len() {
        match backplane::parse_push_frame(input, at) {
            Ok(Some((frame, next))) => {
                assert!(
                    next > at && next <= input.len(),
                    "frame {frame:?} ends at {next}, began at {at}, of {}",
                    input.len()
                );
                if let PushFrame::Message { channel, payload } = &frame {
                    assert!(channel.len() + payload.len() < next - at);
                    let _ = backplane::decode_frame(payload);
                }
                at = next;
                accepted = true;
            }
            Ok(None) | Err(_) => break,
        }
    }
    accepted
}

fn xadd_reply_seeds() -> Vec<Vec<u8>> {
    let mut pipeline = Vec::new();
    for i in 0..3u64 {
        lean::put_bulk(&mut pipeline, format!("1700000000000-{i}").as_bytes());
    }
    pipeline.extend_from_slice(b"+OK\r\n-OOM command not allowed\r\n:1\r\n$-1\r\n");
    let mut one = Vec::new();
    lean::put_bulk(&mut one, b"18446744073709551615-18446744073709551615");
    vec![pipeline, one]
}

fn xadd_replies(input: &[u8]) -> bool {
    let mut pos = 0;
    let mut accepted = false;
    for _ in 0..=input.len() {
        match streams::parse_publish_reply(&input[pos..]) {
            Ok(Some((id, used))) => {
                assert!(
                    used >= 3 && used <= input.len() - pos,
                    "reply used {used} of {} bytes",
                    input.len() - pos
                );
                if let Some(id) = id {
                    assert_eq!(streams::parse_id(&id.to_string()), Some(id));
                }
                pos += used;
                accepted = true;
            }
            Ok(None) | Err(_) => break,
        }
    }
    accepted
}

// ---- topics and filters ---------------------------------------------------

fn topic_seeds() -> Vec<Vec<u8>> {
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

fn topic(input: &[u8]) -> bool {
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

fn filter_seeds() -> Vec<Vec<u8>> {
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

fn filter(input: &[u8]) -> bool {
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

// ---- URLs ------------------------------------------------------------------

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

fn urls(lists: &[&[&str]]) -> Vec<Vec<u8>> {
    lists
        .iter()
        .flat_map(|l| l.iter())
        .map(|s| s.as_bytes().to_vec())
        .collect()
}

fn redis_url_seeds() -> Vec<Vec<u8>> {
    urls(&[STREAMS_URLS, PUBSUB_URLS, PLAIN_REDIS_URLS])
}

fn streams_url_seeds() -> Vec<Vec<u8>> {
    urls(&[STREAMS_URLS, PLAIN_REDIS_URLS])
}

fn pubsub_url_seeds() -> Vec<Vec<u8>> {
    urls(&[PUBSUB_URLS, PLAIN_REDIS_URLS])
}

fn memory_url_seeds() -> Vec<Vec<u8>> {
    urls(&[MEMORY_URLS])
}

fn facade_url_seeds() -> Vec<Vec<u8>> {
    urls(&[MEMORY_URLS, STREAMS_URLS, PUBSUB_URLS])
}

/// The password of `input` as the URL parser reads it: raw (as written)
/// and percent-decoded, each when it is at least 4 bytes long.
fn passwords(input: &str) -> Option<(String, Vec<String>)> {
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

fn percent_decode(s: &str) -> String {
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
fn check_url(input: &str, show: impl Fn(&str) -> (bool, String)) -> bool {
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

fn shown<T: std::fmt::Debug>(r: &switchyard_core::Result<T>) -> (bool, String) {
    match r {
        Ok(v) => (true, format!("{v:?}")),
        Err(e) => (false, format!("{e} / {e:?}")),
    }
}

fn redis_url(input: &[u8]) -> bool {
    check_url(&text(input), |s| {
        let r = RedisConfig::from_url(s);
        let (ok, mut out) = shown(&r);
        if let Ok(cfg) = &r {
            out.push_str(&format!(" / {cfg}"));
        }
        (ok, out)
    })
}

fn streams_url(input: &[u8]) -> bool {
    check_url(&text(input), |s| shown(&StreamsConfig::from_url(s)))
}

fn pubsub_url(input: &[u8]) -> bool {
    check_url(&text(input), |s| shown(&PubSubConfig::from_url(s)))
}

fn memory_url(input: &[u8]) -> bool {
    check_url(&text(input), |s| {
        shown(&switchyard_memory::MemoryTransport::from_url(s).map(|_| ()))
    })
}

thread_local! {
    static RUNTIME: RefCell<Option<tokio::runtime::Runtime>> = const { RefCell::new(None) };
}

fn facade_url(input: &[u8]) -> bool {
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

// ---- ids ---------------------------------------------------------------------

fn message_id_seeds() -> Vec<Vec<u8>> {
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

fn dedup_id_seeds() -> Vec<Vec<u8>> {
    sample_messages()
        .iter()
        .map(|m| m.dedup_id.to_string().into_bytes())
        .chain([b"abc".to_vec()])
        .collect()
}

fn message_id(input: &[u8]) -> bool {
    match MessageId::from_str(&text(input)) {
        Ok(id) => {
            assert_eq!(MessageId::from_str(&id.to_string()).ok(), Some(id));
            true
        }
        Err(_) => false,
    }
}

fn dedup_id(input: &[u8]) -> bool {
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
