//! Messages, headers and ids.

use std::collections::BTreeMap;
use std::fmt;
use std::str::FromStr;

use bytes::Bytes;

use crate::error::{Error, Result};
use crate::topic::Topic;

/// Reserved header keys. Keys starting with `sy-` are reserved for
/// switchyard; adapters may set or overwrite them.
pub mod header {
    /// Backend id of the message, where an adapter chooses to copy it into headers.
    pub const MESSAGE_ID: &str = "sy-id";
    /// The publishing instance (backplane origin id).
    pub const ORIGIN: &str = "sy-origin";
    /// Publish time, milliseconds since the Unix epoch.
    pub const TIMESTAMP: &str = "sy-ts";
    /// MIME type of the payload (`application/json`, `application/x-bincode`).
    pub const CONTENT_TYPE: &str = "content-type";
    /// The dedup id, as 32 lowercase hex digits (see [`DedupId`](super::DedupId)).
    pub const DEDUP_ID: &str = "sy-dedup";
    /// W3C trace context (`traceparent`), carried so a trace crosses the
    /// bus: written on publish and read on delivery by a configured
    /// [`Propagator`](crate::trace::Propagator), never otherwise.
    pub const TRACEPARENT: &str = "traceparent";
    /// W3C trace context (`tracestate`), vendor data beside
    /// [`TRACEPARENT`]; written and read by the same propagator.
    pub const TRACESTATE: &str = "tracestate";
    /// Dead letters: why the message was dead-lettered.
    pub const DLQ_REASON: &str = "sy-dlq-reason";
    /// Dead letters: the topic the message was first published on.
    pub const DLQ_TOPIC: &str = "sy-dlq-topic";
    /// Dead letters: the message's id on its original topic.
    pub const DLQ_ID: &str = "sy-dlq-id";
    /// Dead letters: how many deliveries were attempted.
    pub const DLQ_ATTEMPTS: &str = "sy-dlq-attempts";
    /// Prefix of every reserved key.
    pub const RESERVED_PREFIX: &str = "sy-";
}

/// Message headers: an ordered (by key) map of strings. Empty headers do not
/// allocate.
///
/// ```
/// use switchyard_core::Headers;
/// let mut h = Headers::new();
/// h.insert("tenant", "acme");
/// assert_eq!(h.get("tenant"), Some("acme"));
/// ```
#[derive(Clone, Default, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[serde(transparent)]
pub struct Headers(BTreeMap<String, String>);

impl Headers {
    /// Empty headers.
    pub fn new() -> Self {
        Headers(BTreeMap::new())
    }

    /// Sets `key` to `value`, returning the previous value.
    pub fn insert(&mut self, key: impl Into<String>, value: impl Into<String>) -> Option<String> {
        self.0.insert(key.into(), value.into())
    }

    /// The value of `key`.
    pub fn get(&self, key: &str) -> Option<&str> {
        self.0.get(key).map(String::as_str)
    }

    /// Removes `key`.
    pub fn remove(&mut self, key: &str) -> Option<String> {
        self.0.remove(key)
    }

    /// Number of headers.
    pub fn len(&self) -> usize {
        self.0.len()
    }

    /// Whether there are no headers.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// Iterates over `(key, value)` in key order.
    pub fn iter(&self) -> impl Iterator<Item = (&str, &str)> {
        self.0.iter().map(|(k, v)| (k.as_str(), v.as_str()))
    }
}

impl fmt::Debug for Headers {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_map().entries(self.0.iter()).finish()
    }
}

impl<K: Into<String>, V: Into<String>> FromIterator<(K, V)> for Headers {
    fn from_iter<I: IntoIterator<Item = (K, V)>>(iter: I) -> Self {
        Headers(
            iter.into_iter()
                .map(|(k, v)| (k.into(), v.into()))
                .collect(),
        )
    }
}

/// A 128-bit id given to a message when it is created and kept when the same
/// [`Message`] value is published again (a producer retry), so consumers can
/// drop duplicates of at-least-once delivery.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct DedupId(pub u128);

impl DedupId {
    /// A fresh random id.
    pub fn random() -> Self {
        DedupId(rand::random())
    }

    /// The id derived from a producer's own key (`"{nonce}:{shard}:{seq}"`,
    /// an order number, ...): the 128-bit FNV-1a hash of its UTF-8 bytes.
    /// The same key gives the same id in every process, version and
    /// platform (the derivation is part of the wire contract and never
    /// changes), so a producer that rebuilds a message after a crash keeps
    /// its dedup id. It is not a cryptographic hash: keys chosen to collide
    /// can collide; ordinary keys collide with odds of about n²/2¹²⁹.
    ///
    /// ```
    /// use switchyard_core::{DedupId, Message, Topic};
    /// let id = DedupId::from_key("n-7f3a:shard-2:seq-41");
    /// assert_eq!(id, DedupId::from_key("n-7f3a:shard-2:seq-41"));
    /// let m = Message::new(Topic::new("events")?, "payload").with_dedup_id(id);
    /// assert_eq!(m.dedup_id, id);
    /// # Ok::<(), switchyard_core::Error>(())
    /// ```
    pub fn from_key(key: &str) -> Self {
        const OFFSET: u128 = 0x6c62_272e_07bb_0142_62b8_2175_6295_c58d;
        const PRIME: u128 = 0x0000_0000_0100_0000_0000_0000_0000_013b;
        let mut h = OFFSET;
        for &b in key.as_bytes() {
            h ^= u128::from(b);
            h = h.wrapping_mul(PRIME);
        }
        DedupId(h)
    }
}

impl fmt::Display for DedupId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:032x}", self.0)
    }
}

impl fmt::Debug for DedupId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "DedupId({self})")
    }
}

impl FromStr for DedupId {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self> {
        if s.is_empty() || s.len() > 32 {
            return Err(Error::InvalidConfig(format!(
                "dedup id {s:?} is not 1 to 32 hex digits"
            )));
        }
        u128::from_str_radix(s, 16)
            .map(DedupId)
            .map_err(|_| Error::InvalidConfig(format!("dedup id {s:?} is not hexadecimal")))
    }
}

/// A message to publish: topic, opaque payload bytes, headers and a dedup id.
///
/// ```
/// use switchyard_core::{Message, Topic};
/// let m = Message::new(Topic::new("orders.created")?, "hello")
///     .with_header("tenant", "acme");
/// assert_eq!(&m.payload[..], b"hello");
/// let retry = m.clone();
/// assert_eq!(retry.dedup_id, m.dedup_id); // stable across retries
/// # Ok::<(), switchyard_core::Error>(())
/// ```
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct Message {
    /// Where it is published.
    pub topic: Topic,
    /// The payload, never interpreted by transports.
    pub payload: Bytes,
    /// Application and reserved headers.
    pub headers: Headers,
    /// Stable id for consumer-side deduplication.
    pub dedup_id: DedupId,
}

impl Message {
    /// A message with a fresh dedup id and no headers.
    pub fn new(topic: Topic, payload: impl Into<Bytes>) -> Self {
        Message {
            topic,
            payload: payload.into(),
            headers: Headers::new(),
            dedup_id: DedupId::random(),
        }
    }

    /// A message on a topic given by name; fails on an invalid name.
    pub fn to(topic: &str, payload: impl Into<Bytes>) -> Result<Self> {
        Ok(Message::new(Topic::new(topic)?, payload))
    }

    /// Adds a header.
    pub fn with_header(mut self, key: impl Into<String>, value: impl Into<String>) -> Self {
        self.headers.insert(key, value);
        self
    }

    /// Replaces the headers.
    pub fn with_headers(mut self, headers: Headers) -> Self {
        self.headers = headers;
        self
    }

    /// Sets the dedup id (for example one derived from a business key).
    pub fn with_dedup_id(mut self, id: DedupId) -> Self {
        self.dedup_id = id;
        self
    }

    /// Builds a message from parts received from a backend.
    pub fn from_parts(topic: Topic, payload: Bytes, headers: Headers, dedup_id: DedupId) -> Self {
        Message {
            topic,
            payload,
            headers,
            dedup_id,
        }
    }
}

/// A backend's id for a delivered message: two numbers, written `ms-seq`
/// like a Redis stream id (`1700000000000-0`). Adapters that count (memory,
/// the backplane) use `0-N`. Ids of one topic increase in publish order.
///
/// ```
/// use switchyard_core::MessageId;
/// let id: MessageId = "1700000000000-3".parse()?;
/// assert_eq!(id.to_string(), "1700000000000-3");
/// assert_eq!("42".parse::<MessageId>()?, MessageId::new(42, 0));
/// # Ok::<(), switchyard_core::Error>(())
/// ```
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Default)]
pub struct MessageId {
    /// High part (milliseconds for Redis streams, 0 for counters).
    pub ms: u64,
    /// Low part (sequence within the millisecond, or the counter).
    pub seq: u64,
}

impl MessageId {
    /// The id `ms-seq`.
    pub const fn new(ms: u64, seq: u64) -> Self {
        MessageId { ms, seq }
    }

    /// The id a counter-based adapter gives its `n`th message (`0-n`).
    pub const fn from_seq(n: u64) -> Self {
        MessageId { ms: 0, seq: n }
    }

    /// The smallest id greater than this one.
    pub fn next(self) -> Self {
        match self.seq.checked_add(1) {
            Some(seq) => MessageId { ms: self.ms, seq },
            None => MessageId {
                ms: self.ms.saturating_add(1),
                seq: 0,
            },
        }
    }
}

impl fmt::Display for MessageId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}-{}", self.ms, self.seq)
    }
}

impl fmt::Debug for MessageId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "MessageId({self})")
    }
}

impl FromStr for MessageId {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self> {
        let bad = || {
            Error::InvalidConfig(format!(
                "message id {:?} is not of the form MS-SEQ or MS (two unsigned integers)",
                s.chars().take(64).collect::<String>()
            ))
        };
        let (ms, seq) = match s.split_once('-') {
            Some((a, b)) => (a, b),
            None => (s, "0"),
        };
        let ms = ms.parse::<u64>().map_err(|_| bad())?;
        let seq = seq.parse::<u64>().map_err(|_| bad())?;
        Ok(MessageId { ms, seq })
    }
}

impl serde::Serialize for MessageId {
    fn serialize<S: serde::Serializer>(&self, s: S) -> std::result::Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> serde::Deserialize<'de> for MessageId {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> std::result::Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Producers that derive ids from their own keys had to hash them by
    /// hand; `from_key` is FNV-1a 128, checked against its published
    /// vectors so the derivation can never drift.
    #[test]
    fn dedup_ids_from_keys_are_stable() {
        assert_eq!(
            DedupId::from_key(""),
            DedupId(0x6c62_272e_07bb_0142_62b8_2175_6295_c58d)
        );
        assert_eq!(
            DedupId::from_key("a"),
            DedupId(0xd228_cb69_6f1a_8caf_7891_2b70_4e4a_8964)
        );
        assert_eq!(
            DedupId::from_key("foobar"),
            DedupId(0x343e_1662_793c_64bf_6f0d_3597_ba44_6f18)
        );
        assert_ne!(DedupId::from_key("n:1:41"), DedupId::from_key("n:1:42"));
    }

    #[test]
    fn ids_parse_and_order() {
        let a: MessageId = "1-2".parse().unwrap();
        let b: MessageId = "1-10".parse().unwrap();
        let c: MessageId = "2".parse().unwrap();
        assert!(a < b && b < c);
        assert_eq!(a.next(), MessageId::new(1, 3));
        assert_eq!(MessageId::new(1, u64::MAX).next(), MessageId::new(2, 0));
        for bad in ["", "-", "a-1", "1-b", "1-2-3", "-1", "18446744073709551616"] {
            assert!(bad.parse::<MessageId>().is_err(), "{bad}");
        }
    }

    #[test]
    fn dedup_ids() {
        let d = DedupId(0xabc);
        assert_eq!(d.to_string(), "00000000000000000000000000000abc");
        assert_eq!(d.to_string().parse::<DedupId>().unwrap(), d);
        assert!("xyz".parse::<DedupId>().is_err());
        assert!("0".repeat(33).parse::<DedupId>().is_err());
        assert_ne!(DedupId::random(), DedupId::random());
    }

    #[test]
    fn message_clone_keeps_dedup_id() {
        let m = Message::to("a.b", "x").unwrap();
        assert_eq!(m.clone().dedup_id, m.dedup_id);
        assert_ne!(Message::to("a.b", "x").unwrap().dedup_id, m.dedup_id);
        assert!(Message::to("a b", "x").is_err());
    }

    #[test]
    fn headers_are_ordered() {
        let h: Headers = [("b", "2"), ("a", "1")].into_iter().collect();
        let keys: Vec<_> = h.iter().map(|(k, _)| k).collect();
        assert_eq!(keys, ["a", "b"]);
    }
}
