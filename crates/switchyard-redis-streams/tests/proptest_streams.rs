//! Property tests of the Redis Streams entry format and reply parsing
//! (`wire`: decode, decode_headers, parse_id, dedup ids,
//! parse_streams_reply / parse_entries on arbitrary `redis::Value` trees)
//! and of `StreamsConfig::from_url`.
//!
//! Properties: no panic on any input; what the encoder writes decodes to
//! an equal message; a URL's password never shows in an error or a config.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use bytes::Bytes;
use proptest::prelude::*;
use switchyard_core::{DedupId, Headers, Message, MessageId, Topic};
use switchyard_redis::redis::Value;
use switchyard_redis_streams::StreamsConfig;
use switchyard_redis_streams::fuzzing::{
    decode, decode_headers, dedup_hex, encode_headers, entry_fields, parse_entries, parse_id,
    parse_publish_reply, parse_streams_reply,
};

fn topic() -> Topic {
    Topic::new("orders.created").unwrap()
}

fn headers() -> impl Strategy<Value = Headers> {
    proptest::collection::btree_map("\\PC{0,16}", "\\PC{0,32}", 0..6)
        .prop_map(|m| m.into_iter().collect())
}

fn message() -> impl Strategy<Value = Message> {
    (
        proptest::collection::vec(any::<u8>(), 0..256),
        headers(),
        any::<u128>(),
    )
        .prop_map(|(payload, headers, dedup)| {
            Message::from_parts(topic(), Bytes::from(payload), headers, DedupId(dedup))
        })
}

/// Any `redis::Value` tree (RESP2 and RESP3 shapes), a few levels deep.
fn value() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Nil),
        Just(Value::Okay),
        any::<i64>().prop_map(Value::Int),
        proptest::collection::vec(any::<u8>(), 0..24).prop_map(Value::BulkString),
        prop_oneof![
            Just("1-1".to_owned()),
            Just("v".to_owned()),
            Just("d".to_owned()),
            Just("p".to_owned()),
            "\\PC{0,12}",
        ]
        .prop_map(|s| Value::BulkString(s.into_bytes())),
        "\\PC{0,12}".prop_map(Value::SimpleString),
        any::<f64>().prop_map(Value::Double),
        any::<bool>().prop_map(Value::Boolean),
    ];
    leaf.prop_recursive(4, 64, 6, |inner| {
        prop_oneof![
            proptest::collection::vec(inner.clone(), 0..6).prop_map(Value::Array),
            proptest::collection::vec((inner.clone(), inner.clone()), 0..4).prop_map(Value::Map),
            proptest::collection::vec(inner, 0..4).prop_map(Value::Set),
        ]
    })
}

fn bulk(b: &[u8]) -> Value {
    Value::BulkString(b.to_vec())
}

/// The XREADGROUP reply Redis sends for `messages` on `key` (RESP2 shape).
fn reply(key: &str, messages: &[(MessageId, Message)]) -> Value {
    let entries = messages
        .iter()
        .map(|(id, m)| {
            let flat = entry_fields(m)
                .into_iter()
                .flat_map(|(f, v)| [bulk(&f), bulk(&v)])
                .collect();
            Value::Array(vec![bulk(id.to_string().as_bytes()), Value::Array(flat)])
        })
        .collect();
    Value::Array(vec![Value::Array(vec![
        bulk(key.as_bytes()),
        Value::Array(entries),
    ])])
}

proptest! {
    #[test]
    fn entries_round_trip(m in message(), ms in any::<u64>(), seq in any::<u64>()) {
        let back = decode(&topic(), MessageId::new(ms, seq), entry_fields(&m)).unwrap();
        prop_assert_eq!(back, m);
    }

    #[test]
    fn decode_never_panics(
        fields in proptest::collection::vec(
            (
                prop_oneof![
                    Just(b"v".to_vec()), Just(b"d".to_vec()), Just(b"p".to_vec()), Just(b"h".to_vec()),
                    proptest::collection::vec(any::<u8>(), 0..4),
                ],
                prop_oneof![
                    Just(b"1".to_vec()),
                    "[0-9a-fA-F]{30,34}".prop_map(String::into_bytes),
                    proptest::collection::vec(any::<u8>(), 0..48),
                ],
            ),
            0..8,
        )
    ) {
        if let Ok(m) = decode(&topic(), MessageId::new(1, 1), fields) {
            // Whatever decoded encodes to the same message.
            let again = decode(&topic(), MessageId::new(1, 1), entry_fields(&m)).unwrap();
            prop_assert_eq!(again, m);
        }
    }

    #[test]
    fn dedup_ids_must_be_32_hex_digits(v in any::<u128>(), upper in any::<bool>(), cut in 0usize..40) {
        let hex = dedup_hex(DedupId(v));
        let shown = DedupId(v).to_string();
        prop_assert_eq!(&hex[..], shown.as_bytes());
        let mut d = hex.to_vec();
        if upper {
            d.make_ascii_uppercase();
        }
        d.resize(cut, b'0');
        let fields = vec![
            (b"v".to_vec(), b"1".to_vec()),
            (b"d".to_vec(), d.clone()),
            (b"p".to_vec(), Vec::new()),
        ];
        let r = decode(&topic(), MessageId::new(1, 1), fields);
        if cut == 32 {
            prop_assert_eq!(r.unwrap().dedup_id, DedupId(v));
        } else {
            prop_assert!(r.unwrap_err().reason.contains("32 hex digits"));
        }
    }

    #[test]
    fn headers_round_trip(h in headers()) {
        prop_assert_eq!(decode_headers(&encode_headers(&h)).unwrap(), h);
    }

    #[test]
    fn decode_headers_never_panics(b in proptest::collection::vec(any::<u8>(), 0..256)) {
        if let Ok(h) = decode_headers(&b) {
            prop_assert_eq!(decode_headers(&encode_headers(&h)).unwrap(), h);
        }
    }

    #[test]
    fn every_prefix_of_a_header_block_is_an_error_or_fewer_headers(h in headers()) {
        let block = encode_headers(&h);
        for cut in 0..block.len() {
            if let Ok(fewer) = decode_headers(&block[..cut]) {
                prop_assert!(fewer.len() < h.len() || h.is_empty());
            }
        }
    }

    #[test]
    fn stream_ids_round_trip(ms in any::<u64>(), seq in any::<u64>()) {
        let id = MessageId::new(ms, seq);
        prop_assert_eq!(parse_id(&id.to_string()), Some(id));
    }

    #[test]
    fn parse_id_never_panics(s in "\\PC{0,48}") {
        if let Some(id) = parse_id(&s) {
            prop_assert_eq!(parse_id(&id.to_string()), Some(id));
        }
    }

    #[test]
    fn parse_id_refuses_anything_but_digits_dash_digits(s in "[0-9+\\- ]{0,12}") {
        let ok = match s.split_once('-') {
            Some((a, b)) => {
                !a.is_empty() && !b.is_empty()
                    && a.bytes().all(|c| c.is_ascii_digit())
                    && b.bytes().all(|c| c.is_ascii_digit())
                    && a.parse::<u64>().is_ok() && b.parse::<u64>().is_ok()
            }
            None => false,
        };
        prop_assert_eq!(parse_id(&s).is_some(), ok, "{:?}", s);
    }

    #[test]
    fn reply_parsers_never_panic_on_any_value_tree(v in value()) {
        let _ = parse_entries(v.clone());
        if let Ok(streams) = parse_streams_reply(v) {
            for (_, entries) in streams {
                for (id, fields) in entries {
                    if let Some(fields) = fields {
                        let _ = decode(&topic(), id, fields);
                    }
                }
            }
        }
    }

    #[test]
    fn replies_round_trip(msgs in proptest::collection::vec((any::<u64>(), any::<u64>(), message()), 0..6)) {
        let msgs: Vec<(MessageId, Message)> =
            msgs.into_iter().map(|(ms, seq, m)| (MessageId::new(ms, seq), m)).collect();
        let parsed = parse_streams_reply(reply("switchyard:{orders.created}", &msgs)).unwrap();
        prop_assert_eq!(parsed.len(), 1);
        prop_assert_eq!(parsed[0].0.as_str(), "switchyard:{orders.created}");
        prop_assert_eq!(parsed[0].1.len(), msgs.len());
        for ((id, fields), (want_id, want)) in parsed[0].1.iter().zip(&msgs) {
            prop_assert_eq!(id, want_id);
            let m = decode(&topic(), *id, fields.clone().unwrap()).unwrap();
            prop_assert_eq!(&m, want);
        }
    }

    /// The publishing connection's replies (bytes from Redis): no panic,
    /// and a pipeline of XADD ids and other replies reads back in order.
    #[test]
    fn publish_replies_never_panic(b in proptest::collection::vec(any::<u8>(), 0..256)) {
        let mut pos = 0;
        while let Ok(Some((_, used))) = parse_publish_reply(&b[pos..]) {
            prop_assert!(used > 0 && used <= b.len() - pos);
            pos += used;
        }
    }

    #[test]
    fn publish_replies_read_back(ids in proptest::collection::vec(proptest::option::of(any::<(u64, u64)>()), 1..16)) {
        let mut buf = Vec::new();
        for id in &ids {
            match id {
                Some((ms, seq)) => switchyard_redis::lean::put_bulk(&mut buf, MessageId::new(*ms, *seq).to_string().as_bytes()),
                None => buf.extend_from_slice(b"-OOM command not allowed\r\n"),
            }
        }
        let mut pos = 0;
        for id in &ids {
            let (got, used) = parse_publish_reply(&buf[pos..]).unwrap().unwrap();
            prop_assert_eq!(got, id.map(|(ms, seq)| MessageId::new(ms, seq)));
            pos += used;
        }
        prop_assert_eq!(pos, buf.len());
        for cut in 0..buf.len() {
            prop_assert!(parse_publish_reply(&buf[..cut]).is_ok());
        }
    }

    #[test]
    fn from_url_never_panics(s in "\\PC{0,80}") {
        let _ = StreamsConfig::from_url(&s);
    }

    /// Numeric parameters: accepted exactly within their documented range,
    /// refused (with their name) outside it, never a panic.
    #[test]
    fn numeric_parameters_are_validated(
        name in prop_oneof![
            Just("maxlen"), Just("read_count"), Just("writer_queue"), Just("writer_batch"),
            Just("writer_in_flight"), Just("breaker_threshold"),
        ],
        value in prop_oneof![Just("0".to_owned()), Just("18446744073709551616".to_owned()),
            Just("-1".to_owned()), Just("x".to_owned()), any::<u64>().prop_map(|n| n.to_string()),
            (0u64..200_000).prop_map(|n| n.to_string())],
    ) {
        let url = format!("redis+streams://127.0.0.1:6379?{name}={value}");
        let max = match name {
            "maxlen" => i64::MAX as u64,
            "read_count" | "writer_batch" => 100_000,
            "writer_queue" => 1 << 20,
            "writer_in_flight" => 1024,
            _ => 1_000_000,
        };
        // maxlen=0 means no cap.
        let min = u64::from(name != "maxlen");
        let inside = value.parse::<u64>().is_ok_and(|n| (min..=max).contains(&n));
        match StreamsConfig::from_url(&url) {
            Ok(_) => prop_assert!(inside, "{} accepted", url),
            Err(e) => {
                prop_assert!(!inside, "{}: {}", url, e);
                prop_assert!(e.to_string().contains(name), "{}: {}", url, e);
            }
        }
    }

    /// Durations: written `N` (milliseconds), `Nms`, `Ns` or `Nm`; accepted
    /// exactly within each parameter's documented range.
    #[test]
    fn duration_parameters_are_validated(
        name in prop_oneof![Just("block"), Just("pattern_rescan"), Just("claim_interval"),
            Just("retention"), Just("consumer_idle_cleanup"), Just("breaker_cool_down")],
        n in prop_oneof![Just(0u64), 1u64..100_000, Just(u64::MAX)],
        unit in prop_oneof![Just(""), Just("ms"), Just("s"), Just("m"), Just("h")],
    ) {
        const MINUTE: u128 = 60_000;
        let url = format!("redis+streams://127.0.0.1:6379?{name}={n}{unit}");
        let r = StreamsConfig::from_url(&url);
        let ms = match unit {
            "" | "ms" => Some(u128::from(n)),
            "s" => Some(u128::from(n) * 1000),
            "m" => Some(u128::from(n) * MINUTE),
            _ => None,
        };
        let max = match name {
            "block" => 5 * MINUTE,
            "retention" => 365 * 24 * 60 * MINUTE,
            "consumer_idle_cleanup" => 30 * 24 * 60 * MINUTE,
            _ => 60 * MINUTE,
        };
        let inside = ms.is_some_and(|ms| (1..=max).contains(&ms));
        prop_assert_eq!(r.is_ok(), inside, "{}: {:?}", url, r.err());
    }

    #[test]
    fn password_never_shows(
        secret in "[!-~]{0,12}",
        encoded in any::<bool>(),
        broken in prop_oneof![Just(""), Just("/x"), Just("?maxlen=-1"), Just("?nope=1"),
            Just("?retain=a.*:maxlen=x"),
            Just("?block=soon"), Just(":port"), Just("?namespace=a%20b")],
    ) {
        let password = format!("Zq7{secret}");
        let written = if encoded {
            password.bytes().map(|b| if b.is_ascii_alphanumeric() { char::from(b).to_string() } else { format!("%{b:02X}") }).collect()
        } else {
            password.clone()
        };
        let url = format!("redis+streams://app:{written}@127.0.0.1:6379{broken}");
        let shown = match StreamsConfig::from_url(&url) {
            Ok(cfg) => format!("{cfg:?}"),
            Err(e) => format!("{e} {e:?}"),
        };
        prop_assert!(!shown.contains(&password), "{} shows {}", url, shown);
        prop_assert!(!shown.contains(&written), "{} shows {}", url, shown);
    }
}

proptest! {
    /// On a Redis Cluster every script touches a topic's stream and its
    /// dead-letter stream together (dead-letter move, replay): both keys
    /// must hash to one slot, whatever the namespace and the topic
    /// (braces in a topic included).
    #[test]
    fn a_stream_and_its_dead_letters_share_a_slot(
        ns in "[a-z0-9._:-]{1,20}",
        name in "[a-zA-Z0-9{}._-]{1,40}",
    ) {
        if let Ok(t) = Topic::new(name) {
            let stream = switchyard_redis_streams::keys::stream_key(&ns, &t);
            let dlq = switchyard_redis_streams::keys::dead_letter_key(&ns, &t);
            prop_assert_eq!(
                switchyard_redis::key_slot(stream.as_bytes()),
                switchyard_redis::key_slot(dlq.as_bytes())
            );
        }
    }
}
