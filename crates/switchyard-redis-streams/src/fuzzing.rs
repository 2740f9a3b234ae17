//! Thin entry points into the crate-private parts of the entry format, for
//! the property tests and the `switchyard-fuzz` binary. Not part of the
//! supported API: names and signatures may change in any release.

use redis::Value;
use switchyard_core::{Message, MessageId};

pub use crate::wire::{Malformed, decode, decode_headers, encode_headers, parse_id};

/// One parsed entry: its id and its field/value pairs (`None` for an entry
/// deleted while it was pending).
pub type Entry = (MessageId, Option<Vec<(Vec<u8>, Vec<u8>)>>);

/// The field/value pairs `publish` writes for `message` (`v d p [h]`), as
/// XADD receives them.
pub fn entry_fields(message: &Message) -> Vec<(Vec<u8>, Vec<u8>)> {
    let mut cmd = redis::cmd("XADD");
    crate::wire::push_fields(&mut cmd, message);
    let args: Vec<Vec<u8>> = cmd
        .args_iter()
        .skip(1)
        .map(|a| match a {
            redis::Arg::Simple(b) => b.to_vec(),
            _ => Vec::new(),
        })
        .collect();
    args.chunks(2)
        .map(|c| match c {
            [f, v] => (f.clone(), v.clone()),
            [f] => (f.clone(), Vec::new()),
            _ => (Vec::new(), Vec::new()),
        })
        .collect()
}

/// Parses an XREAD / XREADGROUP reply, as the readers do.
pub fn parse_streams_reply(v: Value) -> Result<Vec<(String, Vec<Entry>)>, Malformed> {
    Ok(crate::wire::parse_streams_reply(v)?
        .into_iter()
        .map(|(key, entries)| (key, entries.into_iter().map(|e| (e.id, e.fields)).collect()))
        .collect())
}

/// Parses a list of entries (XRANGE, XCLAIM, XAUTOCLAIM), as the readers do.
pub fn parse_entries(v: Value) -> Result<Vec<Entry>, Malformed> {
    Ok(crate::wire::parse_entries(v)?
        .into_iter()
        .map(|e| (e.id, e.fields))
        .collect())
}

/// One entry as the group reader's lean connection parses it: its id and
/// its decoded message (or why it is malformed); `None` for an entry
/// deleted while it was pending.
pub type LeanEntry = (MessageId, Option<Result<Message, Malformed>>);

/// Finds one whole `XREADGROUP` reply at the front of `input` and parses
/// it, as the group reader's lean connection does, every stream on
/// `topic`: `None` while more bytes are needed or when the bytes are not
/// RESP2 (the reader then drops the connection), else how many bytes the
/// reply took and its streams.
#[allow(clippy::type_complexity)]
pub fn lean_streams_reply(
    input: &[u8],
    topic: &switchyard_core::Topic,
) -> Option<(usize, Result<Vec<(String, Vec<LeanEntry>)>, Malformed>)> {
    use crate::group::fetch::Body;
    let len = crate::group::xread::Scan::default()
        .complete(input)
        .ok()
        .flatten()?;
    let parsed = crate::group::xread::parse_streams(input.get(..len)?, |key| {
        Some((key.to_owned(), topic.clone()))
    })
    .map(|streams| {
        streams
            .into_iter()
            .map(|(key, entries)| {
                let entries = entries
                    .into_iter()
                    .map(|e| {
                        let body = e.body.map(|b| match b {
                            Body::Decoded(d) => d,
                            Body::Pairs(p) => crate::wire::decode(topic, e.id, p),
                        });
                        (e.id, body)
                    })
                    .collect();
                (key, entries)
            })
            .collect()
    });
    Some((len, parsed))
}

/// The dedup id as the 32 lowercase hex digits of field `d`.
pub fn dedup_hex(id: switchyard_core::DedupId) -> [u8; 32] {
    crate::wire::dedup_hex(id)
}

/// What one reply on the lean publishing connection was, as the writer
/// reads it: `Ok(Some((Some(id), used)))` for an XADD id, `Ok(Some((None,
/// used)))` for any other reply, `Ok(None)` when more bytes are needed, or
/// the protocol error that makes the writer drop the connection.
pub fn parse_publish_reply(buf: &[u8]) -> Result<Option<(Option<MessageId>, usize)>, &'static str> {
    use crate::publish::resp::{Reply, parse_reply};
    match parse_reply(buf) {
        Ok(Some((Reply::Id(id), used))) => Ok(Some((Some(id), used))),
        Ok(Some((_, used))) => Ok(Some((None, used))),
        Ok(None) => Ok(None),
        Err(e) => Err(e.0),
    }
}

/// Appends the XADD the writer sends for `message` on its lean connection
/// (`XADD key * v 1 d <hex> p <payload> [h <headers>]`, no trimming), as
/// hand-encoded RESP: what `bench-compare wire` measures.
pub fn put_xadd(out: &mut Vec<u8>, key: &str, message: &Message) {
    use crate::publish::resp::{Trim, put_xadd};
    put_xadd(out, key, Trim::None, message);
}

/// The same XADD as [`put_xadd`], built as a redis-rs command (what a
/// writer on a redis-rs pipeline would send).
pub fn xadd_cmd(key: &str, message: &Message) -> redis::Cmd {
    let mut cmd = redis::cmd("XADD");
    cmd.arg(key).arg("*");
    crate::wire::push_fields(&mut cmd, message);
    cmd
}

#[cfg(test)]
mod tests {
    use switchyard_core::{Message, Topic};

    #[test]
    fn both_xadd_encodings_send_the_same_bytes() -> Result<(), switchyard_core::Error> {
        let topic = Topic::new("a.b")?;
        for m in [
            Message::new(topic.clone(), vec![b'x'; 16]),
            Message::new(topic.clone(), vec![b'x'; 256]).with_header("k", "v"),
        ] {
            let mut ours = Vec::new();
            super::put_xadd(&mut ours, "ns:{a.b}", &m);
            assert_eq!(ours, super::xadd_cmd("ns:{a.b}", &m).get_packed_command());
        }
        Ok(())
    }
}
