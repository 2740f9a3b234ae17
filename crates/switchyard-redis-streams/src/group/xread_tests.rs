//! Tests of the lean `XREADGROUP` reply parser.

use super::*;
use switchyard_core::{DedupId, Message, MessageId};

/// RESP2 encoding of a reply shape, for the tests.
enum R<'a> {
    B(&'a [u8]),
    Nil,
    NilArray,
    Int(i64),
    Err(&'a str),
    A(Vec<R<'a>>),
}

fn enc(r: &R<'_>, out: &mut Vec<u8>) {
    match r {
        R::B(b) => switchyard_redis::lean::put_bulk(out, b),
        R::Nil => out.extend_from_slice(b"$-1\r\n"),
        R::NilArray => out.extend_from_slice(b"*-1\r\n"),
        R::Int(i) => out.extend_from_slice(format!(":{i}\r\n").as_bytes()),
        R::Err(t) => out.extend_from_slice(format!("-{t}\r\n").as_bytes()),
        R::A(items) => {
            switchyard_redis::lean::put_array_header(out, items.len());
            for i in items {
                enc(i, out);
            }
        }
    }
}

fn bytes(r: &R<'_>) -> Vec<u8> {
    let mut out = Vec::new();
    enc(r, &mut out);
    out
}

const HEX: &[u8] = b"0000000000000000000000000000002a";

fn fields<'a>(payload: &'a [u8]) -> R<'a> {
    R::A(vec![
        R::B(b"v"),
        R::B(b"1"),
        R::B(b"d"),
        R::B(HEX),
        R::B(b"p"),
        R::B(payload),
    ])
}

fn entry<'a>(id: &'a str, f: R<'a>) -> R<'a> {
    R::A(vec![R::B(id.as_bytes()), f])
}

fn reply<'a>(key: &'a str, entries: Vec<R<'a>>) -> R<'a> {
    R::A(vec![R::A(vec![R::B(key.as_bytes()), R::A(entries)])])
}

fn topic() -> Topic {
    Topic::new("a.b").unwrap()
}

fn parse(buf: &[u8]) -> Result<Vec<(String, Vec<FetchedEntry>)>, Malformed> {
    parse_streams(buf, |k| (k == "ns:{a.b}").then(|| (k.to_owned(), topic())))
}

fn message(e: &FetchedEntry) -> &Message {
    match &e.body {
        Some(Body::Decoded(Ok(m))) => m,
        other => panic!("not a decoded message: {other:?}"),
    }
}

/// Feeds `buf` to a [`Scan`] in chunks of `step` bytes: `None` until the
/// last chunk, then the whole length.
fn scan_in_chunks(buf: &[u8], step: usize) {
    let mut scan = Scan::default();
    let mut have = 0;
    while have < buf.len() {
        have = (have + step).min(buf.len());
        let got = scan.complete(&buf[..have]).unwrap();
        if have < buf.len() {
            assert_eq!(got, None, "complete too early at {have} of {}", buf.len());
        } else {
            assert_eq!(got, Some(buf.len()));
        }
    }
}

#[test]
fn entries_decode_to_messages() {
    let buf = bytes(&reply(
        "ns:{a.b}",
        vec![
            entry("1-1", fields(b"hello")),
            entry("1700000000000-2", fields(b"")),
        ],
    ));
    let mut scan = Scan::default();
    assert_eq!(scan.complete(&buf).unwrap(), Some(buf.len()));
    let parsed = parse(&buf).unwrap();
    assert_eq!(parsed.len(), 1);
    assert_eq!(parsed[0].0, "ns:{a.b}");
    let entries = &parsed[0].1;
    assert_eq!(entries.len(), 2);
    assert_eq!(entries[0].id, MessageId::new(1, 1));
    assert_eq!(entries[1].id, MessageId::new(1_700_000_000_000, 2));
    let m = message(&entries[0]);
    assert_eq!(&m.payload[..], b"hello");
    assert_eq!(m.dedup_id, DedupId(42));
    assert_eq!(m.topic, topic());
    assert!(message(&entries[1]).payload.is_empty());
}

#[test]
fn same_result_as_the_redis_rs_path() {
    // Every shape handled by `wire::parse_streams_reply` + `decode` gives
    // the same outcome here.
    let hdr = crate::wire::encode_headers(&[("k", "v")].into_iter().collect());
    let shapes: Vec<R<'_>> = vec![
        reply("ns:{a.b}", vec![entry("1-1", fields(b"x"))]),
        reply(
            "ns:{a.b}",
            vec![entry(
                "1-2",
                R::A(vec![
                    R::B(b"v"),
                    R::B(b"1"),
                    R::B(b"d"),
                    R::B(HEX),
                    R::B(b"p"),
                    R::B(b"y"),
                    R::B(b"h"),
                    R::B(&hdr),
                    R::B(b"extra"),
                ]),
            )],
        ),
        // Malformed entries: wrong version, no dedup, bad dedup, no payload.
        reply(
            "ns:{a.b}",
            vec![entry("1-3", R::A(vec![R::B(b"v"), R::B(b"2")]))],
        ),
        reply(
            "ns:{a.b}",
            vec![entry("1-4", R::A(vec![R::B(b"v"), R::B(b"1")]))],
        ),
        reply(
            "ns:{a.b}",
            vec![entry(
                "1-5",
                R::A(vec![R::B(b"v"), R::B(b"1"), R::B(b"d"), R::B(b"zz")]),
            )],
        ),
        reply(
            "ns:{a.b}",
            vec![entry(
                "1-6",
                R::A(vec![R::B(b"v"), R::B(b"1"), R::B(b"d"), R::B(HEX)]),
            )],
        ),
        // Non-bulk values in the field list, an integer version.
        reply(
            "ns:{a.b}",
            vec![entry(
                "1-7",
                R::A(vec![
                    R::B(b"v"),
                    R::Int(1),
                    R::B(b"d"),
                    R::B(HEX),
                    R::A(vec![R::B(b"p")]),
                    R::B(b"q"),
                    R::B(b"p"),
                    R::B(b"z"),
                ]),
            )],
        ),
        // Headers that do not decode.
        reply(
            "ns:{a.b}",
            vec![entry(
                "1-8",
                R::A(vec![
                    R::B(b"v"),
                    R::B(b"1"),
                    R::B(b"d"),
                    R::B(HEX),
                    R::B(b"p"),
                    R::B(b""),
                    R::B(b"h"),
                    R::B(b"\xff"),
                ]),
            )],
        ),
    ];
    for shape in &shapes {
        let lean = parse(&bytes(shape)).unwrap();
        let value = redis::parse_redis_value(&bytes(shape)).unwrap();
        let old = crate::wire::parse_streams_reply(value).unwrap();
        assert_eq!(lean.len(), old.len());
        for ((lk, le), (ok, oe)) in lean.iter().zip(old) {
            assert_eq!(lk, &ok);
            assert_eq!(le.len(), oe.len());
            for (l, o) in le.iter().zip(oe) {
                assert_eq!(l.id, o.id);
                let old = crate::wire::decode(&topic(), o.id, o.fields.unwrap());
                match (&l.body, old) {
                    (Some(Body::Decoded(Ok(a))), Ok(b)) => assert_eq!(a, &b),
                    (Some(Body::Decoded(Err(a))), Err(b)) => assert_eq!(a.reason, b.reason),
                    (l, o) => panic!("differ: {l:?} vs {o:?}"),
                }
            }
        }
    }
}

#[test]
fn nil_reply_and_empty_batches() {
    // BLOCK timed out: a nil array (RESP2), or a nil bulk.
    for buf in [&b"*-1\r\n"[..], b"$-1\r\n"] {
        assert_eq!(Scan::default().complete(buf).unwrap(), Some(buf.len()));
        assert!(parse(buf).unwrap().is_empty());
    }
    let empty = bytes(&R::A(vec![]));
    assert!(parse(&empty).unwrap().is_empty());
    let no_entries = bytes(&reply("ns:{a.b}", vec![]));
    let parsed = parse(&no_entries).unwrap();
    assert_eq!(parsed.len(), 1);
    assert!(parsed[0].1.is_empty());
    let nil_entries = bytes(&R::A(vec![R::A(vec![R::B(b"ns:{a.b}"), R::NilArray])]));
    assert!(parse(&nil_entries).unwrap()[0].1.is_empty());
}

#[test]
fn deleted_entries_have_no_body() {
    // A pending entry whose data was trimmed: `[id, nil]` (nil array or
    // nil bulk), or just `[id]`.
    let buf = bytes(&reply(
        "ns:{a.b}",
        vec![
            entry("1-1", R::NilArray),
            entry("1-2", R::Nil),
            R::A(vec![R::B(b"1-3")]),
            entry("1-4", fields(b"kept")),
        ],
    ));
    let parsed = parse(&buf).unwrap();
    let e = &parsed[0].1;
    assert_eq!(e.len(), 4);
    assert!(e[0].body.is_none() && e[1].body.is_none() && e[2].body.is_none());
    assert_eq!(e[2].id, MessageId::new(1, 3));
    assert_eq!(&message(&e[3]).payload[..], b"kept");
}

#[test]
fn unknown_keys_are_skipped() {
    let buf = bytes(&R::A(vec![
        R::A(vec![R::B(b"other"), R::A(vec![entry("1-1", fields(b"x"))])]),
        R::A(vec![
            R::B(b"ns:{a.b}"),
            R::A(vec![entry("1-2", fields(b"y"))]),
        ]),
    ]));
    let parsed = parse(&buf).unwrap();
    assert_eq!(parsed.len(), 1);
    assert_eq!(parsed[0].1[0].id, MessageId::new(1, 2));
}

#[test]
fn malformed_shapes_are_refused_like_wire() {
    for (shape, reason) in [
        (R::Int(3), "stream reply is not an array or map"),
        (
            R::A(vec![R::B(b"x")]),
            "stream reply item is not [key, entries]",
        ),
        (
            R::A(vec![R::A(vec![R::B(b"k")])]),
            "stream reply item is not [key, entries]",
        ),
        (
            R::A(vec![R::A(vec![R::B(b"\xff"), R::A(vec![])])]),
            "stream key is not text",
        ),
        (
            R::A(vec![R::A(vec![R::B(b"ns:{a.b}"), R::Int(1)])]),
            "entry list is not an array",
        ),
        (
            reply("ns:{a.b}", vec![R::B(b"1-1")]),
            "entry is not [id, fields]",
        ),
        (
            reply("ns:{a.b}", vec![entry("x", fields(b""))]),
            "entry id is not ms-seq",
        ),
        (
            reply("ns:{a.b}", vec![R::A(vec![])]),
            "entry id is not ms-seq",
        ),
        (
            reply("ns:{a.b}", vec![entry("1-1", R::B(b"f"))]),
            "entry fields are not an array",
        ),
    ] {
        let buf = bytes(&shape);
        assert_eq!(Scan::default().complete(&buf).unwrap(), Some(buf.len()));
        assert_eq!(parse(&buf).unwrap_err().reason, reason);
        let old = crate::wire::parse_streams_reply(redis::parse_redis_value(&buf).unwrap());
        assert_eq!(old.unwrap_err().reason, reason);
    }
}

#[test]
fn error_replies_are_one_token() {
    let buf = bytes(&R::Err("NOGROUP No such key 'k' or consumer group 'g'"));
    assert_eq!(Scan::default().complete(&buf).unwrap(), Some(buf.len()));
    assert!(parse(&buf).is_err());
}

#[test]
fn partial_frames_complete_only_at_the_end() {
    let big = vec![7u8; 3000];
    let buf = bytes(&reply(
        "ns:{a.b}",
        vec![
            entry("1-1", fields(b"a")),
            entry("1-2", R::Nil),
            entry("1-3", fields(&big)),
        ],
    ));
    for step in [1, 2, 3, 7, 64, 1000] {
        scan_in_chunks(&buf, step);
    }
    // Two replies back to back: the first one's length, then the second.
    let mut two = buf.clone();
    two.extend_from_slice(b"*-1\r\n");
    let mut scan = Scan::default();
    assert_eq!(scan.complete(&two).unwrap(), Some(buf.len()));
    assert_eq!(scan.complete(&two[buf.len()..]).unwrap(), Some(5));
    // A truncated reply handed to the parser is refused, never a panic.
    for cut in 0..buf.len() {
        let _ = parse(&buf[..cut]);
    }
}

#[test]
fn huge_payloads() {
    let big = vec![0xabu8; 16 * 1024 * 1024];
    let buf = bytes(&reply("ns:{a.b}", vec![entry("1-1", fields(&big))]));
    scan_in_chunks(&buf, 64 * 1024);
    let parsed = parse(&buf).unwrap();
    assert_eq!(message(&parsed[0].1[0]).payload.len(), big.len());
    assert!(message(&parsed[0].1[0]).payload.iter().all(|&b| b == 0xab));
}

#[test]
fn non_utf8_bytes() {
    let payload: Vec<u8> = (0..=255u8).collect();
    let buf = bytes(&reply("ns:{a.b}", vec![entry("1-1", fields(&payload))]));
    let parsed = parse(&buf).unwrap();
    assert_eq!(&message(&parsed[0].1[0]).payload[..], &payload[..]);
    // A payload holding `\r\n` and RESP-looking bytes stays one bulk.
    let tricky = b"\r\n*1\r\n$-1\r\n";
    let buf = bytes(&reply("ns:{a.b}", vec![entry("1-1", fields(tricky))]));
    scan_in_chunks(&buf, 3);
    assert_eq!(&message(&parse(&buf).unwrap()[0].1[0]).payload[..], tricky);
}

#[test]
fn protocol_errors() {
    assert!(Scan::default().complete(b"?x\r\n").is_err());
    assert!(Scan::default().complete(b"*1\r\n$2\r\nabcd").is_err());
    let deep = "*1\r\n".repeat(MAX_DEPTH + 1);
    assert!(Scan::default().complete(deep.as_bytes()).is_err());
}
