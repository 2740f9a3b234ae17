//! Message limits: the sizes every adapter accepts at publish.
//!
//! One set of limits holds for every adapter, so an application behaves the
//! same whichever URL it is given; an adapter may lower the payload bound
//! (never raise anything) and says so in [`Capabilities::limits`]
//! (see `docs/semantics.md`, "Limits"):
//!
//! | limit | value | what is measured |
//! |---|---|---|
//! | [`Limits::MAX_PAYLOAD`] | 16 MiB (16 777 216 bytes) | payload bytes |
//! | [`Limits::MAX_HEADERS`] | 64 | number of headers |
//! | [`Limits::MAX_HEADER_BYTES`] | 64 KiB (65 536 bytes) | sum of the byte lengths of every header key and value |
//! | [`Limits::MAX_HEADER_KEY`] | 256 bytes (and at least 1) | byte length of one header key |
//!
//! A header value is bounded by [`Limits::MAX_HEADER_BYTES`]. Adapters check
//! a message with [`Limits::check`] (a batch with [`Limits::check_batch`])
//! before anything of it is sent and refuse it with
//! [`Error::InvalidMessage`], which names the limit and the actual size.
//! Headers an adapter adds itself (`sy-origin` on backplane deliveries, the
//! four `sy-dlq-*` headers of a dead letter) come on top; every decoder
//! accepts them.
//!
//! [`Capabilities::limits`]: crate::Capabilities::limits

use crate::error::{Error, Result};
use crate::message::Message;

/// The message limits of an adapter: [`Limits::DEFAULT`] everywhere, with a
/// lower payload bound where the backend needs one (the Redis Pub/Sub
/// backplane: 8 MiB).
///
/// ```
/// use switchyard_core::{Error, Limits, Message};
/// let ok = Message::to("a.b", vec![0u8; 1024])?.with_header("tenant", "acme");
/// Limits::DEFAULT.check(&ok)?;
/// let small = Limits::DEFAULT.with_max_payload(100, "demo bound");
/// match small.check(&ok) {
///     Err(Error::InvalidMessage { actual: 1024, max: 100, .. }) => {}
///     other => panic!("{other:?}"),
/// }
/// # Ok::<(), switchyard_core::Error>(())
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub struct Limits {
    /// Largest payload, in bytes (at most [`Limits::MAX_PAYLOAD`]).
    pub max_payload: usize,
    /// What bounds the payload, for error messages (`Limits::MAX_PAYLOAD`
    /// or the adapter's constant).
    pub payload_bound: &'static str,
    /// Most headers (always [`Limits::MAX_HEADERS`]).
    pub max_headers: usize,
    /// Largest sum of header key and value lengths, in bytes (always
    /// [`Limits::MAX_HEADER_BYTES`]).
    pub max_header_bytes: usize,
    /// Longest header key, in bytes (always [`Limits::MAX_HEADER_KEY`]);
    /// keys are never empty.
    pub max_header_key: usize,
}

impl Limits {
    /// Largest payload any adapter accepts: 16 MiB.
    pub const MAX_PAYLOAD: usize = 16 << 20;
    /// Most headers on one message: 64.
    pub const MAX_HEADERS: usize = 64;
    /// Largest sum of the byte lengths of all header keys and values: 64 KiB.
    pub const MAX_HEADER_BYTES: usize = 64 << 10;
    /// Longest header key: 256 bytes. Keys are at least 1 byte.
    pub const MAX_HEADER_KEY: usize = 256;

    /// The limits every adapter enforces unless it documents a lower
    /// payload bound.
    pub const DEFAULT: Limits = Limits {
        max_payload: Limits::MAX_PAYLOAD,
        payload_bound: "Limits::MAX_PAYLOAD",
        max_headers: Limits::MAX_HEADERS,
        max_header_bytes: Limits::MAX_HEADER_BYTES,
        max_header_key: Limits::MAX_HEADER_KEY,
    };

    /// These limits with the payload bound lowered to `max` bytes, named
    /// `bound` in errors. A value above the current bound is ignored: an
    /// adapter can only be stricter than [`Limits::DEFAULT`].
    pub const fn with_max_payload(self, max: usize, bound: &'static str) -> Limits {
        if max >= self.max_payload {
            return self;
        }
        Limits {
            max_payload: max,
            payload_bound: bound,
            ..self
        }
    }

    /// Checks `message` against these limits: payload size, header count,
    /// each key's size, then the header bytes. The error is
    /// [`Error::InvalidMessage`] for the first limit broken; it never
    /// contains a header value.
    pub fn check(&self, message: &Message) -> Result<()> {
        let payload = message.payload.len();
        if payload > self.max_payload {
            return Err(refuse(
                "payload size in bytes".into(),
                payload,
                0,
                self.max_payload,
                self.payload_bound,
            ));
        }
        let headers = message.headers.len();
        if headers > self.max_headers {
            return Err(refuse(
                "header count".into(),
                headers,
                0,
                self.max_headers,
                "Limits::MAX_HEADERS",
            ));
        }
        let mut bytes = 0usize;
        for (key, value) in message.headers.iter() {
            if key.is_empty() || key.len() > self.max_header_key {
                return Err(refuse(
                    format!("size in bytes of header key {}", shown_key(key)),
                    key.len(),
                    1,
                    self.max_header_key,
                    "Limits::MAX_HEADER_KEY",
                ));
            }
            bytes = bytes.saturating_add(key.len()).saturating_add(value.len());
        }
        if bytes > self.max_header_bytes {
            return Err(refuse(
                "header size in bytes (all keys and values together)".into(),
                bytes,
                0,
                self.max_header_bytes,
                "Limits::MAX_HEADER_BYTES",
            ));
        }
        Ok(())
    }

    /// Checks every message of a batch before anything is sent: the first
    /// message over a limit fails the whole batch, and the error says which
    /// one (`message 3 of 10 in the batch (counting from 0)`).
    pub fn check_batch(&self, messages: &[Message]) -> Result<()> {
        for (i, message) in messages.iter().enumerate() {
            if let Err(e) = self.check(message) {
                return Err(match e {
                    Error::InvalidMessage {
                        what,
                        actual,
                        min,
                        max,
                        limit,
                    } => Error::InvalidMessage {
                        what: format!(
                            "message {i} of {} in the batch (counting from 0): {what}",
                            messages.len()
                        ),
                        actual,
                        min,
                        max,
                        limit,
                    },
                    other => other,
                });
            }
        }
        Ok(())
    }
}

impl Default for Limits {
    /// [`Limits::DEFAULT`].
    fn default() -> Self {
        Limits::DEFAULT
    }
}

impl Message {
    /// Checks this message against [`Limits::DEFAULT`], the limits every
    /// adapter enforces at publish (an adapter may have a lower payload
    /// bound: see its [`Capabilities::limits`](crate::Capabilities::limits)).
    ///
    /// ```
    /// use switchyard_core::{Error, Message};
    /// assert!(Message::to("a", "x")?.check_limits().is_ok());
    /// let big = Message::to("a", "x")?.with_header("k", "v".repeat(70_000));
    /// assert!(matches!(big.check_limits(), Err(Error::InvalidMessage { .. })));
    /// # Ok::<(), Error>(())
    /// ```
    pub fn check_limits(&self) -> Result<()> {
        Limits::DEFAULT.check(self)
    }
}

fn refuse(what: String, actual: usize, min: usize, max: usize, limit: &'static str) -> Error {
    Error::InvalidMessage {
        what,
        actual,
        min,
        max,
        limit,
    }
}

/// A header key as shown in errors: quoted, at most 32 characters.
fn shown_key(key: &str) -> String {
    let mut shown: String = key.chars().take(32).collect();
    if shown.len() < key.len() {
        shown.push('…');
    }
    format!("{shown:?}")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::message::Headers;

    fn msg(payload: usize) -> Message {
        Message::to("a.b", vec![7u8; payload]).unwrap()
    }

    /// `n` headers whose keys and values add up to exactly `bytes` bytes
    /// (`n >= 1`, `bytes >= 3 * n`): keys `k00`, `k01`, ... and the rest in
    /// the last value.
    fn headers(n: usize, bytes: usize) -> Headers {
        let mut h = Headers::new();
        for i in 0..n - 1 {
            h.insert(format!("k{i:02}"), "");
        }
        let used = 3 * (n - 1) + 3;
        h.insert(format!("k{:02}", n - 1), "v".repeat(bytes - used));
        h
    }

    fn refused(r: Result<()>) -> (String, usize, usize, usize, &'static str) {
        match r {
            Err(Error::InvalidMessage {
                what,
                actual,
                min,
                max,
                limit,
            }) => (what, actual, min, max, limit),
            other => panic!("expected InvalidMessage, got {other:?}"),
        }
    }

    #[test]
    fn every_bound_is_inclusive() {
        let l = Limits::DEFAULT;
        let at_bounds = msg(Limits::MAX_PAYLOAD)
            .with_headers(headers(Limits::MAX_HEADERS, Limits::MAX_HEADER_BYTES));
        assert_eq!(at_bounds.headers.len(), 64);
        l.check(&at_bounds).unwrap();
        at_bounds.check_limits().unwrap();
        let key = "k".repeat(Limits::MAX_HEADER_KEY);
        l.check(&msg(0).with_header(key, "")).unwrap();
        l.check(&msg(0)).unwrap();
    }

    #[test]
    fn one_past_each_bound_is_refused_and_named() {
        let l = Limits::DEFAULT;
        let (what, actual, min, max, limit) = refused(l.check(&msg(Limits::MAX_PAYLOAD + 1)));
        assert_eq!(what, "payload size in bytes");
        assert_eq!((actual, min, max), (16_777_217, 0, 16_777_216));
        assert_eq!(limit, "Limits::MAX_PAYLOAD");

        let many = msg(0).with_headers(headers(65, 65 * 3));
        let (what, actual, _, max, limit) = refused(l.check(&many));
        assert_eq!((what.as_str(), actual, max), ("header count", 65, 64));
        assert_eq!(limit, "Limits::MAX_HEADERS");

        let big = msg(0).with_headers(headers(2, Limits::MAX_HEADER_BYTES + 1));
        let (what, actual, _, max, limit) = refused(l.check(&big));
        assert!(what.starts_with("header size in bytes"), "{what}");
        assert_eq!((actual, max), (65_537, 65_536));
        assert_eq!(limit, "Limits::MAX_HEADER_BYTES");

        let long = msg(0).with_header("k".repeat(257), "v");
        let (what, actual, min, max, limit) = refused(l.check(&long));
        assert!(what.contains("header key \"kkkk"), "{what}");
        assert!(what.len() < 100, "long keys are truncated: {what}");
        assert_eq!((actual, min, max), (257, 1, 256));
        assert_eq!(limit, "Limits::MAX_HEADER_KEY");

        let empty = msg(0).with_header("", "v");
        let (_, actual, min, max, _) = refused(l.check(&empty));
        assert_eq!((actual, min, max), (0, 1, 256));
    }

    #[test]
    fn errors_name_limit_and_size_but_never_a_value() {
        let secret = "hunter2".repeat(10_000);
        let m = msg(0).with_header("authorization", secret.as_str());
        let e = m.check_limits().unwrap_err();
        let text = e.to_string();
        assert!(!text.contains("hunter2"), "{text}");
        assert!(text.contains("70013"), "{text}");
        assert!(text.contains("65536"), "{text}");
        assert!(text.contains("Limits::MAX_HEADER_BYTES"), "{text}");
        assert!(!e.is_transient());
        assert!(!format!("{e:?}").contains("hunter2"));
    }

    /// The example in docs/semantics.md, "Limits".
    #[test]
    fn the_documented_message() {
        let m = msg(0).with_header("blob", "v".repeat(2 << 20));
        assert_eq!(
            m.check_limits().unwrap_err().to_string(),
            "message refused: header size in bytes (all keys and values together) is 2097156, \
             allowed 0 to 65536 (Limits::MAX_HEADER_BYTES); nothing was sent: make it smaller \
             or carry large data out of band"
        );
    }

    #[test]
    fn adapters_can_only_lower_the_payload_bound() {
        let l = Limits::DEFAULT.with_max_payload(8 << 20, "backplane bound");
        assert_eq!(l.max_payload, 8 << 20);
        assert_eq!(l.payload_bound, "backplane bound");
        assert_eq!(l.max_headers, Limits::MAX_HEADERS);
        l.check(&msg(8 << 20)).unwrap();
        let (_, actual, _, max, limit) = refused(l.check(&msg((8 << 20) + 1)));
        assert_eq!(
            (actual, max, limit),
            (8_388_609, 8_388_608, "backplane bound")
        );
        let same = Limits::DEFAULT.with_max_payload(usize::MAX, "ignored");
        assert_eq!(same, Limits::DEFAULT);
        assert_eq!(Limits::default(), Limits::DEFAULT);
    }

    #[test]
    fn a_batch_fails_as_a_whole_and_names_the_message() {
        let l = Limits::DEFAULT;
        let batch = vec![msg(1), msg(2), msg(Limits::MAX_PAYLOAD + 1), msg(3)];
        let (what, actual, ..) = refused(l.check_batch(&batch));
        assert_eq!(
            what,
            "message 2 of 4 in the batch (counting from 0): payload size in bytes"
        );
        assert_eq!(actual, Limits::MAX_PAYLOAD + 1);
        l.check_batch(&batch[..2]).unwrap();
        l.check_batch(&[]).unwrap();
    }
}
