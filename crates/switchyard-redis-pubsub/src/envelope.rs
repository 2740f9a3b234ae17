//! The versioned wire envelope of a backplane message.
//!
//! A hand-rolled, length-prefixed, little-endian layout (see
//! `docs/wire-format.md`, section "Redis Pub/Sub envelope"):
//!
//! ```text
//! offset size  field
//!  0      2    magic "SY" (0x53 0x59)
//!  2      1    version (1)
//!  3      1    flags (0; reserved, ignored by version-1 readers)
//!  4      8    origin instance id (u64)
//! 12      8    origin boot epoch (u64, Unix milliseconds at transport start)
//! 20      8    origin sequence number (u64, per origin over all topics, from 1)
//! 28      8    topic sequence number (u64, per origin and topic, from 1)
//! 36     16    dedup id (u128)
//! 52      1    topic length T (1..=255)
//! 53      T    topic (validated like `Topic::new`)
//!  .      2    header count H (0..=1024)
//!  .           H times: key length u16 (1..=1024), key (UTF-8),
//!                       value length u32 (0..=1 MiB), value (UTF-8)
//!  .      4    payload length P
//!  .      P    payload
//! ```
//!
//! Nothing may follow the payload. Decoding never panics and never
//! allocates more than the frame it was given: every length is checked
//! against its bound and against the bytes left.
//!
//! [`encode`] writes only messages within [`LIMITS`] (the core
//! [`Limits`] with the payload bounded by [`MAX_PAYLOAD`]), all of which
//! the decoder's bounds above accept (asserted at compile time), so a
//! frame is at most [`MAX_FRAME`] bytes.

use std::fmt;

use bytes::{BufMut, Bytes, BytesMut};
use switchyard_core::{DedupId, Headers, Limits, Message, Result, Topic, header};

/// The two bytes every envelope starts with.
pub(crate) const MAGIC: [u8; 2] = *b"SY";
/// The envelope version this crate writes and reads.
pub(crate) const VERSION: u8 = 1;
/// Size of the fixed part, before the topic.
pub(crate) const FIXED_LEN: usize = 52;
/// Most headers in one envelope.
pub(crate) const MAX_HEADERS: usize = 1024;
/// Longest header key, in bytes.
pub(crate) const MAX_KEY_LEN: usize = 1024;
/// Longest header value, in bytes.
pub(crate) const MAX_VALUE_LEN: usize = 1 << 20;

/// Largest payload the backplane publishes: 8 MiB (8 388 608 bytes), half
/// of the 16 MiB every other adapter takes.
///
/// Redis disconnects a Pub/Sub subscriber whose output buffer passes
/// `client-output-buffer-limit pubsub` (32 MB by default), and a message
/// that does that is never delivered to anyone and reported as lost. With
/// this bound a whole frame (payload, at most 64 KiB of headers, envelope)
/// stays under [`MAX_FRAME`], about a quarter of that limit, so a
/// subscriber can have three of the largest frames queued and still be
/// connected. A larger message is refused at publish with
/// `Error::InvalidMessage` naming this bound; nothing of it is delivered,
/// locally or through Redis.
pub const MAX_PAYLOAD: usize = 8 << 20;

/// The backplane's message limits: [`Limits::DEFAULT`] with the payload
/// bounded by [`MAX_PAYLOAD`]. Also its `Capabilities::limits`.
pub const LIMITS: Limits = Limits::DEFAULT.with_max_payload(
    MAX_PAYLOAD,
    "switchyard_redis_pubsub::MAX_PAYLOAD, the backplane's bound below Redis' 32 MB pub/sub output buffer limit",
);

/// Largest frame the backplane publishes: the fixed part, the longest topic,
/// every header's length fields and bytes at their limits, and the payload
/// at [`MAX_PAYLOAD`]: 8 454 842 bytes (about 8.06 MiB).
pub const MAX_FRAME: usize = FIXED_LEN
    + 1
    + 255
    + 2
    + Limits::MAX_HEADERS * (2 + 4)
    + Limits::MAX_HEADER_BYTES
    + 4
    + MAX_PAYLOAD;

/// Redis' default `client-output-buffer-limit pubsub` hard limit.
const REDIS_PUBSUB_OUTPUT_LIMIT: usize = 32 * 1024 * 1024;

// The decoder accepts everything `encode` writes, and a frame stays well
// below the limit that disconnects subscribers.
const _: () = {
    assert!(LIMITS.max_headers <= MAX_HEADERS);
    assert!(LIMITS.max_header_key <= MAX_KEY_LEN);
    assert!(LIMITS.max_header_bytes <= MAX_VALUE_LEN);
    assert!(LIMITS.max_payload <= u32::MAX as usize);
    assert!(MAX_FRAME * 3 < REDIS_PUBSUB_OUTPUT_LIMIT);
};

const SEQ_OFFSET: usize = 20;
const TOPIC_SEQ_OFFSET: usize = 28;

/// Who sent a message: the fields every envelope of one transport shares.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Origin {
    /// Random per transport (or configured).
    pub(crate) id: u64,
    /// Unix milliseconds when the transport started.
    pub(crate) epoch: u64,
}

/// A decoded envelope.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Envelope {
    pub(crate) origin: Origin,
    pub(crate) seq: u64,
    pub(crate) topic_seq: u64,
    pub(crate) topic: Topic,
    pub(crate) dedup_id: DedupId,
    pub(crate) headers: Headers,
    pub(crate) payload: Bytes,
}

impl Envelope {
    /// The message it carries, with the `sy-origin` header set.
    pub(crate) fn into_message(self) -> Message {
        let mut headers = self.headers;
        headers.insert(header::ORIGIN, origin_hex(self.origin.id));
        Message::from_parts(self.topic, self.payload, headers, self.dedup_id)
    }
}

/// The origin id as it appears in `sy-origin` headers and `Error::Lost`.
pub(crate) fn origin_hex(id: u64) -> String {
    format!("{id:016x}")
}

/// Why a frame could not be decoded.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum DecodeError {
    /// The frame is a switchyard envelope of a version this build does not know.
    UnknownVersion(u8),
    /// Anything else: not an envelope, truncated, a bound exceeded, bad text.
    Malformed(&'static str),
}

impl fmt::Display for DecodeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            DecodeError::UnknownVersion(v) => {
                write!(
                    f,
                    "unknown envelope version {v} (this build reads {VERSION})"
                )
            }
            DecodeError::Malformed(what) => write!(f, "malformed envelope: {what}"),
        }
    }
}

/// Encodes `message` for `origin` with both sequence numbers left at zero;
/// [`set_seqs`] fills them in once they are assigned. The `sy-origin`
/// header is not written (the origin is in the fixed part).
///
/// A message over [`LIMITS`] is refused with `Error::InvalidMessage`.
pub(crate) fn encode(origin: Origin, message: &Message) -> Result<BytesMut> {
    LIMITS.check(message)?;
    let topic = message.topic.as_str().as_bytes();
    let headers: Vec<(&str, &str)> = message
        .headers
        .iter()
        .filter(|(k, _)| *k != header::ORIGIN)
        .collect();
    let size = FIXED_LEN
        + 1
        + topic.len()
        + 2
        + headers
            .iter()
            .map(|(k, v)| 2 + k.len() + 4 + v.len())
            .sum::<usize>()
        + 4
        + message.payload.len();
    let mut buf = BytesMut::with_capacity(size);
    buf.put_slice(&MAGIC);
    buf.put_u8(VERSION);
    buf.put_u8(0);
    buf.put_u64_le(origin.id);
    buf.put_u64_le(origin.epoch);
    buf.put_u64_le(0);
    buf.put_u64_le(0);
    buf.put_u128_le(message.dedup_id.0);
    // Topic names are at most 255 bytes (Topic::MAX_LEN).
    buf.put_u8(u8::try_from(topic.len()).unwrap_or(u8::MAX));
    buf.put_slice(topic);
    // Bounded by LIMITS, checked above; the assertions next to LIMITS keep
    // those within the field widths.
    buf.put_u16_le(headers.len() as u16);
    for (k, v) in &headers {
        buf.put_u16_le(k.len() as u16);
        buf.put_slice(k.as_bytes());
        buf.put_u32_le(v.len() as u32);
        buf.put_slice(v.as_bytes());
    }
    buf.put_u32_le(message.payload.len() as u32);
    buf.put_slice(&message.payload);
    Ok(buf)
}

/// Writes the origin and topic sequence numbers into an encoded frame.
pub(crate) fn set_seqs(frame: &mut [u8], seq: u64, topic_seq: u64) {
    if frame.len() >= FIXED_LEN {
        frame[SEQ_OFFSET..SEQ_OFFSET + 8].copy_from_slice(&seq.to_le_bytes());
        frame[TOPIC_SEQ_OFFSET..TOPIC_SEQ_OFFSET + 8].copy_from_slice(&topic_seq.to_le_bytes());
    }
}

/// A cursor over a frame; every read is bounds-checked.
struct Reader<'a> {
    buf: &'a [u8],
}

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize, what: &'static str) -> Result<&'a [u8], DecodeError> {
        if self.buf.len() < n {
            return Err(DecodeError::Malformed(what));
        }
        let (head, rest) = self.buf.split_at(n);
        self.buf = rest;
        Ok(head)
    }

    fn array<const N: usize>(&mut self, what: &'static str) -> Result<[u8; N], DecodeError> {
        let bytes = self.take(N, what)?;
        let mut out = [0u8; N];
        out.copy_from_slice(bytes);
        Ok(out)
    }

    fn u8(&mut self, what: &'static str) -> Result<u8, DecodeError> {
        Ok(self.array::<1>(what)?[0])
    }

    fn u16(&mut self, what: &'static str) -> Result<u16, DecodeError> {
        Ok(u16::from_le_bytes(self.array(what)?))
    }

    fn u32(&mut self, what: &'static str) -> Result<u32, DecodeError> {
        Ok(u32::from_le_bytes(self.array(what)?))
    }

    fn u64(&mut self, what: &'static str) -> Result<u64, DecodeError> {
        Ok(u64::from_le_bytes(self.array(what)?))
    }

    fn u128(&mut self, what: &'static str) -> Result<u128, DecodeError> {
        Ok(u128::from_le_bytes(self.array(what)?))
    }

    fn str(&mut self, n: usize, what: &'static str) -> Result<&'a str, DecodeError> {
        std::str::from_utf8(self.take(n, what)?).map_err(|_| DecodeError::Malformed(what))
    }
}

/// Decodes a frame. Never panics; the payload is copied out of `frame`.
pub(crate) fn decode(frame: &[u8]) -> Result<Envelope, DecodeError> {
    decode_with(frame, None)
}

/// [`decode`], reusing `last` (the previous frame's topic) when the frame
/// names the same topic: no allocation, no validation again.
pub(crate) fn decode_with(frame: &[u8], last: Option<&Topic>) -> Result<Envelope, DecodeError> {
    let mut r = Reader { buf: frame };
    if r.array::<2>("no magic bytes (not a switchyard envelope)")? != MAGIC {
        return Err(DecodeError::Malformed(
            "no magic bytes (not a switchyard envelope)",
        ));
    }
    let version = r.u8("truncated before the version")?;
    if version != VERSION {
        return Err(DecodeError::UnknownVersion(version));
    }
    let _flags = r.u8("truncated before the flags")?;
    let id = r.u64("truncated in the origin id")?;
    let epoch = r.u64("truncated in the origin epoch")?;
    let seq = r.u64("truncated in the sequence number")?;
    let topic_seq = r.u64("truncated in the topic sequence number")?;
    let dedup = r.u128("truncated in the dedup id")?;
    let topic_len = usize::from(r.u8("truncated before the topic length")?);
    let topic = r.str(topic_len, "truncated or non-UTF-8 topic")?;
    let topic = match last {
        Some(t) if t.as_str() == topic => t.clone(),
        _ => Topic::new(topic).map_err(|_| DecodeError::Malformed("invalid topic name"))?,
    };
    let count = usize::from(r.u16("truncated before the header count")?);
    if count > MAX_HEADERS {
        return Err(DecodeError::Malformed("too many headers"));
    }
    let mut headers = Headers::new();
    for _ in 0..count {
        let klen = usize::from(r.u16("truncated in a header key length")?);
        if klen == 0 || klen > MAX_KEY_LEN {
            return Err(DecodeError::Malformed("header key length out of bounds"));
        }
        let key = r.str(klen, "truncated or non-UTF-8 header key")?;
        let vlen = r.u32("truncated in a header value length")? as usize;
        if vlen > MAX_VALUE_LEN {
            return Err(DecodeError::Malformed("header value length out of bounds"));
        }
        let value = r.str(vlen, "truncated or non-UTF-8 header value")?;
        headers.insert(key, value);
    }
    let plen = r.u32("truncated before the payload length")? as usize;
    let payload = r.take(plen, "truncated payload")?;
    if !r.buf.is_empty() {
        return Err(DecodeError::Malformed("trailing bytes after the payload"));
    }
    if seq == 0 || topic_seq == 0 {
        return Err(DecodeError::Malformed("sequence numbers start at 1"));
    }
    Ok(Envelope {
        origin: Origin { id, epoch },
        seq,
        topic_seq,
        topic,
        dedup_id: DedupId(dedup),
        headers,
        payload: Bytes::copy_from_slice(payload),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Instant;

    const ORIGIN: Origin = Origin {
        id: 0x0123_4567_89ab_cdef,
        epoch: 1_700_000_000_000,
    };

    fn sample() -> Message {
        Message::to("robot-1/camera/rgb", vec![0u8, 1, 2, 255])
            .unwrap()
            .with_header("tenant", "acme")
            .with_header("unicode", "ü ✓ 日本")
            .with_header("empty", "")
            .with_header(header::ORIGIN, "ignored: the envelope carries the origin")
            .with_dedup_id(DedupId(0xfeed_beef))
    }

    fn frame(message: &Message) -> Vec<u8> {
        let mut buf = encode(ORIGIN, message).unwrap();
        set_seqs(&mut buf, 7, 3);
        buf.to_vec()
    }

    #[test]
    fn round_trip() {
        let m = sample();
        let env = decode(&frame(&m)).unwrap();
        assert_eq!(env.origin, ORIGIN);
        assert_eq!((env.seq, env.topic_seq), (7, 3));
        assert_eq!(env.topic, m.topic);
        assert_eq!(env.dedup_id, m.dedup_id);
        assert_eq!(env.payload, m.payload);
        assert_eq!(env.headers.get("tenant"), Some("acme"));
        assert_eq!(env.headers.get("unicode"), Some("ü ✓ 日本"));
        assert_eq!(env.headers.get("empty"), Some(""));
        assert_eq!(env.headers.get(header::ORIGIN), None);
        let back = env.into_message();
        assert_eq!(back.headers.get(header::ORIGIN), Some("0123456789abcdef"));
        assert_eq!(back.headers.len(), 4);
    }

    #[test]
    fn the_last_topic_is_reused_only_when_it_is_the_same() {
        let m = sample();
        let f = frame(&m);
        let same = m.topic.clone();
        let other = Topic::new("robot-1/camera").unwrap();
        assert_eq!(decode_with(&f, Some(&same)).unwrap().topic, m.topic);
        assert_eq!(decode_with(&f, Some(&other)).unwrap().topic, m.topic);
        assert_eq!(decode_with(&f, None).unwrap(), decode(&f).unwrap());
    }

    #[test]
    fn empty_and_large_payloads() {
        for size in [0usize, 1, 1 << 20] {
            let m = Message::to("a", vec![0xa5; size]).unwrap();
            let env = decode(&frame(&m)).unwrap();
            assert_eq!(env.payload.len(), size);
            assert!(env.headers.is_empty());
        }
    }

    #[test]
    fn every_prefix_is_an_error_not_a_panic() {
        let full = frame(&sample());
        for len in 0..full.len() {
            let e = decode(&full[..len]).unwrap_err();
            assert!(matches!(e, DecodeError::Malformed(_)), "prefix {len}: {e}");
        }
        let mut longer = full.clone();
        longer.push(0);
        assert_eq!(
            decode(&longer).unwrap_err(),
            DecodeError::Malformed("trailing bytes after the payload")
        );
    }

    #[test]
    fn garbage_and_versions() {
        assert!(matches!(
            decode(b"garbage").unwrap_err(),
            DecodeError::Malformed(_)
        ));
        assert!(matches!(
            decode(b"").unwrap_err(),
            DecodeError::Malformed(_)
        ));
        let mut f = frame(&sample());
        f[2] = 2;
        assert_eq!(decode(&f).unwrap_err(), DecodeError::UnknownVersion(2));
        // Every single-byte corruption is an error or a different valid
        // envelope, never a panic.
        let f = frame(&sample());
        for i in 0..f.len() {
            for b in [0u8, 0x7f, 0xff] {
                let mut g = f.clone();
                g[i] = b;
                let _ = decode(&g);
            }
        }
        // Pseudo-random garbage behind valid magic and version.
        let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
        for _ in 0..2000 {
            let mut g = vec![b'S', b'Y', VERSION];
            for _ in 0..(x % 300) {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                g.push(x as u8);
            }
            let _ = decode(&g);
        }
    }

    #[test]
    fn lengths_are_bounded() {
        // A header count above the bound is refused before anything is read.
        let mut f = frame(&Message::to("a", "x").unwrap());
        let count_at = FIXED_LEN + 1 + 1;
        f[count_at..count_at + 2].copy_from_slice(&u16::MAX.to_le_bytes());
        assert_eq!(
            decode(&f).unwrap_err(),
            DecodeError::Malformed("too many headers")
        );
        // A payload length beyond the frame is truncation, not an allocation.
        let mut f = frame(&Message::to("a", "x").unwrap());
        let plen_at = f.len() - 1 - 4;
        f[plen_at..plen_at + 4].copy_from_slice(&u32::MAX.to_le_bytes());
        assert_eq!(
            decode(&f).unwrap_err(),
            DecodeError::Malformed("truncated payload")
        );
        // Invalid topics are refused.
        let mut f = frame(&Message::to("ab", "x").unwrap());
        f[FIXED_LEN + 1] = b'*';
        assert_eq!(
            decode(&f).unwrap_err(),
            DecodeError::Malformed("invalid topic name")
        );
        // Zero sequence numbers (an unpatched frame) are refused.
        let unpatched = encode(ORIGIN, &Message::to("a", "x").unwrap()).unwrap();
        assert!(decode(&unpatched).is_err());
    }

    /// Limits are checked before anything is encoded; the error names the
    /// bound and the size. Before, `encode` accepted any payload up to
    /// 4 GiB (a 32 MB one disconnected every subscriber) and reported
    /// oversized headers as `Error::Codec`.
    #[test]
    fn encode_refuses_messages_over_the_limits() {
        let refused = |m: &Message| match encode(ORIGIN, m) {
            Err(switchyard_core::Error::InvalidMessage {
                actual, max, limit, ..
            }) => (actual, max, limit),
            other => panic!("expected InvalidMessage, got {other:?}"),
        };
        let m = Message::to("a", vec![0u8; MAX_PAYLOAD + 1]).unwrap();
        let (actual, max, limit) = refused(&m);
        assert_eq!((actual, max), (8_388_609, 8_388_608));
        assert!(
            limit.starts_with("switchyard_redis_pubsub::MAX_PAYLOAD"),
            "{limit}"
        );
        let m = Message::to("a", "x")
            .unwrap()
            .with_header("k", "v".repeat(MAX_VALUE_LEN + 1));
        assert_eq!(refused(&m).2, "Limits::MAX_HEADER_BYTES");
        let m = Message::to("a", "x").unwrap().with_header("", "v");
        assert_eq!(refused(&m).2, "Limits::MAX_HEADER_KEY");
        let many: Headers = (0..=MAX_HEADERS).map(|i| (format!("k{i}"), "v")).collect();
        let m = Message::to("a", "x").unwrap().with_headers(many);
        assert_eq!(refused(&m).2, "Limits::MAX_HEADERS");
    }

    /// The largest message the backplane publishes (longest topic, every
    /// header limit, payload at MAX_PAYLOAD) encodes to exactly MAX_FRAME
    /// bytes and decodes back.
    #[test]
    fn the_largest_frame_round_trips() {
        let h = switchyard_conformance::headers_at_bounds();
        let m = Message::to(&"t".repeat(255), vec![0x5a; MAX_PAYLOAD])
            .unwrap()
            .with_headers(h);
        let f = frame(&m);
        assert_eq!(f.len(), MAX_FRAME);
        let env = decode(&f).unwrap();
        assert_eq!(env.payload, m.payload);
        assert_eq!(env.headers, m.headers);
        assert_eq!(env.topic, m.topic);
    }

    proptest::proptest! {
        #![proptest_config(proptest::prelude::ProptestConfig::with_cases(64))]
        /// Any message within LIMITS (random Unicode keys and values,
        /// random payloads) encodes and decodes back unchanged.
        #[test]
        fn messages_within_the_limits_round_trip(
            pairs in proptest::collection::vec(("[a-z]\\PC{0,40}", "\\PC{0,300}"), 0..=64),
            payload in proptest::collection::vec(proptest::num::u8::ANY, 0..512),
        ) {
            let m = Message::to("p.q", payload).unwrap().with_headers(pairs.into_iter().collect());
            proptest::prop_assume!(LIMITS.check(&m).is_ok());
            let env = decode(&frame(&m)).unwrap();
            proptest::prop_assert_eq!(env.payload, m.payload);
            proptest::prop_assert_eq!(env.headers, m.headers);
            proptest::prop_assert_eq!(env.dedup_id, m.dedup_id);
        }
    }

    /// Prints the encode and decode cost of a typical small message
    /// (`cargo test -p switchyard-redis-pubsub --release envelope_cost -- --nocapture`).
    #[test]
    fn envelope_cost() {
        let m = Message::to("chat.room-42", vec![b'x'; 16])
            .unwrap()
            .with_header("content-type", "application/json");
        let n = 20_000u32;
        let started = Instant::now();
        let mut total = 0usize;
        for i in 0..n {
            let mut buf = encode(ORIGIN, &m).unwrap();
            set_seqs(&mut buf, u64::from(i) + 1, u64::from(i) + 1);
            total += buf.len();
        }
        let enc = started.elapsed() / n;
        let f = frame(&m);
        let started = Instant::now();
        for _ in 0..n {
            total += decode(&f).unwrap().payload.len();
        }
        let dec = started.elapsed() / n;
        tracing::info!(
            ?enc,
            ?dec,
            frame = f.len(),
            total,
            "envelope cost per message"
        );
        eprintln!(
            "envelope: {} bytes for a 16-byte payload; encode {enc:?}, decode {dec:?} per message",
            f.len()
        );
    }
}
