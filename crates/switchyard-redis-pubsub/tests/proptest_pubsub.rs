//! Property tests of the backplane's decoders: the envelope (`decode` of
//! frames from other replicas), the lean push-frame parser of the
//! subscribing connection (bytes from Redis), and `PubSubConfig::from_url`.
//!
//! Properties: no panic on any input; what the encoders write decodes
//! equal; a URL's password never shows in an error or a config.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use bytes::Bytes;
use proptest::prelude::*;
use switchyard_core::{DedupId, Headers, Message, Topic, header};
use switchyard_redis::lean;
use switchyard_redis_pubsub::PubSubConfig;
use switchyard_redis_pubsub::fuzzing::{
    Decoded, PushFrame, decode_frame, encode_frame, parse_push_frame,
};

fn topic() -> impl Strategy<Value = Topic> {
    "[a-z0-9_\\-]{1,12}([./][a-z0-9:@+=]{1,12}){0,4}".prop_map(|s| Topic::new(s).unwrap())
}

fn headers() -> impl Strategy<Value = Headers> {
    proptest::collection::btree_map("\\PC{1,16}", "\\PC{0,32}", 0..6)
        .prop_map(|m| m.into_iter().filter(|(k, _)| k != header::ORIGIN).collect())
}

fn message() -> impl Strategy<Value = Message> {
    (
        topic(),
        proptest::collection::vec(any::<u8>(), 0..256),
        headers(),
        any::<u128>(),
    )
        .prop_map(|(t, payload, h, d)| Message::from_parts(t, Bytes::from(payload), h, DedupId(d)))
}

/// Parses every push frame of `buf`; checks positions as it goes.
fn frames(buf: &[u8]) -> (Vec<PushFrame>, usize, bool) {
    let mut at = 0;
    let mut out = Vec::new();
    loop {
        match parse_push_frame(buf, at) {
            Ok(Some((f, next))) => {
                assert!(next > at && next <= buf.len(), "{f:?}: {at} -> {next}");
                out.push(f);
                at = next;
            }
            Ok(None) => return (out, at, false),
            Err(_) => return (out, at, true),
        }
    }
}

proptest! {
    #[test]
    fn envelopes_round_trip(
        m in message(),
        id in any::<u64>(),
        epoch in any::<u64>(),
        seq in 1u64..,
        topic_seq in 1u64..,
    ) {
        let frame = encode_frame(id, epoch, seq, topic_seq, &m).unwrap();
        let d = decode_frame(&frame).unwrap();
        prop_assert_eq!(d, Decoded { origin_id: id, origin_epoch: epoch, seq, topic_seq, message: m });
    }

    #[test]
    fn decode_never_panics(b in proptest::collection::vec(any::<u8>(), 0..512)) {
        let _ = decode_frame(&b);
    }

    #[test]
    fn decode_never_panics_behind_a_valid_header(b in proptest::collection::vec(any::<u8>(), 0..512)) {
        let mut frame = b"SY\x01\x00".to_vec();
        frame.extend_from_slice(&b);
        let _ = decode_frame(&frame);
    }

    /// Corrupting, cutting or extending a valid frame is an error or
    /// another valid envelope, never a panic; a cut or an extension is
    /// always an error.
    #[test]
    fn damaged_frames_are_errors(m in message(), at in any::<prop::sample::Index>(), byte in any::<u8>(), extra in 1usize..8) {
        let frame = encode_frame(1, 2, 3, 4, &m).unwrap();
        let i = at.index(frame.len());
        let mut flipped = frame.clone();
        flipped[i] = byte;
        let _ = decode_frame(&flipped);
        prop_assert!(decode_frame(&frame[..i]).is_err());
        let mut longer = frame.clone();
        longer.extend(std::iter::repeat_n(0u8, extra));
        prop_assert!(decode_frame(&longer).is_err());
    }

    #[test]
    fn zero_sequence_numbers_are_refused(m in message(), zero_first in any::<bool>()) {
        let (seq, topic_seq) = if zero_first { (0, 1) } else { (1, 0) };
        let frame = encode_frame(1, 2, seq, topic_seq, &m).unwrap();
        prop_assert!(decode_frame(&frame).is_err());
    }

    #[test]
    fn push_frames_never_panic(b in proptest::collection::vec(any::<u8>(), 0..512)) {
        let _ = frames(&b);
    }

    #[test]
    fn push_frames_never_panic_on_resp_like_bytes(
        b in proptest::collection::vec(
            prop_oneof![
                Just(b"\r\n".to_vec()), Just(b"*3\r\n".to_vec()), Just(b"*4\r\n".to_vec()),
                Just(b"$7\r\nmessage\r\n".to_vec()), Just(b"$8\r\npmessage\r\n".to_vec()),
                Just(b":1\r\n".to_vec()), Just(b"+PONG\r\n".to_vec()), Just(b"-ERR x\r\n".to_vec()),
                Just(b"$-1\r\n".to_vec()), Just(b"$3\r\n".to_vec()), Just(b"$0\r\n\r\n".to_vec()),
                proptest::collection::vec(any::<u8>(), 0..4),
            ],
            0..16,
        )
    ) {
        let _ = frames(&b.concat());
    }

    /// `message` and `pmessage` frames as Redis writes them parse back to
    /// their channel and payload, however the bytes are split.
    #[test]
    fn message_frames_round_trip(
        channel in proptest::collection::vec(any::<u8>(), 0..64),
        payloads in proptest::collection::vec(proptest::collection::vec(any::<u8>(), 0..128), 1..4),
        pattern in proptest::option::of(proptest::collection::vec(any::<u8>(), 0..16)),
        cut in any::<prop::sample::Index>(),
    ) {
        let mut buf = Vec::new();
        for p in &payloads {
            match &pattern {
                None => lean::put_command(&mut buf, &[b"message", &channel, p]),
                Some(pat) => lean::put_command(&mut buf, &[b"pmessage", pat, &channel, p]),
            }
        }
        let (got, used, failed) = frames(&buf);
        prop_assert!(!failed);
        prop_assert_eq!(used, buf.len());
        let want: Vec<PushFrame> = payloads
            .iter()
            .map(|p| PushFrame::Message { channel: channel.clone(), payload: p.clone() })
            .collect();
        prop_assert_eq!(&got, &want);
        // A prefix yields the complete frames in it and waits for the rest.
        let c = cut.index(buf.len());
        let (some, used, failed) = frames(&buf[..c]);
        prop_assert!(!failed);
        prop_assert!(used <= c);
        prop_assert_eq!(&some[..], &want[..some.len()]);
    }

    #[test]
    fn from_url_never_panics(s in "\\PC{0,80}") {
        let _ = PubSubConfig::from_url(&s);
    }

    #[test]
    fn numeric_parameters_are_validated(
        name in prop_oneof![Just("outbox"), Just("batch")],
        n in prop_oneof![Just(0u64), 1u64..200_000, Just(10_000_001u64), Just(u64::MAX)],
    ) {
        let url = format!("redis+pubsub://127.0.0.1?{name}={n}");
        let max = if name == "outbox" { 10_000_000 } else { 100_000 };
        let r = PubSubConfig::from_url(&url);
        if n >= 1 && n <= max {
            let cfg = r.unwrap();
            let got = if name == "outbox" { cfg.outbox_capacity } else { cfg.batch };
            prop_assert_eq!(got as u64, n);
        } else {
            let e = r.unwrap_err().to_string();
            prop_assert!(e.contains(name), "{}", e);
        }
    }

    #[test]
    fn instance_ids_round_trip(id in any::<u64>()) {
        let url = format!("redis+pubsub://127.0.0.1?instance_id={id:016x}");
        prop_assert_eq!(PubSubConfig::from_url(&url).unwrap().instance_id, Some(id));
    }

    #[test]
    fn password_never_shows(
        secret in "[!-~]{0,12}",
        encoded in any::<bool>(),
        broken in prop_oneof![Just(""), Just("/x"), Just("?outbox=0"), Just("?nope=1"),
            Just("?instance_id=xyz"), Just(":port"), Just("?reconnect_min=2s&reconnect_max=1s")],
        scheme in prop_oneof![Just("redis+pubsub"), Just("rediss+pubsub"), Just("redis+streams"), Just("http")],
        sep in prop_oneof![Just("://"), Just("://"), Just(":/"), Just(":"), Just("//")],
    ) {
        let password = format!("Zq7{secret}");
        let written: String = if encoded {
            password.bytes().map(|b| if b.is_ascii_alphanumeric() { char::from(b).to_string() } else { format!("%{b:02X}") }).collect()
        } else {
            password.clone()
        };
        let url = format!("{scheme}{sep}app:{written}@127.0.0.1:6379{broken}");
        let shown = match PubSubConfig::from_url(&url) {
            Ok(cfg) => format!("{cfg:?}"),
            Err(e) => format!("{e} {e:?}"),
        };
        prop_assert!(!shown.contains(&password), "{} shows {}", url, shown);
        prop_assert!(!shown.contains(&written), "{} shows {}", url, shown);
    }
}
