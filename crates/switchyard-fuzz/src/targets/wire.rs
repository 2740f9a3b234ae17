//! Bytes from Redis and from other replicas: backplane envelopes, RESP
//! tokens, push frames and the Streams writer's replies.

use switchyard_redis::lean::{self, Token};
use switchyard_redis_pubsub::fuzzing::{self as backplane, PushFrame};
use switchyard_redis_streams::fuzzing as streams;

use super::sample_messages;

pub(super) fn frame_seeds() -> Vec<Vec<u8>> {
    sample_messages()
        .iter()
        .enumerate()
        .filter_map(|(i, m)| {
            let n = i as u64 + 1;
            backplane::encode_frame(0x0123_4567_89ab_cdef, 1_700_000_000_000, n, n, m).ok()
        })
        .collect()
}

pub(super) fn backplane_frame(input: &[u8]) -> bool {
    match backplane::decode_frame(input) {
        Ok(d) => {
            assert!(d.seq >= 1 && d.topic_seq >= 1, "a zero sequence decoded");
            // The receiver sets `sy-origin` itself; the encoder leaves it out.
            if d.message
                .headers
                .get(switchyard_core::header::ORIGIN)
                .is_none()
            {
                let again = backplane::encode_frame(
                    d.origin_id,
                    d.origin_epoch,
                    d.seq,
                    d.topic_seq,
                    &d.message,
                )
                .map_err(|e| e.to_string())
                .and_then(|f| backplane::decode_frame(&f));
                assert_eq!(again.as_ref(), Ok(&d), "envelope round trip differs");
            }
            true
        }
        Err(_) => false,
    }
}

pub(super) fn resp_seeds() -> Vec<Vec<u8>> {
    let frame = frame_seeds().into_iter().next().unwrap_or_default();
    let mut message = Vec::new();
    lean::put_command(&mut message, &[b"message", b"switchyard:a", &frame]);
    let mut pmessage = Vec::new();
    lean::put_command(
        &mut pmessage,
        &[b"pmessage", b"switchyard:*", b"switchyard:a.b", b"x"],
    );
    let mut both = message.clone();
    both.extend_from_slice(b"*3\r\n$9\r\nsubscribe\r\n$4\r\nns:a\r\n:1\r\n");
    both.extend_from_slice(b"*2\r\n$4\r\npong\r\n$0\r\n\r\n+PONG\r\n-NOPERM no\r\n");
    vec![
        message,
        pmessage,
        both,
        b"*3\r\n$12\r\npunsubscribe\r\n$4\r\nns:*\r\n:0\r\n".to_vec(),
    ]
}

pub(super) fn resp_tokens(input: &[u8]) -> bool {
    let mut pos = 0;
    let mut accepted = false;
    // Each token takes at least 3 bytes, so this bounds the loop.
    for _ in 0..=input.len() {
        match lean::next_token(&input[pos..], 1024) {
            Ok(Some((token, used))) => {
                assert!(
                    used >= 3 && used <= input.len() - pos,
                    "token {token:?} used {used} of {} bytes",
                    input.len() - pos
                );
                if let Token::Bulk(b) = token {
                    assert!(b.len() + 5 <= used, "bulk longer than what it used");
                }
                pos += used;
                accepted = true;
            }
            Ok(None) | Err(_) => break,
        }
    }
    accepted
}

pub(super) fn push_frames(input: &[u8]) -> bool {
    let mut at = 0;
    let mut accepted = false;
    for _ in 0..=input.len() {
        match backplane::parse_push_frame(input, at) {
            Ok(Some((frame, next))) => {
                assert!(
                    next > at && next <= input.len(),
                    "frame {frame:?} ends at {next}, began at {at}, of {}",
                    input.len()
                );
                if let PushFrame::Message { channel, payload } = &frame {
                    assert!(channel.len() + payload.len() < next - at);
                    let _ = backplane::decode_frame(payload);
                }
                at = next;
                accepted = true;
            }
            Ok(None) | Err(_) => break,
        }
    }
    accepted
}

pub(super) fn xadd_reply_seeds() -> Vec<Vec<u8>> {
    let mut pipeline = Vec::new();
    for i in 0..3u64 {
        lean::put_bulk(&mut pipeline, format!("1700000000000-{i}").as_bytes());
    }
    pipeline.extend_from_slice(b"+OK\r\n-OOM command not allowed\r\n:1\r\n$-1\r\n");
    let mut one = Vec::new();
    lean::put_bulk(&mut one, b"18446744073709551615-18446744073709551615");
    vec![pipeline, one]
}

pub(super) fn xadd_replies(input: &[u8]) -> bool {
    let mut pos = 0;
    let mut accepted = false;
    for _ in 0..=input.len() {
        match streams::parse_publish_reply(&input[pos..]) {
            Ok(Some((id, used))) => {
                assert!(
                    used >= 3 && used <= input.len() - pos,
                    "reply used {used} of {} bytes",
                    input.len() - pos
                );
                if let Some(id) = id {
                    assert_eq!(streams::parse_id(&id.to_string()), Some(id));
                }
                pos += used;
                accepted = true;
            }
            Ok(None) | Err(_) => break,
        }
    }
    accepted
}
