//! A reversible encoding of arbitrary strings (room ids, user names, keys
//! with spaces, braces or non-ASCII characters) into one topic segment.
//!
//! ASCII letters, digits and `- _ : @ +` stand for themselves; every other
//! byte of the UTF-8 text, `=` included, is written `=XX` (two upper-case
//! hex digits), as in quoted-printable. The result is a valid segment (no
//! separator, no wildcard), equal ids give equal segments, and
//! [`decode_segment`] gives the id back.

use crate::error::{Error, Result};

use super::Topic;

/// Whether `b` stands for itself in an encoded segment.
fn is_plain(b: u8) -> bool {
    b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b':' | b'@' | b'+')
}

/// Encodes `id` as one topic segment: ASCII letters, digits and
/// `- _ : @ +` stand for themselves; every other byte of the UTF-8 text,
/// `=` included, is written `=XX` (two upper-case hex digits), as in
/// quoted-printable. Equal ids give equal segments, and
/// [`decode_segment`] gives the id back.
///
/// Fails with [`Error::InvalidTopic`] for an empty id, and for one whose
/// encoding would be longer than [`Topic::MAX_LEN`] bytes (a segment must
/// also fit in a topic with the rest of its name).
///
/// ```
/// use switchyard_core::{Topic, topic::{decode_segment, encode_segment}};
/// let room = encode_segment("Lobby {main} é")?;
/// assert_eq!(room, "Lobby=20=7Bmain=7D=20=C3=A9");
/// let topic = Topic::new(format!("rooms.{room}"))?;
/// assert_eq!(decode_segment(topic.as_str().strip_prefix("rooms.").unwrap_or(""))?, "Lobby {main} é");
/// # Ok::<(), switchyard_core::Error>(())
/// ```
pub fn encode_segment(id: &str) -> Result<String> {
    if id.is_empty() {
        return Err(Error::invalid_topic(
            id,
            "an empty id cannot be a topic segment",
        ));
    }
    let mut out = String::with_capacity(id.len());
    for &b in id.as_bytes() {
        if is_plain(b) {
            out.push(char::from(b));
        } else {
            out.push('=');
            out.push(hex_digit(b >> 4));
            out.push(hex_digit(b & 0xf));
        }
    }
    if out.len() > Topic::MAX_LEN {
        return Err(Error::invalid_topic(
            &out,
            format!(
                "the encoded id has {} bytes, more than the {} a topic may have: use a shorter id (or a hash of it)",
                out.len(),
                Topic::MAX_LEN
            ),
        ));
    }
    Ok(out)
}

/// Decodes a segment made by [`encode_segment`] back into the id.
///
/// Fails with [`Error::InvalidTopic`] when `segment` is not such an
/// encoding (a byte that `encode_segment` would have escaped, a `=` not
/// followed by two upper-case hex digits, or bytes that are not UTF-8).
pub fn decode_segment(segment: &str) -> Result<String> {
    let bytes = segment.as_bytes();
    if bytes.is_empty() {
        return Err(Error::invalid_topic(
            segment,
            "an empty segment encodes no id",
        ));
    }
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while let Some(&b) = bytes.get(i) {
        if is_plain(b) {
            out.push(b);
            i += 1;
            continue;
        }
        let hex = (b == b'=')
            .then(|| bytes.get(i + 1..i + 3))
            .flatten()
            .and_then(|h| Some(hex_value(h[0])? << 4 | hex_value(h[1])?));
        let Some(decoded) = hex else {
            return Err(Error::invalid_topic(
                segment,
                format!(
                    "byte {i} is not part of an encode_segment encoding (expected a letter, digit, '-', '_', ':', '@', '+' or '=XX')"
                ),
            ));
        };
        out.push(decoded);
        i += 3;
    }
    String::from_utf8(out)
        .map_err(|_| Error::invalid_topic(segment, "the decoded bytes are not UTF-8"))
}

fn hex_digit(n: u8) -> char {
    char::from(b"0123456789ABCDEF"[usize::from(n & 0xf)])
}

fn hex_value(b: u8) -> Option<u8> {
    match b {
        b'0'..=b'9' => Some(b - b'0'),
        b'A'..=b'F' => Some(b - b'A' + 10),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Reproduction: a presence service's room ids (`Lobby {main}`, `café`,
    /// ids with spaces) were refused as topic segments, so every service
    /// wrote its own escaping.
    #[test]
    fn room_ids_round_trip_as_valid_segments() {
        for id in [
            "lobby",
            "Lobby {main}",
            "café au lait",
            "a.b/c*d>e",
            "=",
            "=41",
            "日本語",
            "tab\tnewline\n",
            "x".repeat(240).as_str(),
        ] {
            let seg = encode_segment(id).unwrap();
            let topic = Topic::new(format!("rooms.{seg}.members")).unwrap();
            assert_eq!(topic.as_str().split('.').count(), 3, "{id:?} -> {seg}");
            assert_eq!(decode_segment(&seg).unwrap(), id);
        }
        assert_eq!(encode_segment("a b").unwrap(), "a=20b");
        assert_eq!(encode_segment("=").unwrap(), "=3D");
    }

    #[test]
    fn refusals() {
        assert!(encode_segment("").is_err());
        assert!(encode_segment(&" ".repeat(86)).is_err()); // 258 bytes encoded
        assert!(encode_segment(&" ".repeat(85)).is_ok()); // 255
        for bad in ["", "a b", "=", "=4", "=4g", "=4a", "a.b", "=FF", "*"] {
            assert!(decode_segment(bad).is_err(), "{bad:?}");
        }
    }
}
