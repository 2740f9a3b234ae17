//! Redis Streams entries, header blocks, ids and XREAD replies.

use switchyard_core::{Message, MessageId};
use switchyard_redis::lean::{self};
use switchyard_redis::redis;
use switchyard_redis_streams::fuzzing as streams;

use super::{sample_messages, text, unreachable_topic};

/// Fields framed as `u16 LE length, bytes` items, paired name/value.
pub(super) fn frame_fields(fields: &[(Vec<u8>, Vec<u8>)]) -> Vec<u8> {
    let mut out = Vec::new();
    for (f, v) in fields {
        for part in [f, v] {
            let len = u16::try_from(part.len()).unwrap_or(u16::MAX);
            out.extend_from_slice(&len.to_le_bytes());
            out.extend_from_slice(&part[..usize::from(len)]);
        }
    }
    out
}

pub(super) fn unframe_fields(mut b: &[u8]) -> Vec<(Vec<u8>, Vec<u8>)> {
    let mut items = Vec::new();
    while b.len() >= 2 {
        let len = usize::from(u16::from_le_bytes([b[0], b[1]]));
        let rest = &b[2..];
        let take = len.min(rest.len());
        items.push(rest[..take].to_vec());
        b = &rest[take..];
    }
    let mut it = items.into_iter();
    let mut pairs = Vec::new();
    while let (Some(f), Some(v)) = (it.next(), it.next()) {
        pairs.push((f, v));
    }
    pairs
}

pub(super) fn entry_seeds() -> Vec<Vec<u8>> {
    sample_messages()
        .iter()
        .map(|m| frame_fields(&streams::entry_fields(m)))
        .collect()
}

pub(super) fn streams_entry(input: &[u8]) -> bool {
    let topic = unreachable_topic();
    let id = MessageId::new(1, 1);
    match streams::decode(&topic, id, unframe_fields(input)) {
        Ok(m) => {
            let again = streams::decode(&topic, id, streams::entry_fields(&m));
            assert_eq!(again.as_ref(), Ok(&m), "decode(encode(decode(x))) differs");
            true
        }
        Err(_) => false,
    }
}

pub(super) fn header_seeds() -> Vec<Vec<u8>> {
    sample_messages()
        .iter()
        .map(|m| streams::encode_headers(&m.headers))
        .collect()
}

pub(super) fn streams_headers(input: &[u8]) -> bool {
    match streams::decode_headers(input) {
        Ok(h) => {
            let again = streams::decode_headers(&streams::encode_headers(&h));
            assert_eq!(again.as_ref(), Ok(&h), "header round trip differs");
            true
        }
        Err(_) => false,
    }
}

pub(super) fn stream_id_seeds() -> Vec<Vec<u8>> {
    [
        "0-0",
        "1700000000000-3",
        "18446744073709551615-18446744073709551615",
    ]
    .iter()
    .map(|s| s.as_bytes().to_vec())
    .collect()
}

pub(super) fn stream_id(input: &[u8]) -> bool {
    match streams::parse_id(&text(input)) {
        Some(id) => {
            assert_eq!(streams::parse_id(&id.to_string()), Some(id));
            true
        }
        None => false,
    }
}

pub(super) fn bulk(out: &mut Vec<u8>, b: &[u8]) {
    lean::put_bulk(out, b);
}

/// An XREADGROUP reply in RESP2 for `messages` on one stream, one entry
/// deleted (nil fields).
pub(super) fn resp2_reply(messages: &[Message]) -> Vec<u8> {
    let mut out = Vec::new();
    lean::put_array_header(&mut out, 1);
    lean::put_array_header(&mut out, 2);
    bulk(&mut out, b"switchyard:{orders.created}");
    lean::put_array_header(&mut out, messages.len() + 1);
    for (i, m) in messages.iter().enumerate() {
        lean::put_array_header(&mut out, 2);
        bulk(&mut out, format!("1700000000000-{i}").as_bytes());
        let fields = streams::entry_fields(m);
        lean::put_array_header(&mut out, fields.len() * 2);
        for (f, v) in &fields {
            bulk(&mut out, f);
            bulk(&mut out, v);
        }
    }
    lean::put_array_header(&mut out, 2);
    bulk(&mut out, b"1700000000001-0");
    out.extend_from_slice(b"*-1\r\n");
    out
}

/// The same in RESP3: a map of stream key to entries.
pub(super) fn resp3_reply(messages: &[Message]) -> Vec<u8> {
    let mut out = b"%1\r\n".to_vec();
    bulk(&mut out, b"switchyard:{a}");
    lean::put_array_header(&mut out, messages.len());
    for (i, m) in messages.iter().enumerate() {
        lean::put_array_header(&mut out, 2);
        bulk(&mut out, format!("{i}-{i}").as_bytes());
        let fields = streams::entry_fields(m);
        out.extend_from_slice(format!("%{}\r\n", fields.len()).as_bytes());
        for (f, v) in &fields {
            bulk(&mut out, f);
            bulk(&mut out, v);
        }
    }
    out
}

pub(super) fn reply_seeds() -> Vec<Vec<u8>> {
    let msgs = sample_messages();
    vec![
        resp2_reply(&msgs),
        resp3_reply(&msgs),
        resp2_reply(&msgs[..1]),
        b"*-1\r\n".to_vec(),
        b"_\r\n".to_vec(),
    ]
}

pub(super) fn streams_reply(input: &[u8]) -> bool {
    let topic = unreachable_topic();
    // The group reader's lean parser works on the same bytes.
    if let Some((len, _)) = streams::lean_streams_reply(input, &topic) {
        assert!(len <= input.len(), "a reply longer than its input");
    }
    let Ok(value) = redis::parse_redis_value(input) else {
        return false;
    };
    let _ = streams::parse_entries(value.clone());
    match streams::parse_streams_reply(value) {
        Ok(streams) => {
            for (_, entries) in streams {
                for (id, fields) in entries {
                    if let Some(fields) = fields {
                        let _ = streams::decode(&topic, id, fields);
                    }
                }
            }
            true
        }
        Err(_) => false,
    }
}
