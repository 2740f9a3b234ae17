//! Payload codecs for the typed layer.

use bytes::Bytes;
use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::error::{Error, Result};

/// How typed values become payload bytes.
///
/// ```
/// use switchyard_core::Codec;
/// let bytes = Codec::Json.encode(&vec![1, 2, 3])?;
/// let back: Vec<i32> = Codec::Json.decode(&bytes)?;
/// assert_eq!(back, [1, 2, 3]);
/// # Ok::<(), switchyard_core::Error>(())
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Default)]
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
}

impl Codec {
    /// Upper bound on what decoding one bincode payload may allocate.
    pub const BINCODE_DECODE_LIMIT: usize = 16 * 1024 * 1024;

    /// Short name (`json`, `bincode`).
    pub fn name(self) -> &'static str {
        match self {
            Codec::Json => "json",
            #[cfg(feature = "bincode")]
            Codec::Bincode => "bincode",
        }
    }

    /// The content type written into the `content-type` header.
    pub fn content_type(self) -> &'static str {
        match self {
            Codec::Json => "application/json",
            #[cfg(feature = "bincode")]
            Codec::Bincode => "application/x-bincode",
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
        }
    }

    /// Decodes a value; never panics on bad input.
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
        }
    }

    fn err(self, e: impl std::fmt::Display) -> Error {
        Error::Codec {
            codec: self.name(),
            reason: e.to_string(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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
