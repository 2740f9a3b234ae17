//! Lean RESP2 encoding of XADD and parsing of its replies, for the
//! publishing hot path (no `redis::Cmd`, no `redis::Value`).

use switchyard_core::{Message, MessageId};
use switchyard_redis::lean::{self, Token, put_bulk, put_uint};

use crate::wire;

/// How XADD trims: nothing, `MAXLEN ~ n` or `MINID ~ ms`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Trim {
    None,
    MaxLen(u64),
    MinId(u64),
}

/// Appends `n` as a bulk string, without an intermediate allocation.
fn put_bulk_uint(out: &mut Vec<u8>, n: u64) {
    let mut digits = [0u8; 20];
    let mut at = digits.len();
    let mut v = n;
    loop {
        at -= 1;
        digits[at] = b'0' + (v % 10) as u8;
        v /= 10;
        if v == 0 {
            break;
        }
    }
    put_bulk(out, &digits[at..]);
}

/// Appends `XADD key [MAXLEN|MINID ~ n] * v 1 d <hex> p <payload> [h <headers>]`.
pub(crate) fn put_xadd(out: &mut Vec<u8>, key: &str, trim: Trim, message: &Message) {
    let headers = if message.headers.is_empty() {
        None
    } else {
        Some(wire::encode_headers(&message.headers))
    };
    let trim_args = if trim == Trim::None { 0 } else { 3 };
    let argc = 3 + trim_args + 6 + if headers.is_some() { 2 } else { 0 };
    out.reserve(64 + key.len() + message.payload.len() + headers.as_ref().map_or(0, Vec::len));
    out.push(b'*');
    put_uint(out, argc);
    out.extend_from_slice(b"\r\n$4\r\nXADD\r\n");
    put_bulk(out, key.as_bytes());
    match trim {
        Trim::None => {}
        Trim::MaxLen(n) => {
            out.extend_from_slice(b"$6\r\nMAXLEN\r\n$1\r\n~\r\n");
            put_bulk_uint(out, n);
        }
        Trim::MinId(ms) => {
            out.extend_from_slice(b"$5\r\nMINID\r\n$1\r\n~\r\n");
            put_bulk_uint(out, ms);
        }
    }
    out.extend_from_slice(b"$1\r\n*\r\n$1\r\nv\r\n$1\r\n1\r\n$1\r\nd\r\n$32\r\n");
    out.extend_from_slice(&wire::dedup_hex(message.dedup_id));
    out.extend_from_slice(b"\r\n$1\r\np\r\n");
    put_bulk(out, &message.payload);
    if let Some(h) = headers {
        out.extend_from_slice(b"$1\r\nh\r\n");
        put_bulk(out, &h);
    }
}

/// One reply, parsed only as far as the writer needs.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Reply {
    /// A bulk string that is a stream id (XADD's answer).
    Id(MessageId),
    /// `+...`: a status such as `OK`.
    Status,
    /// `-CODE detail`: a server error.
    Error(String),
    /// `:n`: an integer (WAIT's answer).
    Int(i64),
    /// Anything else (nil, a bulk string that is no id).
    Other,
}

/// The bytes do not follow RESP2 (or use what this parser does not
/// expect, such as arrays): the connection must be dropped.
#[derive(Debug, PartialEq, Eq)]
pub(crate) struct ProtocolError(pub(crate) &'static str);

/// Largest bulk reply accepted (XADD ids are short).
const MAX_BULK: usize = 1 << 20;

/// Parses one reply from the front of `buf`: `Ok(None)` when more bytes
/// are needed, else the reply and how many bytes it took.
pub(crate) fn parse_reply(buf: &[u8]) -> Result<Option<(Reply, usize)>, ProtocolError> {
    let (token, used) = match lean::next_token(buf, MAX_BULK) {
        Ok(Some(parsed)) => parsed,
        Ok(None) => return Ok(None),
        Err(p) => return Err(ProtocolError(p.0)),
    };
    let reply = match token {
        Token::Status(_) => Reply::Status,
        Token::Error(text) => Reply::Error(String::from_utf8_lossy(text).into_owned()),
        Token::Int(n) => Reply::Int(n),
        Token::Nil => Reply::Other,
        Token::Bulk(b) => std::str::from_utf8(b)
            .ok()
            .and_then(wire::parse_id)
            .map_or(Reply::Other, Reply::Id),
        Token::Array(_) => return Err(ProtocolError("unexpected reply type")),
    };
    Ok(Some((reply, used)))
}

#[cfg(test)]
mod tests {
    use super::*;
    use switchyard_core::{DedupId, Topic};

    #[test]
    fn xadd_encoding_matches_redis_rs() {
        let t = Topic::new("a.b").unwrap();
        for (m, trim) in [
            (Message::new(t.clone(), "hello"), Trim::None),
            (
                Message::new(t.clone(), vec![0u8; 300]).with_header("k", "v"),
                Trim::MaxLen(100),
            ),
            (
                Message::new(t.clone(), "").with_dedup_id(DedupId(7)),
                Trim::MinId(1_700_000_000_000),
            ),
        ] {
            let mut ours = Vec::new();
            put_xadd(&mut ours, "ns:{a.b}", trim, &m);
            let mut cmd = redis::cmd("XADD");
            cmd.arg("ns:{a.b}");
            match trim {
                Trim::None => {}
                Trim::MaxLen(n) => {
                    cmd.arg("MAXLEN").arg("~").arg(n);
                }
                Trim::MinId(n) => {
                    cmd.arg("MINID").arg("~").arg(n);
                }
            }
            cmd.arg("*");
            wire::push_fields(&mut cmd, &m);
            assert_eq!(ours, cmd.get_packed_command());
        }
    }

    #[test]
    fn bulk_uint() {
        for n in [0, 7, 10, 100, 1_700_000_000_000, u64::MAX] {
            let mut ours = Vec::new();
            put_bulk_uint(&mut ours, n);
            let text = n.to_string();
            assert_eq!(ours, format!("${}\r\n{text}\r\n", text.len()).into_bytes());
        }
    }

    #[test]
    fn replies() {
        assert_eq!(
            parse_reply(b"$15\r\n1700000000000-3\r\n+OK").unwrap(),
            Some((Reply::Id(MessageId::new(1_700_000_000_000, 3)), 22))
        );
        assert_eq!(parse_reply(b"$15\r\n1700000000000-3\r").unwrap(), None);
        assert_eq!(parse_reply(b"$15\r\n170").unwrap(), None);
        assert_eq!(parse_reply(b"$1").unwrap(), None);
        assert_eq!(parse_reply(b"").unwrap(), None);
        assert_eq!(parse_reply(b"+OK\r\n").unwrap(), Some((Reply::Status, 5)));
        assert_eq!(
            parse_reply(b"-WRONGTYPE Operation\r\n").unwrap(),
            Some((Reply::Error("WRONGTYPE Operation".into()), 22))
        );
        assert_eq!(parse_reply(b"$-1\r\n").unwrap(), Some((Reply::Other, 5)));
        assert_eq!(
            parse_reply(b"$2\r\nab\r\n").unwrap(),
            Some((Reply::Other, 8))
        );
        assert!(parse_reply(b"*1\r\n").is_err());
        assert!(parse_reply(b"$x\r\n").is_err());
        assert!(parse_reply(b"$2\r\nabcd").is_err());
    }
}
