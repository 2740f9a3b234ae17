//! Payload codecs for the typed layer: JSON and bincode built in, and
//! [`CustomCodec`] for any other serde format.
//!
//! # Why a `&'static` trait object behind an enum
//!
//! [`Codec`] stays a small `Copy` enum, so `Codec::Json` and
//! `Codec::Bincode` keep working as values, constants and match patterns,
//! and the built-in codecs are called without dynamic dispatch. A custom
//! codec is [`Codec::Custom`], holding a `&'static dyn` reference to the
//! application's [`CustomCodec`] (a unit struct, a `static`, or a
//! configured value given up with `Box::leak` once at start-up): no `Arc`,
//! and `Codec` stays `Copy`.
//!
//! A codec must encode and decode *any* serde type, but a trait with
//! generic methods cannot be a trait object. [`CustomCodec`] is therefore
//! written with ordinary serde generics (`encode<T: Serialize>`,
//! `decode_seed<S: DeserializeSeed>`), and core erases them with
//! `erased-serde` behind a private object-safe trait: the value goes to the
//! codec's own serializer and deserializer directly, with no intermediate
//! representation (a `serde_json::Value` step would lose bytes, integer
//! widths and non-string map keys, and cost a copy).

use std::fmt;

use bytes::Bytes;
use serde::Serialize;
use serde::de::{DeserializeOwned, DeserializeSeed};

use crate::error::{Error, Result};

/// The error a [`CustomCodec`] returns: any error type (`?` converts one).
pub type CodecError = Box<dyn std::error::Error + Send + Sync + 'static>;

/// A payload format added by the application: implement this for a (usually
/// unit) struct and use [`Codec::custom`].
///
/// `encode` and `decode_seed` are the format's serde entry points. Decoding
/// must not panic or allocate without bound on any input (set the format's
/// limits where it has them), and should refuse trailing bytes after the
/// value.
///
/// The facade crate's documentation (section *Custom codecs*) shows
/// MessagePack with `rmp-serde`. A vendor JSON media type, with serde_json:
///
/// ```
/// use serde::de::DeserializeSeed;
/// use switchyard_core::{Codec, CodecError, CustomCodec};
///
/// struct AcmeJson;
///
/// impl CustomCodec for AcmeJson {
///     fn name(&self) -> &'static str {
///         "acme-json"
///     }
///     fn content_type(&self) -> &'static str {
///         "application/vnd.acme+json"
///     }
///     fn encode<T: serde::Serialize + ?Sized>(&self, value: &T) -> Result<Vec<u8>, CodecError> {
///         Ok(serde_json::to_vec(value)?)
///     }
///     fn decode_seed<'de, S: DeserializeSeed<'de>>(
///         &self,
///         bytes: &'de [u8],
///         seed: S,
///     ) -> Result<S::Value, CodecError> {
///         let mut de = serde_json::Deserializer::from_slice(bytes);
///         let value = seed.deserialize(&mut de)?;
///         de.end()?; // no trailing bytes
///         Ok(value)
///     }
/// }
///
/// const ACME: Codec = Codec::custom(&AcmeJson);
///
/// let bytes = ACME.encode(&[1u8, 2, 3])?;
/// assert_eq!(ACME.decode::<Vec<u8>>(&bytes)?, [1, 2, 3]);
/// assert_eq!(ACME.content_type(), "application/vnd.acme+json");
/// // let bus = Bus::new(transport).with_codec(ACME);
/// # Ok::<(), switchyard_core::Error>(())
/// ```
pub trait CustomCodec: Send + Sync + 'static {
    /// Short name, shown in errors (`msgpack`).
    fn name(&self) -> &'static str;

    /// The media type written into the `content-type` header
    /// (`application/msgpack`). A typed subscriber refuses messages labelled
    /// with another one.
    fn content_type(&self) -> &'static str;

    /// Encodes one value.
    fn encode<T: Serialize + ?Sized>(&self, value: &T) -> std::result::Result<Vec<u8>, CodecError>;

    /// Decodes one value from `bytes` through `seed`
    /// (`seed.deserialize(&mut your_deserializer)`), for a plain type as
    /// well as for the seed core passes in.
    fn decode_seed<'de, S: DeserializeSeed<'de>>(
        &self,
        bytes: &'de [u8],
        seed: S,
    ) -> std::result::Result<S::Value, CodecError>;
}

/// How typed values become payload bytes.
///
/// ```
/// use switchyard_core::Codec;
/// let bytes = Codec::Json.encode(&vec![1, 2, 3])?;
/// let back: Vec<i32> = Codec::Json.decode(&bytes)?;
/// assert_eq!(back, [1, 2, 3]);
/// # Ok::<(), switchyard_core::Error>(())
/// ```
///
/// Other formats: implement [`CustomCodec`] and use [`Codec::custom`].
///
/// Two codecs are equal when they have the same name and content type.
#[derive(Clone, Copy, Default)]
#[non_exhaustive]
pub enum Codec {
    /// JSON (serde_json); content type `application/json`.
    #[default]
    Json,
    /// bincode 2.0.1 (standard configuration, serde); content type
    /// `application/x-bincode`. Decoding refuses to allocate more than
    /// [`Codec::BINCODE_DECODE_LIMIT`] bytes. Needs the `bincode` feature.
    #[cfg(feature = "bincode")]
    Bincode,
    /// A codec of the application; made with [`Codec::custom`].
    Custom(CustomRef),
}

/// A [`CustomCodec`] inside a [`Codec`] (made by [`Codec::custom`]).
#[derive(Clone, Copy)]
pub struct CustomRef(&'static dyn ErasedCodec);

impl Codec {
    /// Upper bound on what decoding one bincode payload may allocate.
    pub const BINCODE_DECODE_LIMIT: usize = 16 * 1024 * 1024;

    /// The codec `codec`; usable in a `const`:
    /// `const MSGPACK: Codec = Codec::custom(&MsgPack);`.
    pub const fn custom<C: CustomCodec>(codec: &'static C) -> Codec {
        Codec::Custom(CustomRef(codec))
    }

    /// Short name (`json`, `bincode`, or the custom codec's).
    pub fn name(self) -> &'static str {
        match self {
            Codec::Json => "json",
            #[cfg(feature = "bincode")]
            Codec::Bincode => "bincode",
            Codec::Custom(c) => c.0.name(),
        }
    }

    /// The content type written into the `content-type` header
    /// (`application/json`, `application/x-bincode`, or the custom codec's).
    pub fn content_type(self) -> &'static str {
        match self {
            Codec::Json => "application/json",
            #[cfg(feature = "bincode")]
            Codec::Bincode => "application/x-bincode",
            Codec::Custom(c) => c.0.content_type(),
        }
    }

    /// Encodes a value.
    pub fn encode<T: Serialize + ?Sized>(self, value: &T) -> Result<Bytes> {
        match self {
            Codec::Json => serde_json::to_vec(value)
                .map(Bytes::from)
                .map_err(|e| self.err(e)),
            #[cfg(feature = "bincode")]
            Codec::Bincode => bincode::serde::encode_to_vec(value, bincode::config::standard())
                .map(Bytes::from)
                .map_err(|e| self.err(e)),
            Codec::Custom(c) => {
                c.0.encode(&value as &dyn erased_serde::Serialize)
                    .map(Bytes::from)
                    .map_err(|e| self.err(e))
            }
        }
    }

    /// Decodes a value; never panics on bad input (a custom codec: as long
    /// as the codec does not).
    pub fn decode<T: DeserializeOwned>(self, bytes: &[u8]) -> Result<T> {
        match self {
            Codec::Json => serde_json::from_slice(bytes).map_err(|e| self.err(e)),
            #[cfg(feature = "bincode")]
            Codec::Bincode => {
                let config =
                    bincode::config::standard().with_limit::<{ Codec::BINCODE_DECODE_LIMIT }>();
                let (value, used) =
                    bincode::serde::decode_from_slice(bytes, config).map_err(|e| self.err(e))?;
                if used != bytes.len() {
                    return Err(self.err(format!(
                        "{} trailing bytes after the value",
                        bytes.len() - used
                    )));
                }
                Ok(value)
            }
            Codec::Custom(c) => {
                let mut out = None;
                c.0.decode(bytes, &mut |de| {
                    out = Some(erased_serde::deserialize::<T>(de)?);
                    Ok(())
                })
                .map_err(|e| self.err(e))?;
                out.ok_or_else(|| {
                    self.err("the codec returned without decoding a value (a bug in the codec)")
                })
            }
        }
    }

    /// Checks the `content-type` header of a message against this codec:
    /// `None` (no header) passes; otherwise the media types (before any
    /// `;` parameter, without regard to case or surrounding blanks) must be
    /// equal. A mismatch is an [`Error::Codec`] naming both types.
    ///
    /// ```
    /// use switchyard_core::{Codec, Error};
    /// assert!(Codec::Json.check_content_type(None).is_ok());
    /// assert!(Codec::Json.check_content_type(Some("Application/JSON; charset=utf-8")).is_ok());
    /// let err = Codec::Json.check_content_type(Some("application/x-bincode")).unwrap_err();
    /// assert!(matches!(err, Error::Codec { codec: "json", .. }));
    /// assert!(err.to_string().contains("application/x-bincode"));
    /// assert!(err.to_string().contains("application/json"));
    /// ```
    pub fn check_content_type(self, content_type: Option<&str>) -> Result<()> {
        let Some(got) = content_type else {
            return Ok(());
        };
        let want = self.content_type();
        if media_type(got).eq_ignore_ascii_case(media_type(want)) {
            return Ok(());
        }
        const SHOWN: usize = 128;
        let mut shown: String = got.chars().take(SHOWN).collect();
        if shown.len() < got.len() {
            shown.push('…');
        }
        Err(self.err(format!(
            "the message's content-type is {shown:?} but this subscriber decodes {want:?}: \
             subscribe with a Bus using the codec of {shown:?} (Bus::with_codec), \
             or publish with the {} codec",
            self.name()
        )))
    }

    fn err(self, e: impl fmt::Display) -> Error {
        Error::Codec {
            codec: self.name(),
            reason: e.to_string(),
        }
    }
}

/// The media type of a content type: before any `;`, trimmed.
fn media_type(content_type: &str) -> &str {
    content_type
        .split_once(';')
        .map_or(content_type, |(t, _)| t)
        .trim()
}

impl PartialEq for Codec {
    fn eq(&self, other: &Codec) -> bool {
        self.name() == other.name() && self.content_type() == other.content_type()
    }
}

impl Eq for Codec {}

impl std::hash::Hash for Codec {
    fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
        self.name().hash(state);
        self.content_type().hash(state);
    }
}

impl fmt::Debug for Codec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Codec::Json => f.write_str("Json"),
            #[cfg(feature = "bincode")]
            Codec::Bincode => f.write_str("Bincode"),
            Codec::Custom(c) => fmt::Debug::fmt(c, f),
        }
    }
}

impl fmt::Debug for CustomRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Custom")
            .field("name", &self.0.name())
            .field("content_type", &self.0.content_type())
            .finish()
    }
}

/// What core calls with an erased deserializer of the payload.
type Visit<'a> = dyn for<'de> FnMut(&mut dyn erased_serde::Deserializer<'de>) -> Result<(), erased_serde::Error>
    + 'a;

/// The object-safe form of [`CustomCodec`], implemented for every one.
trait ErasedCodec: Send + Sync {
    fn name(&self) -> &'static str;
    fn content_type(&self) -> &'static str;
    fn encode(
        &self,
        value: &dyn erased_serde::Serialize,
    ) -> std::result::Result<Vec<u8>, CodecError>;
    fn decode(&self, bytes: &[u8], visit: &mut Visit<'_>) -> std::result::Result<(), CodecError>;
}

impl<C: CustomCodec> ErasedCodec for C {
    fn name(&self) -> &'static str {
        CustomCodec::name(self)
    }

    fn content_type(&self) -> &'static str {
        CustomCodec::content_type(self)
    }

    fn encode(
        &self,
        value: &dyn erased_serde::Serialize,
    ) -> std::result::Result<Vec<u8>, CodecError> {
        CustomCodec::encode(self, value)
    }

    fn decode(&self, bytes: &[u8], visit: &mut Visit<'_>) -> std::result::Result<(), CodecError> {
        self.decode_seed(bytes, VisitSeed(visit))
    }
}

/// A seed that hands the codec's deserializer, erased, to core's visitor.
struct VisitSeed<'a, 'v>(&'a mut Visit<'v>);

impl<'de> DeserializeSeed<'de> for VisitSeed<'_, '_> {
    type Value = ();

    fn deserialize<D: serde::Deserializer<'de>>(
        self,
        deserializer: D,
    ) -> std::result::Result<(), D::Error> {
        let mut erased = <dyn erased_serde::Deserializer<'de>>::erase(deserializer);
        (self.0)(&mut erased).map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde::de::DeserializeSeed;

    #[derive(Serialize, serde::Deserialize, Debug, PartialEq)]
    struct Order {
        id: u64,
        item: String,
        tags: Vec<String>,
    }

    fn order() -> Order {
        Order {
            id: 7,
            item: "widget".into(),
            tags: vec!["a".into(), "ü".into()],
        }
    }

    /// JSON under another name and content type, through the erased path.
    struct Labelled;

    impl CustomCodec for Labelled {
        fn name(&self) -> &'static str {
            "labelled"
        }
        fn content_type(&self) -> &'static str {
            "application/vnd.test+json"
        }
        fn encode<T: Serialize + ?Sized>(
            &self,
            value: &T,
        ) -> std::result::Result<Vec<u8>, CodecError> {
            Ok(serde_json::to_vec(value)?)
        }
        fn decode_seed<'de, S: DeserializeSeed<'de>>(
            &self,
            bytes: &'de [u8],
            seed: S,
        ) -> std::result::Result<S::Value, CodecError> {
            let mut de = serde_json::Deserializer::from_slice(bytes);
            let value = seed.deserialize(&mut de)?;
            de.end()?;
            Ok(value)
        }
    }

    /// A faulty codec that never runs the seed.
    struct Forgetful;

    impl CustomCodec for Forgetful {
        fn name(&self) -> &'static str {
            "forgetful"
        }
        fn content_type(&self) -> &'static str {
            "application/x-forgetful"
        }
        fn encode<T: Serialize + ?Sized>(
            &self,
            _value: &T,
        ) -> std::result::Result<Vec<u8>, CodecError> {
            Err("cannot encode".into())
        }
        fn decode_seed<'de, S: DeserializeSeed<'de>>(
            &self,
            _bytes: &'de [u8],
            _seed: S,
        ) -> std::result::Result<S::Value, CodecError> {
            Err("cannot decode".into())
        }
    }

    const LABELLED: Codec = Codec::custom(&Labelled);

    #[test]
    fn custom_codec_round_trip_and_errors() {
        assert_eq!(LABELLED.name(), "labelled");
        assert_eq!(LABELLED.content_type(), "application/vnd.test+json");
        let b = LABELLED.encode(&order()).unwrap();
        assert_eq!(&b[..], &Codec::Json.encode(&order()).unwrap()[..]);
        assert_eq!(LABELLED.decode::<Order>(&b).unwrap(), order());
        // Unsized values encode too.
        assert_eq!(&LABELLED.encode("x").unwrap()[..], b"\"x\"");
        let e = LABELLED.decode::<Order>(b"{not json").unwrap_err();
        assert!(
            matches!(
                &e,
                Error::Codec {
                    codec: "labelled",
                    ..
                }
            ),
            "{e:?}"
        );
        let e = LABELLED
            .decode::<Order>(&[b"{}"[..].to_vec(), b"x".to_vec()].concat())
            .unwrap_err();
        assert!(
            matches!(
                &e,
                Error::Codec {
                    codec: "labelled",
                    ..
                }
            ),
            "{e:?}"
        );
        // A type mismatch names what serde expected.
        let e = LABELLED.decode::<u64>(b"\"text\"").unwrap_err();
        assert!(e.to_string().contains("expected u64"), "{e}");

        let forgetful = Codec::custom(&Forgetful);
        let e = forgetful.encode(&1).unwrap_err();
        assert_eq!(e.to_string(), "codec error (forgetful): cannot encode");
        let e = forgetful.decode::<u8>(b"1").unwrap_err();
        assert_eq!(e.to_string(), "codec error (forgetful): cannot decode");

        // Equality by name and content type; Debug names both.
        assert_eq!(LABELLED, Codec::custom(&Labelled));
        assert_ne!(LABELLED, Codec::Json);
        assert_ne!(LABELLED, forgetful);
        assert_eq!(Codec::default(), Codec::Json);
        assert_eq!(format!("{:?}", Codec::Json), "Json");
        assert_eq!(
            format!("{LABELLED:?}"),
            r#"Custom { name: "labelled", content_type: "application/vnd.test+json" }"#
        );
    }

    #[test]
    fn content_type_checks() {
        for ok in [
            None,
            Some("application/json"),
            Some(" APPLICATION/JSON "),
            Some("application/json; charset=utf-8"),
        ] {
            assert!(Codec::Json.check_content_type(ok).is_ok(), "{ok:?}");
        }
        assert!(
            LABELLED
                .check_content_type(Some("application/vnd.test+json"))
                .is_ok()
        );
        for bad in [
            "application/x-bincode",
            "",
            "application/jsonx",
            "text/plain",
        ] {
            let e = Codec::Json.check_content_type(Some(bad)).unwrap_err();
            assert!(matches!(&e, Error::Codec { codec: "json", .. }), "{e:?}");
            let text = e.to_string();
            assert!(text.contains(&format!("{bad:?}")), "{text}");
            assert!(text.contains("\"application/json\""), "{text}");
        }
        let e = LABELLED
            .check_content_type(Some("application/json"))
            .unwrap_err();
        assert!(e.to_string().contains("application/vnd.test+json"), "{e}");
        // A huge header is shown truncated.
        let huge = "x".repeat(10_000);
        let e = Codec::Json.check_content_type(Some(&huge)).unwrap_err();
        assert!(e.to_string().len() < 600, "{}", e.to_string().len());
    }

    #[test]
    fn json_round_trip_and_errors() {
        let b = Codec::Json.encode(&order()).unwrap();
        assert_eq!(Codec::Json.decode::<Order>(&b).unwrap(), order());
        assert!(matches!(
            Codec::Json.decode::<Order>(b"{not json"),
            Err(Error::Codec { codec: "json", .. })
        ));
        assert!(Codec::Json.decode::<Order>(&[0xff, 0xfe]).is_err());
    }

    #[cfg(feature = "bincode")]
    #[test]
    fn bincode_round_trip_and_limits() {
        let b = Codec::Bincode.encode(&order()).unwrap();
        assert_eq!(Codec::Bincode.decode::<Order>(&b).unwrap(), order());
        // Truncated input is an error, not a panic.
        assert!(Codec::Bincode.decode::<Order>(&b[..b.len() - 1]).is_err());
        // Trailing garbage is refused.
        let mut extra = b.to_vec();
        extra.push(0);
        assert!(Codec::Bincode.decode::<Order>(&extra).is_err());
        // A length prefix claiming a huge vector is refused by the limit
        // instead of allocating: varint 0xfd + u64 length.
        let mut huge = vec![0xfd];
        huge.extend_from_slice(&(u64::MAX / 2).to_le_bytes());
        assert!(matches!(
            Codec::Bincode.decode::<Vec<u8>>(&huge),
            Err(Error::Codec {
                codec: "bincode",
                ..
            })
        ));
    }
}
