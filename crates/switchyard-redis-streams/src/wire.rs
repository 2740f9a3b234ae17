//! The entry format: how a [`Message`] is laid out in a stream entry, and
//! lean parsing of stream replies.
//!
//! Fields, in this order (see `docs/wire-format.md`):
//!
//! | field | value |
//! |-------|-------|
//! | `v`   | format version, `1` |
//! | `d`   | dedup id, 32 lowercase hex digits |
//! | `p`   | payload, raw bytes |
//! | `h`   | headers, only when there are any: compact length-prefixed binary |
//!
//! The entry id (`ms-seq`) already carries the publish time in
//! milliseconds; origin, content type and trace context travel as headers.
//!
//! The publisher writes only messages within [`Limits`] (checked before
//! they are queued); the decoder accepts header blocks up to 1 MiB, far
//! more than those limits plus the headers dead-lettering adds, so every
//! entry switchyard writes decodes.

use std::borrow::Cow;
use std::fmt;

use bytes::Bytes;
use redis::Value;
use switchyard_core::{DedupId, Headers, Limits, Message, MessageId, Topic};

/// The format version written in field `v`.
pub const FORMAT_VERSION: &str = "1";
/// Field name of the format version.
pub const F_VERSION: &str = "v";
/// Field name of the dedup id.
pub const F_DEDUP: &str = "d";
/// Field name of the payload.
pub const F_PAYLOAD: &str = "p";
/// Field name of the headers.
pub const F_HEADERS: &str = "h";

/// Largest header block accepted when decoding (a sanity bound). It must
/// hold everything the publisher can write: the headers a message may
/// carry under [`Limits`] (each length as a varint of up to 5 bytes) plus
/// the four `sy-dlq-*` headers a dead letter adds (the reason at most
/// 1 KiB, the topic at most 255 bytes); the assertion below keeps it so.
const MAX_HEADER_BLOCK: usize = 1 << 20;

/// Room for the four `sy-dlq-*` headers of a dead letter, generously.
const DEAD_LETTER_HEADERS: usize = 4 * 1024;

const _: () = assert!(
    Limits::MAX_HEADER_BYTES + (Limits::MAX_HEADERS + 4) * 2 * 5 + DEAD_LETTER_HEADERS
        <= MAX_HEADER_BLOCK,
    "the decoder must accept every header block the publisher (and dead-lettering) can write"
);

/// Why an entry could not be decoded. Never panics, never wedges a reader:
/// the entry is skipped (fan-out) or dead-lettered (groups).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Malformed {
    /// What was wrong, for logs and dead-letter reasons.
    pub reason: String,
}

impl Malformed {
    pub(crate) fn new(reason: impl Into<String>) -> Self {
        Malformed {
            reason: reason.into(),
        }
    }
}

impl fmt::Display for Malformed {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.reason)
    }
}

/// One entry of a stream reply: its id and its field/value pairs, or `None`
/// when the entry was deleted (trimmed) but is still in a pending list.
#[derive(Clone, Debug)]
pub(crate) struct RawEntry {
    /// The stream id.
    pub(crate) id: MessageId,
    /// Field/value pairs; `None` for a deleted entry.
    pub(crate) fields: Option<Vec<(Vec<u8>, Vec<u8>)>>,
}

/// Parses a stream id `ms-seq`.
///
/// ```
/// use switchyard_core::MessageId;
/// use switchyard_redis_streams::wire::parse_id;
/// assert_eq!(parse_id("1700000000000-3"), Some(MessageId::new(1700000000000, 3)));
/// assert_eq!(parse_id("x"), None);
/// ```
pub fn parse_id(s: &str) -> Option<MessageId> {
    parse_id_bytes(s.as_bytes())
}

pub(crate) fn parse_id_bytes(b: &[u8]) -> Option<MessageId> {
    let dash = b.iter().position(|&c| c == b'-')?;
    Some(MessageId::new(
        parse_u64(&b[..dash])?,
        parse_u64(&b[dash + 1..])?,
    ))
}

fn parse_u64(b: &[u8]) -> Option<u64> {
    if b.is_empty() || b.len() > 20 {
        return None;
    }
    let mut n: u64 = 0;
    for &c in b {
        if !c.is_ascii_digit() {
            return None;
        }
        n = n.checked_mul(10)?.checked_add(u64::from(c - b'0'))?;
    }
    Some(n)
}

/// The dedup id as 32 lowercase hex digits, without allocating.
pub(crate) fn dedup_hex(id: DedupId) -> [u8; 32] {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    let mut out = [0u8; 32];
    let v = id.0;
    for (i, slot) in out.iter_mut().enumerate() {
        let shift = (31 - i) * 4;
        *slot = HEX[((v >> shift) & 0xf) as usize];
    }
    out
}

fn parse_dedup(b: &[u8]) -> Option<DedupId> {
    if b.len() != 32 {
        return None;
    }
    let mut v: u128 = 0;
    for &c in b {
        let d = match c {
            b'0'..=b'9' => c - b'0',
            b'a'..=b'f' => c - b'a' + 10,
            b'A'..=b'F' => c - b'A' + 10,
            _ => return None,
        };
        v = (v << 4) | u128::from(d);
    }
    Some(DedupId(v))
}

/// Appends the entry fields of `message` (`v d p [h]`) to an XADD command.
pub(crate) fn push_fields(cmd: &mut redis::Cmd, message: &Message) {
    cmd.arg(F_VERSION)
        .arg(FORMAT_VERSION)
        .arg(F_DEDUP)
        .arg(&dedup_hex(message.dedup_id)[..])
        .arg(F_PAYLOAD)
        .arg(&message.payload[..]);
    if !message.headers.is_empty() {
        cmd.arg(F_HEADERS).arg(encode_headers(&message.headers));
    }
}

/// Encodes headers as a sequence of `varint(len) key varint(len) value`.
pub fn encode_headers(headers: &Headers) -> Vec<u8> {
    let size: usize = headers.iter().map(|(k, v)| k.len() + v.len() + 4).sum();
    let mut out = Vec::with_capacity(size);
    for (k, v) in headers.iter() {
        put_varint(&mut out, k.len());
        out.extend_from_slice(k.as_bytes());
        put_varint(&mut out, v.len());
        out.extend_from_slice(v.as_bytes());
    }
    out
}

/// Decodes a header block written by [`encode_headers`].
pub fn decode_headers(mut b: &[u8]) -> Result<Headers, Malformed> {
    if b.len() > MAX_HEADER_BLOCK {
        return Err(Malformed::new("header block too large"));
    }
    let mut pairs = Vec::new();
    while !b.is_empty() {
        let key = take_str(&mut b, "header name")?;
        let value = take_str(&mut b, "header value")?;
        pairs.push((key, value));
    }
    Ok(pairs.into_iter().collect())
}

fn put_varint(out: &mut Vec<u8>, mut n: usize) {
    while n >= 0x80 {
        out.push((n as u8 & 0x7f) | 0x80);
        n >>= 7;
    }
    out.push(n as u8);
}

fn take_varint(b: &mut &[u8]) -> Option<usize> {
    let mut n: usize = 0;
    for i in 0..5 {
        let (&c, rest) = b.split_first()?;
        *b = rest;
        n |= usize::from(c & 0x7f) << (7 * i);
        if c & 0x80 == 0 {
            return Some(n);
        }
    }
    None
}

fn take_str(b: &mut &[u8], what: &str) -> Result<String, Malformed> {
    let len = take_varint(b).ok_or_else(|| Malformed::new(format!("bad {what} length")))?;
    if len > b.len() {
        return Err(Malformed::new(format!("truncated {what}")));
    }
    let (s, rest) = b.split_at(len);
    *b = rest;
    String::from_utf8(s.to_vec()).map_err(|_| Malformed::new(format!("{what} is not UTF-8")))
}

/// Decodes an entry's fields into a [`Message`] on `topic`. Unknown extra
/// fields are ignored; a missing or unsupported version, a missing or bad
/// dedup id, a missing payload or undecodable headers make it
/// [`Malformed`].
pub fn decode(
    topic: &Topic,
    id: MessageId,
    fields: Vec<(Vec<u8>, Vec<u8>)>,
) -> Result<Message, Malformed> {
    let _ = id;
    let mut sink = FieldSink::default();
    for (name, value) in fields {
        sink.put(&name, Cow::Owned(value));
    }
    sink.finish(topic)
}

/// The fields [`decode`] looks at, gathered one pair at a time (the last
/// of a repeated field wins), borrowed from a reply buffer or owned.
#[derive(Default)]
pub(crate) struct FieldSink<'a> {
    version: Option<Cow<'a, [u8]>>,
    dedup: Option<Cow<'a, [u8]>>,
    payload: Option<Cow<'a, [u8]>>,
    headers: Option<Cow<'a, [u8]>>,
}

impl<'a> FieldSink<'a> {
    /// Takes one field/value pair; unknown fields are ignored.
    pub(crate) fn put(&mut self, name: &[u8], value: Cow<'a, [u8]>) {
        match name {
            b"v" => self.version = Some(value),
            b"d" => self.dedup = Some(value),
            b"p" => self.payload = Some(value),
            b"h" => self.headers = Some(value),
            _ => {}
        }
    }

    /// The message on `topic`, or why the fields are not one: see [`decode`].
    pub(crate) fn finish(self, topic: &Topic) -> Result<Message, Malformed> {
        match self.version.as_deref() {
            Some(b"1") => {}
            Some(v) => {
                return Err(Malformed::new(format!(
                    "unsupported format version {:?}",
                    String::from_utf8_lossy(&v[..v.len().min(16)])
                )));
            }
            None => return Err(Malformed::new("missing field v (format version)")),
        }
        let dedup = self
            .dedup
            .ok_or_else(|| Malformed::new("missing field d (dedup id)"))?;
        let dedup =
            parse_dedup(&dedup).ok_or_else(|| Malformed::new("field d is not 32 hex digits"))?;
        let payload = self
            .payload
            .ok_or_else(|| Malformed::new("missing field p (payload)"))?;
        let headers = match self.headers {
            Some(h) => decode_headers(&h)?,
            None => Headers::new(),
        };
        let payload = match payload {
            Cow::Owned(v) => Bytes::from(v),
            Cow::Borrowed(b) => Bytes::copy_from_slice(b),
        };
        Ok(Message::from_parts(topic.clone(), payload, headers, dedup))
    }
}

fn bulk(v: Value) -> Option<Vec<u8>> {
    match v {
        Value::BulkString(b) => Some(b),
        Value::SimpleString(s) => Some(s.into_bytes()),
        Value::VerbatimString { text, .. } => Some(text.into_bytes()),
        Value::Int(i) => Some(i.to_string().into_bytes()),
        _ => None,
    }
}

/// Parses the reply of XREAD / XREADGROUP: per stream key, its entries.
/// A nil reply (the block timed out) is an empty list.
pub(crate) fn parse_streams_reply(v: Value) -> Result<Vec<(String, Vec<RawEntry>)>, Malformed> {
    let pairs: Vec<(Value, Value)> = match v {
        Value::Nil => return Ok(Vec::new()),
        Value::Array(items) => {
            let mut out = Vec::with_capacity(items.len());
            for item in items {
                match item {
                    Value::Array(kv) if kv.len() == 2 => {
                        let mut it = kv.into_iter();
                        if let (Some(k), Some(e)) = (it.next(), it.next()) {
                            out.push((k, e));
                        }
                    }
                    _ => return Err(Malformed::new("stream reply item is not [key, entries]")),
                }
            }
            out
        }
        Value::Map(kv) => kv,
        _ => return Err(Malformed::new("stream reply is not an array or map")),
    };
    let mut out = Vec::with_capacity(pairs.len());
    for (k, entries) in pairs {
        let key = bulk(k)
            .and_then(|b| String::from_utf8(b).ok())
            .ok_or_else(|| Malformed::new("stream key is not text"))?;
        out.push((key, parse_entries(entries)?));
    }
    Ok(out)
}

/// Parses a list of entries `[[id, [field, value, ...] | nil], ...]` (the
/// entries part of XREAD, XRANGE, XCLAIM and XAUTOCLAIM replies).
pub(crate) fn parse_entries(v: Value) -> Result<Vec<RawEntry>, Malformed> {
    let items = match v {
        Value::Array(items) => items,
        Value::Nil => return Ok(Vec::new()),
        _ => return Err(Malformed::new("entry list is not an array")),
    };
    let mut out = Vec::with_capacity(items.len());
    for item in items {
        let Value::Array(parts) = item else {
            return Err(Malformed::new("entry is not [id, fields]"));
        };
        let mut it = parts.into_iter();
        let id = it
            .next()
            .and_then(bulk)
            .and_then(|b| parse_id_bytes(&b))
            .ok_or_else(|| Malformed::new("entry id is not ms-seq"))?;
        let fields = match it.next() {
            None | Some(Value::Nil) => None,
            Some(Value::Array(flat)) => {
                let mut pairs = Vec::with_capacity(flat.len() / 2);
                let mut flat = flat.into_iter();
                while let (Some(f), Some(v)) = (flat.next(), flat.next()) {
                    match (bulk(f), bulk(v)) {
                        (Some(f), Some(v)) => pairs.push((f, v)),
                        // A non-bulk value can't be ours; keep a marker
                        // field so decode reports the entry as malformed.
                        _ => pairs.push((b"?".to_vec(), Vec::new())),
                    }
                }
                Some(pairs)
            }
            Some(Value::Map(kv)) => Some(
                kv.into_iter()
                    .map(|(f, v)| {
                        (
                            bulk(f).unwrap_or_else(|| b"?".to_vec()),
                            bulk(v).unwrap_or_default(),
                        )
                    })
                    .collect(),
            ),
            Some(_) => return Err(Malformed::new("entry fields are not an array")),
        };
        out.push(RawEntry { id, fields });
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fields(m: &Message) -> Vec<(Vec<u8>, Vec<u8>)> {
        crate::fuzzing::entry_fields(m)
    }

    #[test]
    fn round_trip() {
        let t = Topic::new("a.b").unwrap();
        for m in [
            Message::new(t.clone(), "hello"),
            Message::new(t.clone(), vec![0u8, 255, 10, 13])
                .with_header("content-type", "application/json")
                .with_header("k", "é".repeat(100)),
            Message::new(t.clone(), Bytes::new()).with_dedup_id(DedupId(0)),
            Message::new(t.clone(), "x").with_dedup_id(DedupId(u128::MAX)),
        ] {
            let back = decode(&t, MessageId::new(1, 0), fields(&m)).unwrap();
            assert_eq!(back, m);
        }
    }

    #[test]
    fn malformed_never_panics() {
        let t = Topic::new("a").unwrap();
        let id = MessageId::new(1, 1);
        let f = |pairs: &[(&str, &[u8])]| {
            pairs
                .iter()
                .map(|(a, b)| (a.as_bytes().to_vec(), b.to_vec()))
                .collect::<Vec<_>>()
        };
        let d = [b'a'; 32];
        for (bad, why) in [
            (f(&[("foo", b"bar")]), "version"),
            (f(&[("v", b"2"), ("d", &d), ("p", b"")]), "version"),
            (f(&[("v", b"1"), ("p", b"")]), "dedup"),
            (f(&[("v", b"1"), ("d", b"xyz"), ("p", b"")]), "hex"),
            (f(&[("v", b"1"), ("d", &d)]), "payload"),
            (
                f(&[("v", b"1"), ("d", &d), ("p", b""), ("h", &[5, b'a'])]),
                "truncated",
            ),
            (
                f(&[("v", b"1"), ("d", &d), ("p", b""), ("h", &[0xff; 8])]),
                "length",
            ),
            (
                f(&[("v", b"1"), ("d", &d), ("p", b""), ("h", &[1, 0xff, 0])]),
                "UTF-8",
            ),
        ] {
            let e = decode(&t, id, bad).unwrap_err();
            assert!(e.reason.contains(why), "{why}: {e}");
        }
    }

    /// Everything the publisher can write decodes: a message at every
    /// limit, and its dead letter (four `sy-dlq-*` headers on top, the
    /// reason at its 1 KiB bound, the longest topic).
    #[test]
    fn header_blocks_at_the_limits_decode() {
        let t = Topic::new("a").unwrap();
        let mut h = Headers::new();
        let long_key = "k".repeat(Limits::MAX_HEADER_KEY);
        let mut used = long_key.len();
        h.insert(long_key, "é");
        used += 2;
        for i in 1..Limits::MAX_HEADERS - 1 {
            let key = format!("h{i:02}");
            used += key.len();
            h.insert(key, "");
        }
        h.insert("zz", "v".repeat(Limits::MAX_HEADER_BYTES - used - 2));
        let m = Message::new(t.clone(), "x").with_headers(h.clone());
        m.check_limits().unwrap();
        assert_eq!(decode(&t, MessageId::new(1, 0), fields(&m)).unwrap(), m);

        let mut dead = h;
        dead.insert(switchyard_core::header::DLQ_REASON, "r".repeat(1024));
        dead.insert(switchyard_core::header::DLQ_TOPIC, "t".repeat(255));
        dead.insert(
            switchyard_core::header::DLQ_ID,
            MessageId::new(u64::MAX, u64::MAX).to_string(),
        );
        dead.insert(switchyard_core::header::DLQ_ATTEMPTS, u32::MAX.to_string());
        let block = encode_headers(&dead);
        assert!(block.len() > Limits::MAX_HEADER_BYTES);
        assert_eq!(decode_headers(&block).unwrap(), dead);
    }

    proptest::proptest! {
        #![proptest_config(proptest::prelude::ProptestConfig::with_cases(64))]
        /// Any message within the limits round-trips through the entry
        /// format (random Unicode keys and values, random payloads).
        #[test]
        fn messages_within_the_limits_round_trip(
            pairs in proptest::collection::vec(("\\PC{1,40}", "\\PC{0,300}"), 0..=64),
            payload in proptest::collection::vec(proptest::num::u8::ANY, 0..512),
        ) {
            let t = Topic::new("p.q").unwrap();
            let m = Message::new(t.clone(), payload).with_headers(pairs.into_iter().collect());
            proptest::prop_assume!(m.check_limits().is_ok());
            let back = decode(&t, MessageId::new(1, 0), fields(&m)).unwrap();
            proptest::prop_assert_eq!(back, m);
        }
    }

    #[test]
    fn ids() {
        assert_eq!(parse_id("0-0"), Some(MessageId::new(0, 0)));
        assert_eq!(
            parse_id("18446744073709551615-1"),
            Some(MessageId::new(u64::MAX, 1))
        );
        for bad in [
            "",
            "1",
            "-1",
            "1-",
            "a-1",
            "1-2-3",
            "18446744073709551616-0",
        ] {
            assert_eq!(parse_id(bad), None, "{bad}");
        }
        assert_eq!(&dedup_hex(DedupId(0xabc))[29..], b"abc");
    }

    #[test]
    fn replies() {
        let entry = |id: &str, f: Option<Vec<&str>>| {
            Value::Array(vec![
                Value::BulkString(id.as_bytes().to_vec()),
                match f {
                    None => Value::Nil,
                    Some(f) => Value::Array(
                        f.into_iter()
                            .map(|s| Value::BulkString(s.as_bytes().to_vec()))
                            .collect(),
                    ),
                },
            ])
        };
        let reply = Value::Array(vec![Value::Array(vec![
            Value::BulkString(b"ns:{a}".to_vec()),
            Value::Array(vec![entry("1-1", Some(vec!["v", "1"])), entry("1-2", None)]),
        ])]);
        let parsed = parse_streams_reply(reply).unwrap();
        assert_eq!(parsed.len(), 1);
        assert_eq!(parsed[0].0, "ns:{a}");
        assert_eq!(parsed[0].1[0].id, MessageId::new(1, 1));
        assert!(parsed[0].1[1].fields.is_none());
        assert!(parse_streams_reply(Value::Nil).unwrap().is_empty());
        assert!(parse_streams_reply(Value::Int(3)).is_err());
    }
}
