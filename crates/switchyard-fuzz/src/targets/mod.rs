//! The fuzz targets: each feeds an input to one decoder or parser, checks
//! what must hold of its result (a round trip, positions inside the input,
//! no password in an error) and panics when it does not. Seeds come from
//! the real encoders.

use bytes::Bytes;
use switchyard_core::{DedupId, Headers, Message, Topic};

use crate::mutate::MAX_INPUT;

mod entries;
mod names;
mod urls;
mod wire;

use entries::*;
use names::*;
use urls::*;
use wire::*;

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
        about: "redis-rs RESP parsing, then wire::parse_streams_reply / parse_entries / decode; the group reader's lean XREADGROUP parser on the same bytes",
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
