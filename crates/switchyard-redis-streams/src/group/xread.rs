//! Lean parsing of `XREADGROUP` replies for the group reader: straight
//! from the RESP2 bytes to entries whose fields are already decoded into a
//! [`Message`] (or found [`Malformed`]), with no `redis::Value` tree and
//! no allocation per field: the payload is copied once, into the
//! message's `Bytes`.
//!
//! Two steps: [`Scan`] finds where one whole reply ends (resumable, so a
//! reply arriving in many reads is not scanned again from its start), then
//! [`parse_streams`] reads that complete reply. The shapes accepted, and
//! the errors for the ones refused, are those of
//! [`wire::parse_streams_reply`] and [`wire::parse_entries`].

use std::borrow::Cow;

use switchyard_core::Topic;
use switchyard_redis::lean::{self, ProtocolError, Token};

use super::fetch::{Body, FetchedEntry};
use crate::wire::{self, FieldSink, Malformed};

/// Largest bulk string accepted: Redis' own default `proto-max-bulk-len`.
pub(crate) const MAX_BULK: usize = 512 * 1024 * 1024;

/// Deepest nesting of arrays accepted (an `XREADGROUP` reply has 4).
const MAX_DEPTH: usize = 32;

/// Finds the end of one whole reply at the front of a buffer that grows
/// between calls; keeps its place, so each byte is scanned once.
#[derive(Debug, Default)]
pub(crate) struct Scan {
    /// Bytes of the reply scanned so far.
    pos: usize,
    /// Per open array, how many of its elements are still to come.
    open: Vec<usize>,
}

impl Scan {
    /// `Ok(Some(len))` once `buf` starts with one whole reply of `len`
    /// bytes (the scan then starts over for the next reply), `Ok(None)`
    /// while more bytes are needed. `buf` must be the same bytes as at the
    /// last call, possibly with more appended.
    pub(crate) fn complete(&mut self, buf: &[u8]) -> Result<Option<usize>, ProtocolError> {
        loop {
            let rest = buf.get(self.pos..).unwrap_or_default();
            let Some((token, used)) = lean::next_token(rest, MAX_BULK)? else {
                return Ok(None);
            };
            self.pos += used;
            if let Token::Array(n) = token
                && n > 0
            {
                if self.open.len() >= MAX_DEPTH {
                    return Err(ProtocolError("reply nested too deeply"));
                }
                self.open.push(n);
                continue;
            }
            // One element is complete; so may be the arrays it ends.
            loop {
                match self.open.last_mut() {
                    None => {
                        let len = self.pos;
                        self.pos = 0;
                        return Ok(Some(len));
                    }
                    Some(left) => {
                        *left -= 1;
                        if *left > 0 {
                            break;
                        }
                        self.open.pop();
                    }
                }
            }
        }
    }
}

/// A cursor over one complete reply.
struct Cursor<'a> {
    buf: &'a [u8],
    pos: usize,
}

impl<'a> Cursor<'a> {
    fn next(&mut self) -> Result<Token<'a>, Malformed> {
        let buf: &'a [u8] = self.buf;
        match lean::next_token(buf.get(self.pos..).unwrap_or_default(), MAX_BULK) {
            Ok(Some((token, used))) => {
                self.pos += used;
                Ok(token)
            }
            _ => Err(Malformed::new("truncated or unreadable reply")),
        }
    }

    /// Skips `n` elements (each possibly an array).
    fn skip(&mut self, mut n: usize) -> Result<(), Malformed> {
        while n > 0 {
            n -= 1;
            if let Token::Array(k) = self.next()? {
                n = n
                    .checked_add(k)
                    .ok_or_else(|| Malformed::new("array length overflows"))?;
            }
        }
        Ok(())
    }

    /// One element read as a string (as `wire`'s `bulk` does: bulk and
    /// status text, integers in decimal); `None` for anything else, which
    /// is skipped whole.
    fn text(&mut self) -> Result<Option<Cow<'a, [u8]>>, Malformed> {
        Ok(match self.next()? {
            Token::Bulk(b) | Token::Status(b) => Some(Cow::Borrowed(b)),
            Token::Int(i) => Some(Cow::Owned(i.to_string().into_bytes())),
            Token::Array(k) => {
                self.skip(k)?;
                None
            }
            Token::Nil | Token::Error(_) => None,
        })
    }
}

/// Parses one complete `XREADGROUP` reply (not an error reply): per
/// stream key that `lookup` knows, its entries, decoded on the topic it
/// names; keys it does not know are skipped. A nil reply (the block timed
/// out) is an empty list. An unexpected shape is [`Malformed`], as in
/// [`wire::parse_streams_reply`].
pub(crate) fn parse_streams<S>(
    reply: &[u8],
    mut lookup: impl FnMut(&str) -> Option<(S, Topic)>,
) -> Result<Vec<(S, Vec<FetchedEntry>)>, Malformed> {
    let mut cur = Cursor { buf: reply, pos: 0 };
    let n = match cur.next()? {
        Token::Nil => return Ok(Vec::new()),
        Token::Array(n) => n,
        _ => return Err(Malformed::new("stream reply is not an array or map")),
    };
    let mut out = Vec::with_capacity(n.min(64));
    for _ in 0..n {
        match cur.next()? {
            Token::Array(2) => {}
            Token::Array(_) | Token::Nil => {
                return Err(Malformed::new("stream reply item is not [key, entries]"));
            }
            _ => return Err(Malformed::new("stream reply item is not [key, entries]")),
        }
        let key = cur
            .text()?
            .and_then(|k| String::from_utf8(k.into_owned()).ok())
            .ok_or_else(|| Malformed::new("stream key is not text"))?;
        match lookup(&key) {
            Some((stream, topic)) => out.push((stream, parse_entries(&mut cur, &topic)?)),
            None => cur.skip(1)?,
        }
    }
    Ok(out)
}

/// Parses a list of entries `[[id, [field, value, ...] | nil], ...]`,
/// decoding each entry's fields on `topic`.
fn parse_entries(cur: &mut Cursor<'_>, topic: &Topic) -> Result<Vec<FetchedEntry>, Malformed> {
    let n = match cur.next()? {
        Token::Array(n) => n,
        Token::Nil => return Ok(Vec::new()),
        _ => return Err(Malformed::new("entry list is not an array")),
    };
    let mut out = Vec::with_capacity(n.min(4096));
    for _ in 0..n {
        let Token::Array(parts) = cur.next()? else {
            return Err(Malformed::new("entry is not [id, fields]"));
        };
        let id = if parts == 0 {
            None
        } else {
            cur.text()?.and_then(|b| wire::parse_id_bytes(&b))
        };
        let id = id.ok_or_else(|| Malformed::new("entry id is not ms-seq"))?;
        let body = if parts < 2 {
            None
        } else {
            match cur.next()? {
                Token::Nil => None,
                Token::Array(flat) => {
                    let mut sink = FieldSink::default();
                    for _ in 0..flat / 2 {
                        let name = cur.text()?;
                        let value = cur.text()?;
                        // A pair that is not two strings can't be ours; as
                        // in `wire::parse_entries` it names no known field.
                        if let (Some(name), Some(value)) = (name, value) {
                            sink.put(&name, value);
                        }
                    }
                    cur.skip(flat % 2)?;
                    Some(Body::Decoded(sink.finish(topic)))
                }
                _ => return Err(Malformed::new("entry fields are not an array")),
            }
        };
        cur.skip(parts.saturating_sub(2))?;
        out.push(FetchedEntry { id, body });
    }
    Ok(out)
}

#[cfg(test)]
#[path = "xread_tests.rs"]
mod tests;
